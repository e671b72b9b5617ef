"""Commands for a version's life while its run is in progress: approve, reject, promote, abort.

A person (the CLI) ends the workflow's waits through the task tokens the rollout records (Bake,
AwaitApproval, Watch), as on_alarm does; an abort outside a wait is recorded on the rollout and
the run's next rollout step rolls back (`RolloutService` checks it). Each command first checks
that the model's state allows it and otherwise raises CommandRefusedError, having changed nothing.
Who asked is the caller's identity (STS GetCallerIdentity): it travels with the task's result or
error into the run's history and the model registry.

| command  | allowed in phase            | effect                                                      |
|----------|-----------------------------|-------------------------------------------------------------|
| approve  | approval                    | SendTaskSuccess on the approval wait: promotion starts      |
| reject   | approval                    | SendTaskFailure (ApprovalRejectedError): rollback           |
| promote  | bake, approval              | SendTaskSuccess: promotion now, skipping bake and analysis  |
| abort    | canary, step, bake,         | recorded on the rollout; a waiting phase's task fails at    |
|          | approval, promoting, watch  | once (AbortRequestedError), any other at its next step      |

And after runs have ended, `restore` (`modelops rollback --to VERSION [--now]`) starts a restore
run: the workflow brings the version's recorded serving image back through the canary and its
checks, or with `now` promotes it at once (a reason required), under the model's lock as any run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modelops.canary import WAIT_PHASES
from modelops.errors import CommandRefusedError, RequestError
from modelops.older_versions import OlderVersions, recover_version
from modelops.ports import Executions, Identity, Store, TaskCallbacks
from modelops.steps.resolve import load_model, restorable
from modelops.steps.rollout import abort_cause
from modelops.steps.start import start_run
from modelops.triggers import restore_request

#: Phases an abort may interrupt (from the canary's start to the end of the watch).
ABORTABLE = ("canary", "step", "bake", "approval", "promoting", "watch")


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


class RolloutControl:
    """The in-run commands over the Store, TaskCallbacks and Identity ports."""

    def __init__(
        self,
        *,
        store: Store,
        callbacks: TaskCallbacks,
        identity: Identity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.callbacks = callbacks
        self.identity = identity
        self.clock = clock

    # --- the approval wait ----------------------------------------------------------------------
    def approve(self, model: str, reason: str = "") -> dict[str, Any]:
        """End the approval wait in success: the version is promoted. Refused outside that wait."""
        rollout = self._active(model, "approve")
        if rollout.get("phase") != "approval":
            hint = (
                f"; `modelops promote --model {model}` skips the rest of the bake"
                if rollout.get("phase") == "bake"
                else ""
            )
            raise CommandRefusedError(
                f"run {rollout['run_id']} of {model} is in phase {rollout.get('phase')}: approve is "
                f"possible only while it waits for approval (approval.required in its config){hint}; "
                "nothing changed"
            )
        return self._succeed(model, rollout, "approve", reason)

    def reject(self, model: str, reason: str = "") -> dict[str, Any]:
        """End the approval wait in failure (ApprovalRejectedError): the version is rolled back."""
        rollout = self._active(model, "reject")
        if rollout.get("phase") != "approval":
            raise CommandRefusedError(
                f"run {rollout['run_id']} of {model} is in phase {rollout.get('phase')}: reject is possible "
                f"only while it waits for approval; `modelops abort --model {model}` rolls back in any phase; "
                "nothing changed"
            )
        who, at = self.identity.caller(), stamp(self.clock())
        cause = f"rejected by {who} at {at}" + (f": {reason}" if reason else "")
        self._signal_failure(model, rollout, "ApprovalRejectedError", cause)
        return {"run_id": rollout["run_id"], "phase": "approval", "rejected_by": who, "rejected_at": at}

    # --- skipping ahead -------------------------------------------------------------------------
    def promote(self, model: str, reason: str = "") -> dict[str, Any]:
        """Promote now: ends the bake (skipping what is left of it and the analysis) or the approval
        wait (counts as the approval). Refused in any other phase."""
        rollout = self._active(model, "promote")
        phase = rollout.get("phase")
        if phase not in {"bake", "approval"}:
            why = {
                "canary": "its canary is still starting or being smoke-tested; retry once the bake starts",
                "promoting": "it is already being promoted",
                "watch": "it is already promoted (watch window)",
                "rollback": "it is being rolled back",
            }.get(str(phase), "promotion is possible only during the bake or the approval wait")
            raise CommandRefusedError(
                f"run {rollout['run_id']} of {model} is in phase {phase}: {why}; nothing changed"
            )
        if rollout.get("abort"):
            raise CommandRefusedError(
                f"run {rollout['run_id']} of {model} is being aborted ({abort_cause(rollout['abort'])}); "
                "nothing changed"
            )
        return self._succeed(model, rollout, "promote", reason)

    # --- rolling back ---------------------------------------------------------------------------
    def abort(self, model: str, reason: str = "") -> dict[str, Any]:
        """Roll the run's version back now, in any phase from the canary's start to the watch's end."""
        rollout = self._active(model, "abort")
        phase, run_id = rollout.get("phase"), rollout["run_id"]
        if phase not in ABORTABLE:
            raise CommandRefusedError(
                f"run {run_id} of {model} is in phase {phase}: "
                + ("it is already being rolled back" if phase == "rollback" else "nothing to abort")
                + "; nothing changed"
            )
        if rollout.get("abort"):
            raise CommandRefusedError(
                f"run {run_id} of {model}: abort already requested ({abort_cause(rollout['abort'])}); "
                "nothing changed"
            )
        request = {"by": self.identity.caller(), "at": stamp(self.clock()), "reason": reason, "phase": phase}
        marked = self.store.mark_rollout(model, run_id, {"abort": request})
        if marked is None:
            raise CommandRefusedError(f"run {run_id} of {model} ended meanwhile; nothing changed")
        # The phase as of the mark: a wait that registered its token before it is failed here; one
        # registering after it finds the abort itself (RolloutService.await_signal).
        signalled = False
        token = marked.get("task_token")
        if marked.get("phase") in WAIT_PHASES and token:
            signalled = self.callbacks.fail(str(token), "AbortRequestedError", abort_cause(request))
        return {"run_id": run_id, "phase": marked.get("phase"), "signalled": signalled, **request}

    # --- after runs have ended -----------------------------------------------------------------
    def restore(
        self,
        model: str,
        version: str,
        *,
        now: bool,
        reason: str,
        executions: Executions,
        request_id: str,
        older: OlderVersions | None = None,
    ) -> dict[str, Any]:
        """Start the run that brings `version` back (see the module doc). Refused, starting nothing,
        while a run holds the model, or unless the version was recorded, promoted once, and is not
        what serves now. A version promoted before VERSION# records existed gets its record rebuilt
        from `older` (modelops.older_versions), stored only once the version passes these checks."""
        config = load_model(self.store, model)  # UnknownModelError for a model never put
        holder = self.store.lock_holder(model)
        rollout = self.store.get_rollout(model)
        busy = holder[0] if holder else (rollout or {}).get("run_id")
        if busy:
            raise CommandRefusedError(
                f"run {busy} holds {model}'s lock: a run is in progress; wait for it or "
                f"`modelops abort --model {model}`; nothing started"
            )
        try:
            recovered = None
            if older is not None and self.store.get_doc(model, f"VERSION#{version}") is None:
                recovered = recover_version(config, version, now=now, older=older)
            restorable(self.store, model, version, recovered=recovered)
            request = restore_request(
                model,
                version,
                now=now,
                reason=reason,
                requested_by=self.identity.caller(),
                request_id=request_id,
            )
        except RequestError as exc:
            raise CommandRefusedError(f"{exc}; nothing started") from None
        if recovered is not None:  # what ResolveRequest reads, as any run since would have written
            self.store.put_doc(model, f"VERSION#{version}", recovered)
        return start_run(request, store=self.store, executions=executions)

    # --- helpers --------------------------------------------------------------------------------
    def _active(self, model: str, command: str) -> dict[str, Any]:
        rollout = self.store.get_rollout(model)
        if rollout is not None:
            return rollout
        holder = self.store.lock_holder(model)
        if holder is not None:
            raise CommandRefusedError(
                f"run {holder[0]} of {model} has not started its canary yet (validation, training, "
                f"evaluation or image build): nothing to {command}; to cancel it, stop the execution "
                "(aws stepfunctions stop-execution); nothing changed"
            )
        raise CommandRefusedError(
            f"no rollout of {model} in progress: nothing to {command}"
            + (
                f"; to bring back an earlier version, `modelops rollback --model {model} --to VERSION`"
                if command == "abort"
                else ""
            )
        )

    def _succeed(self, model: str, rollout: dict[str, Any], via: str, reason: str) -> dict[str, Any]:
        token = rollout.get("task_token")
        if not token:
            raise CommandRefusedError(
                f"run {rollout['run_id']} of {model} has no wait registered yet; retry in a few seconds"
            )
        decision = {
            "approved_by": self.identity.caller(),
            "approved_at": stamp(self.clock()),
            "via": via,
            "phase": rollout.get("phase"),
            "reason": reason,
        }
        if not self.callbacks.succeed(str(token), decision):
            raise CommandRefusedError(
                f"the {rollout.get('phase')} wait of run {rollout['run_id']} of {model} already ended "
                f"(timed out, an alarm, or another command); see `modelops status --model {model}`"
            )
        return {"run_id": rollout["run_id"], **decision}

    def _signal_failure(self, model: str, rollout: dict[str, Any], error: str, cause: str) -> None:
        token = rollout.get("task_token")
        if not token or not self.callbacks.fail(str(token), error, cause):
            raise CommandRefusedError(
                f"the {rollout.get('phase')} wait of run {rollout['run_id']} of {model} already ended "
                f"(timed out, an alarm, or another command); see `modelops status --model {model}`"
            )
