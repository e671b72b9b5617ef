"""The `modelops` command line: add models, start runs, see status and history, approve, promote, roll back.

It finds the stack's resources through the SSM parameter `/modelops/<stack>/stack` the template
creates, so it needs only the stack name (`--stack`, or MODELOPS_STACK, default `modelops`) and the
usual AWS credentials. AWS_ENDPOINT_URL points it elsewhere, exactly as it does the functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import TYPE_CHECKING

from modelops.errors import ModelopsError

if TYPE_CHECKING:  # for annotations only: the commands import the layer where they run
    from modelops.adapters.store import StateStore
    from modelops.control import RolloutControl
    from modelops.model_admin import StackInfo


def _stack(args: argparse.Namespace) -> StackInfo:
    from modelops.adapters.aws import client, error_code
    from modelops.model_admin import StackInfo

    name = f"/modelops/{args.stack}/stack"
    try:
        value = client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            raise ModelopsError(
                f"stack {args.stack!r} not found (no SSM parameter {name}); deploy it with `sam deploy --guided` "
                "or pass --stack NAME"
            ) from None
        raise
    return StackInfo.from_parameter(value)


def _store(stack: StackInfo) -> StateStore:
    from modelops.adapters.aws import client
    from modelops.adapters.store import StateStore

    return StateStore(stack.table, client("dynamodb"))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Build and record the stack's training image; once after `sam deploy` (safe to repeat)."""
    from pathlib import Path

    from modelops_cli.bootstrap import run_bootstrap

    stack = _stack(args)
    result = run_bootstrap(
        stack,
        source=Path(args.source),
        timeout_seconds=args.timeout_minutes * 60,
        poll_seconds=args.poll_seconds,
    )
    if result.built or result.recorded:
        print(f"training image ready: {result.image}")
    print(
        f"next: apply a model's Kubernetes manifests, then `modelops --stack {stack.stack_name} model put "
        "models/churn.yaml` and `modelops --stack "
        f"{stack.stack_name} start --model churn` (README, Deploying to AWS)"
    )
    return 0


def cmd_model_validate(args: argparse.Namespace) -> int:
    from modelops.config import load_config_file

    config = load_config_file(args.file)
    print(f"{args.file}: valid config for model {config.name!r}")
    return 0


def cmd_model_put(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelops.config import load_config_file

    from modelops_cli.model_put import put_model_config

    config = load_config_file(args.file)  # validated before anything is written
    # A local code folder (relative to the config file) is packed and uploaded first.
    result = put_model_config(config, _stack(args), base_dir=Path(args.file).parent)
    line = f"model {config.name}: stored; alarms {', '.join(result['alarms'])}; schedule {result['schedule']}"
    if result.get("drift_schedule") not in (None, "none"):
        line += f"; drift monitor schedule {result['drift_schedule']}"
    print(line)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from modelops.adapters.aws import client

    stack = _stack(args)
    payload = {"model": args.model, "reason": args.reason, "request_id": args.request_id or uuid.uuid4().hex}
    if args.data:
        payload["dataset_key"] = args.data
    response = client("lambda").invoke(
        FunctionName=stack.start_function_arn, Payload=json.dumps(payload).encode()
    )
    body = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        print(f"error: {body.get('errorType')}: {body.get('errorMessage')}", file=sys.stderr)
        return 1
    if body.get("started"):
        print(f"started {body['execution_name']}\n  {body['execution_arn']}")
    else:
        print(f"not started: {body.get('reason') or body.get('message')}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    store = _store(stack)
    holder = store.lock_holder(args.model)
    rollout = store.get_rollout(args.model)
    champion = store.get_doc(args.model, "CHAMPION")
    print(f"model {args.model}")
    print(f"  lock:     {f'held by {holder[0]}' if holder else 'free'}")
    if rollout:
        from modelops.rollout_view import describe_rollout

        for line in describe_rollout(args.model, rollout, stack=args.stack, now=time.time()):
            print(f"  {line}")
    else:
        print("  rollout:  none active")
    print(
        f"  champion: {'version ' + str(champion.get('version')) + ' ' + str(champion.get('image')) if champion else 'none'}"
    )
    drift = store.get_doc(args.model, "DRIFT")
    if drift:
        verdict = "DRIFTED" if drift.get("drifted") else "ok"
        print(f"  drift:    {verdict}, checked {drift.get('checked_at')}: {drift.get('headline')}")
        if drift.get("notes"):
            print(f"            {'; '.join(drift['notes'])}"[:300])
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    records = _store(_stack(args)).query_docs(args.model, "HISTORY#", limit=args.limit)
    if not records:
        print(f"no runs recorded for {args.model}")
    for record in records:
        print(
            f"{record['finished_at']}  {record['status']:<16} v{record.get('version') or '-':<4} {record['run_id']}"
            + (f"  {record['error']}: {record.get('cause') or ''}"[:160] if record.get("error") else "")
            + (
                f"  trigger {record.get('trigger')}: {record['drift'].get('headline', '')}"[:300]
                if record.get("drift")
                else ""
            )
        )
    return 0


def _control(stack: StackInfo) -> RolloutControl:
    from modelops.adapters.aws import client
    from modelops.adapters.stepfunctions import StepFunctionsCallbacks
    from modelops.adapters.sts import StsIdentity
    from modelops.control import RolloutControl

    return RolloutControl(
        store=_store(stack),
        callbacks=StepFunctionsCallbacks(client("stepfunctions")),
        identity=StsIdentity(client("sts")),
    )


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve the version waiting for approval: it is promoted."""
    done = _control(_stack(args)).approve(args.model, args.reason)
    print(
        f"approved run {done['run_id']} of {args.model} as {done['approved_by']} at {done['approved_at']}; "
        f"promotion starts now (follow it with `modelops status --model {args.model}`)"
    )
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    """Reject the version waiting for approval: it is rolled back."""
    done = _control(_stack(args)).reject(args.model, args.reason)
    print(
        f"rejected run {done['run_id']} of {args.model} as {done['rejected_by']} at {done['rejected_at']}; "
        "it is being rolled back"
    )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote the canary now, skipping the rest of the bake and the analysis (counts as approval)."""
    done = _control(_stack(args)).promote(args.model, args.reason)
    print(
        f"promoting run {done['run_id']} of {args.model} now (ended its {done['phase']} as "
        f"{done['approved_by']}); follow it with `modelops status --model {args.model}`"
    )
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    """Roll the run in progress back now, in any phase from its canary to the end of its watch."""
    done = _control(_stack(args)).abort(args.model, args.reason)
    when = "its wait ended now" if done["signalled"] else "at its next step"
    print(
        f"abort requested for run {done['run_id']} of {args.model} in phase {done['phase']} as {done['by']}; "
        f"the workflow rolls back ({when}); follow it with `modelops status --model {args.model}`"
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """With --to VERSION: bring a promoted version back (a restore run, through the canary unless
    --now). Without --to: the same as `abort` (the run in progress rolls back)."""
    if args.to is None:
        if args.now:
            raise ModelopsError(
                "--now goes with --to VERSION (without --to, rollback aborts the run in progress)"
            )
        return cmd_abort(args)
    if args.now and not args.reason.strip():
        raise ModelopsError("--now skips the canary: say why with --reason (it is kept in the run's record)")
    from modelops.adapters.aws import client
    from modelops.adapters.stepfunctions import StepFunctionsExecutions

    stack = _stack(args)
    from modelops.adapters.s3 import S3Objects
    from modelops.adapters.sagemaker import SageMakerRegistry
    from modelops.older_versions import OlderVersions
    from modelops.steps.registry import group_name

    store = _store(stack)
    older = OlderVersions(  # a version promoted before VERSION# records: found in the run history
        history=store.history(args.model),
        objects=S3Objects(client("s3")),
        registry=SageMakerRegistry(client("sagemaker")),
        group=group_name(stack.stack_name, args.model),
    )
    started = _control(stack).restore(
        args.model,
        args.to,
        now=args.now,
        reason=args.reason,
        executions=StepFunctionsExecutions(
            client("stepfunctions"), state_machine_arn=stack.state_machine_arn
        ),
        request_id=args.request_id or uuid.uuid4().hex,
        older=older,
    )
    how = "straight to the stable Deployment (--now)" if args.now else "through the canary and its checks"
    print(
        f"started {started['execution_name']}: version {args.to} of {args.model} comes back {how}\n"
        f"  {started.get('execution_arn', '')}\n  follow it with `modelops status --model {args.model}`"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelops", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=os.environ.get("MODELOPS_STACK", "modelops"), help="stack name")
    sub = parser.add_subparsers(dest="command", required=True)
    from modelops_cli.bootstrap import DEFAULT_POLL_SECONDS, DEFAULT_SOURCE, DEFAULT_TIMEOUT_SECONDS

    boot = sub.add_parser(
        "bootstrap",
        help="build the stack's training image in CodeBuild and record it (once after sam deploy; safe to repeat)",
    )
    boot.add_argument(
        "--source", default=str(DEFAULT_SOURCE), help="the image source folder (default: %(default)s)"
    )
    boot.add_argument(
        "--timeout-minutes",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS / 60,
        help="stop following the build after this long (default: %(default)s)",
    )
    boot.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS, help=argparse.SUPPRESS)
    boot.set_defaults(func=cmd_bootstrap)
    model = sub.add_parser("model", help="manage model configs").add_subparsers(
        dest="model_command", required=True
    )
    put = model.add_parser("put", help="validate and store a model config; create its alarms and schedule")
    put.add_argument("file")
    put.set_defaults(func=cmd_model_put)
    validate = model.add_parser("validate", help="validate a model config file (no AWS calls)")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_model_validate)
    start = sub.add_parser("start", help="start a run for a model")
    start.add_argument("--model", required=True)
    start.add_argument("--data", help="dataset key under incoming/<model>/ (default: the newest)")
    start.add_argument("--reason", default="manual start")
    start.add_argument("--request-id", help="same id, same run: makes retries safe")
    start.set_defaults(func=cmd_start)
    for name, func, helptext in (
        ("status", cmd_status, "lock, active rollout and champion"),
        ("history", cmd_history, "finished runs, newest first"),
        ("approve", cmd_approve, "approve the version waiting for approval: it is promoted"),
        ("reject", cmd_reject, "reject the version waiting for approval: it is rolled back"),
        ("promote", cmd_promote, "promote the canary now (skips the rest of the bake; counts as approval)"),
        ("abort", cmd_abort, "roll the run in progress back now (any phase from canary to watch)"),
        (
            "rollback",
            cmd_rollback,
            "--to VERSION: bring a promoted version back; without --to: the same as abort",
        ),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--model", required=True)
        if name == "history":
            p.add_argument("--limit", type=int, default=20)
        if name in {"approve", "reject", "promote", "abort", "rollback"}:
            p.add_argument("--reason", default="", help="why (kept in the run's record)")
        if name == "rollback":
            p.add_argument(
                "--to", metavar="VERSION", help="bring this promoted version back (after runs have ended)"
            )
            p.add_argument(
                "--now",
                action="store_true",
                help="with --to: patch the stable Deployment at once, no canary (needs --reason)",
            )
            p.add_argument("--request-id", help="same id, same run: makes retries safe")
        p.set_defaults(func=func)
    from modelops_cli.local import add_parser as add_local_parser

    add_local_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ModelopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
