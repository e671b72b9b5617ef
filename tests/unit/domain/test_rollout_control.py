"""The rules of approve, reject, promote and abort (modelops.control) over the real state table
(moto's DynamoDB) and a Step Functions stand-in that knows which task tokens still wait."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from modelops.adapters.store import StateStore
from modelops.config import load_config_file
from modelops.control import RolloutControl
from modelops.errors import AbortRequestedError, CommandRefusedError
from modelops.run import RunRef
from modelops.steps.rollout import RolloutService

ROOT = Path(__file__).resolve().parents[3]
RUN = "churn-s3-0123456789abcdef"
WHO = "arn:aws:iam::123456789012:user/alice"


class Waits:
    """The TaskCallbacks port: a token ends once; a token that is not waiting is refused (False)."""

    def __init__(self, *waiting: str) -> None:
        self.waiting = set(waiting)
        self.ended: list[tuple[str, str, Any]] = []  # (token, "success" | error, output | cause)

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        return self._end(token, "success", output)

    def fail(self, token: str, error: str, cause: str) -> bool:
        return self._end(token, error, cause)

    def _end(self, token: str, outcome: str, detail: Any) -> bool:
        if token not in self.waiting:
            return False
        self.waiting.discard(token)
        self.ended.append((token, outcome, detail))
        return True


class Alice:
    def caller(self) -> str:
        return WHO


def in_phase(store: StateStore, phase: str, token: str | None = "tok", **fields: Any) -> dict[str, Any]:
    store.acquire_lock("churn", RUN, 3600)
    if token:
        fields["task_token"] = token
    return store.update_rollout("churn", RUN, {"phase": phase, **fields})


def control(store: StateStore, waits: Waits) -> RolloutControl:
    return RolloutControl(store=store, callbacks=waits, identity=Alice(), clock=lambda: 1_800_000_000)


# --- approve and reject --------------------------------------------------------------------------
def test_approve_ends_the_approval_wait_with_who_and_when(store):
    in_phase(store, "approval")
    waits = Waits("tok")
    done = control(store, waits).approve("churn", "ok by me")
    assert waits.ended == [
        (
            "tok",
            "success",
            {
                "approved_by": WHO,
                "approved_at": "2027-01-15T08:00:00+00:00",
                "via": "approve",
                "phase": "approval",
                "reason": "ok by me",
            },
        )
    ]
    assert done["run_id"] == RUN


def test_reject_fails_the_approval_wait_naming_who_and_why(store):
    in_phase(store, "approval")
    waits = Waits("tok")
    control(store, waits).reject("churn", "drift on segment B")
    assert waits.ended == [
        (
            "tok",
            "ApprovalRejectedError",
            f"rejected by {WHO} at 2027-01-15T08:00:00+00:00: drift on segment B",
        )
    ]


@pytest.mark.parametrize("command", ["approve", "reject"])
@pytest.mark.parametrize("phase", ["canary", "bake", "promoting", "watch", "rollback"])
def test_approve_and_reject_are_refused_outside_the_approval_wait(store, command, phase):
    before = in_phase(store, phase)
    waits = Waits("tok")
    with pytest.raises(CommandRefusedError, match=f"is in phase {phase}: {command} is possible only while"):
        getattr(control(store, waits), command)("churn")
    assert waits.ended == [] and store.get_rollout("churn") == before


def test_approve_in_the_bake_points_to_promote(store):
    in_phase(store, "bake")
    with pytest.raises(
        CommandRefusedError, match="modelops promote --model churn` skips the rest of the bake"
    ):
        control(store, Waits("tok")).approve("churn")


@pytest.mark.parametrize("command", ["approve", "reject", "promote"])
def test_a_wait_that_already_ended_is_refused(store, command):
    # Given the rollout says it waits, but its task already timed out (the token is dead)
    before = in_phase(store, "approval")
    with pytest.raises(CommandRefusedError, match="already ended"):
        getattr(control(store, Waits()), command)("churn")
    assert store.get_rollout("churn") == before


# --- promote ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["bake", "approval"])
def test_promote_ends_the_bake_or_the_approval_wait_as_an_approval(store, phase):
    in_phase(store, phase)
    waits = Waits("tok")
    control(store, waits).promote("churn")
    ((token, outcome, output),) = waits.ended
    assert (token, outcome) == ("tok", "success")
    assert output["approved_by"] == WHO and output["via"] == "promote" and output["phase"] == phase


@pytest.mark.parametrize(
    ("phase", "why"),
    [
        ("canary", "still starting or being smoke-tested"),
        ("promoting", "already being promoted"),
        ("watch", "already promoted"),
        ("rollback", "being rolled back"),
    ],
)
def test_promote_is_refused_outside_the_bake_and_the_approval_wait(store, phase, why):
    before = in_phase(store, phase)
    waits = Waits("tok")
    with pytest.raises(CommandRefusedError, match=why):
        control(store, waits).promote("churn")
    assert waits.ended == [] and store.get_rollout("churn") == before


def test_promote_is_refused_once_an_abort_was_asked_for(store):
    in_phase(store, "bake", abort={"by": WHO, "at": "t", "phase": "canary", "reason": ""})
    with pytest.raises(CommandRefusedError, match="is being aborted"):
        control(store, Waits("tok")).promote("churn")


# --- abort --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["bake", "approval", "watch"])
def test_abort_in_a_wait_fails_it_at_once(store, phase):
    in_phase(store, phase)
    waits = Waits("tok")
    done = control(store, waits).abort("churn", "customer complaints")
    assert done["signalled"] is True
    ((token, error, cause),) = waits.ended
    assert (token, error) == ("tok", "AbortRequestedError")
    assert cause == f"aborted by {WHO} at 2027-01-15T08:00:00+00:00 in phase {phase}: customer complaints"
    assert store.get_rollout("churn")["abort"]["by"] == WHO


@pytest.mark.parametrize("phase", ["canary", "promoting"])
def test_abort_between_waits_is_recorded_for_the_next_step(store, phase):
    # A stale token of the finished bake is not used outside a waiting phase
    in_phase(store, phase)
    waits = Waits("tok")
    done = control(store, waits).abort("churn")
    assert done["signalled"] is False and waits.ended == []
    assert store.get_rollout("churn")["abort"]["phase"] == phase


def test_abort_is_refused_during_a_rollback_and_when_already_asked_for(store):
    before = in_phase(store, "rollback")
    with pytest.raises(CommandRefusedError, match="already being rolled back"):
        control(store, Waits("tok")).abort("churn")
    assert store.get_rollout("churn") == before
    store.update_rollout("churn", RUN, {"phase": "bake"})
    control(store, Waits("tok")).abort("churn")
    with pytest.raises(CommandRefusedError, match=f"abort already requested \\(aborted by {WHO}"):
        control(store, Waits()).abort("churn")


@pytest.mark.parametrize("command", ["approve", "reject", "promote", "abort"])
def test_no_rollout_in_progress_is_refused(store, command):
    with pytest.raises(CommandRefusedError, match=f"no rollout of churn in progress: nothing to {command}"):
        getattr(control(store, Waits()), command)("churn")
    assert store.get_rollout("churn") is None


@pytest.mark.parametrize("command", ["approve", "reject", "promote", "abort"])
def test_a_run_before_its_canary_is_refused_naming_it(store, command):
    store.acquire_lock("churn", RUN, 3600)
    with pytest.raises(CommandRefusedError, match=f"run {RUN} of churn has not started its canary yet"):
        getattr(control(store, Waits()), command)("churn")
    assert store.get_rollout("churn") is None


def test_an_abort_racing_the_end_of_the_run_writes_nothing(store):
    # Given the run's record cleared between the command's read and its write
    in_phase(store, "watch")

    class Racing(StateStore):
        def get_rollout(self, model: str) -> dict[str, Any] | None:
            found = super().get_rollout(model)
            self.clear_rollout(model, RUN)
            return found

    racing = Racing(store.table, store.client)
    with pytest.raises(CommandRefusedError, match="ended meanwhile"):
        control(racing, Waits("tok")).abort("churn")
    assert store.get_rollout("churn") is None


# --- the rollout steps honour an abort ---------------------------------------------------------------
def rollout_service(store: StateStore, waits: Waits) -> RolloutService:
    return RolloutService(kube=None, store=store, metrics=None, callbacks=waits)  # type: ignore[arg-type]


def run_ref() -> RunRef:
    return RunRef(run_id=RUN, model="churn", config=load_config_file(ROOT / "models" / "churn.yaml"))


def test_a_wait_that_begins_after_an_abort_fails_at_once(store):
    # Given an abort recorded while the canary was starting
    in_phase(store, "canary", token=None)
    control(store, Waits()).abort("churn", "wrong data")
    # When the bake's wait registers its token
    waits = Waits("bake-token")
    result = rollout_service(store, waits).await_signal(run_ref(), "bake", "bake-token")
    # Then its task fails at once with the abort's cause
    assert result["aborted"] is True
    assert waits.ended == [
        (
            "bake-token",
            "AbortRequestedError",
            f"aborted by {WHO} at 2027-01-15T08:00:00+00:00 in phase canary: wrong data",
        )
    ]


def test_the_next_rollout_step_after_an_abort_raises_instead_of_going_on(store):
    in_phase(store, "canary", token=None)
    control(store, Waits()).abort("churn")
    with pytest.raises(AbortRequestedError, match=f"aborted by {WHO}"):
        rollout_service(store, Waits()).status(run_ref(), "canary", None)
    with pytest.raises(AbortRequestedError):
        rollout_service(store, Waits()).promote(run_ref(), "repo@sha256:" + "2" * 64, "8")
