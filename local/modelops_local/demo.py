"""`modelops local demo`: the whole retrain-to-rollback story on the local runtime.

1. deploy version 1 of the churn model (train, build, canary, bake, promote, watch);
2. with steady prediction traffic on the model's Service, drop new data: version 2 is promoted
   through a canary;
3. the team switches to its own training script (script mode, `demo_team/train.py`: the same
   model behind a feature step of its own) and drops new data again: version 3 trains, beats its
   champion and passes the smoke test, but its feature step fails on new customers (0 months of
   tenure), who are part of the live traffic: its canary answers them 500, its alarm fires, the
   workflow rolls back, and version 2 keeps serving;
4. check that no request served by the stable variant failed, print a summary and write a report.

`modelops local demo --drift` tells the drift story instead (`run_drift_demo`): the drift monitor
on, two versions promoted, then the demo client shifts its traffic (`shifted_customers`: tenure
plus 60 months, monthly charges x 1.5) and a retrain run starts on the drift alarm.

Every expectation is checked; `run_demo` returns a non-zero exit code when one does not hold.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelops.config import ModelConfig, load_config_file

from modelops_local.cloud import ROOT, LocalCloud
from modelops_local.sample_data import CHURN_FEATURES, generate_churn_csv

DEMO_CONFIG = ROOT / "models" / "churn-local.yaml"
#: The demo team's training code (version 3): a bad model, not a product switch.
DEMO_TEAM = Path(__file__).resolve().parent / "demo_team"
#: Share of the steady traffic's customers who are new (0 months of tenure).
NEW_CUSTOMER_SHARE = 0.25
#: Each version's data: (rows, seed). More rows each time, so each candidate beats its champion.
DATASETS = {1: (1500, 11), 2: (4000, 12), 3: (8000, 13)}
RUN_TIMEOUT_SECONDS = 240
#: Workflow states grouped into the phases the summary times.
PHASES = {
    "ResolveRequest": "start",
    "AcquireLock": "start",
    "LockAcquired": "start",
    "ValidateDataset": "validate",
    "StartTraining": "train",
    "InitTrainingPolls": "train",
    "WaitTraining": "train",
    "DescribeTraining": "train",
    "CountTrainingPoll": "train",
    "TrainingDone": "train",
    "KeepPollingTraining": "train",
    "NeedsJudge": "train",
    "PrepareJudge": "judge",
    "StartJudge": "judge",
    "InitJudgePolls": "judge",
    "WaitJudge": "judge",
    "DescribeJudge": "judge",
    "CountJudgePoll": "judge",
    "JudgeDone": "judge",
    "KeepPollingJudge": "judge",
    "EvaluateModel": "evaluate",
    "IsBetter": "evaluate",
    "RegisterModel": "register",
    "StartBuild": "build",
    "WaitBuild": "build",
    "CheckBuild": "build",
    "BuildDone": "build",
    "DeployCanary": "canary",
    "WaitCanaryReady": "canary",
    "CheckCanaryReady": "canary",
    "IsCanaryReady": "canary",
    "SmokeTest": "smoke",
    "StartSteps": "canary",
    "ShiftTraffic": "canary",
    "CheckStepReady": "canary",
    "IsStepReady": "canary",
    "WaitStepReady": "canary",
    "Bake": "bake",
    "AnalyzeCanary": "analyze",
    "CanaryVerdict": "analyze",
    "CanaryRejected": "analyze",
    "CanaryPassed": "analyze",
    "Promote": "promote",
    "WaitStableReady": "promote",
    "CheckStableReady": "promote",
    "IsStableReady": "promote",
    "FinishPromotion": "promote",
    "Watch": "watch",
    "Rollback": "rollback",
    "WaitRollbackReady": "rollback",
    "CheckRollbackReady": "rollback",
    "IsRollbackReady": "rollback",
}


class DemoError(Exception):
    """An expectation of the demo did not hold; the message says which."""


# --- prediction traffic ---------------------------------------------------------------------------
@dataclass
class Answer:
    at: float
    status: int  # 0: no HTTP answer (connection failed)
    variant: str  # "stable" | "canary" | "?" (no answer)
    version: str
    latency_ms: float
    detail: str = ""  # for a request without a variant's answer: the error, or the reply's first bytes


class SteadyTraffic:
    """Sends single-row predictions to a Service URL at a steady rate and keeps every answer."""

    def __init__(self, url: str, rows: list[list[float]], rate_per_second: float = 20.0) -> None:
        split = urlsplit(url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.rows = rows
        self.interval = 1.0 / rate_per_second
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        rng = random.Random(7)
        connection: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            body = json.dumps({"instances": [rng.choice(self.rows)]}).encode()
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
                connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                variant = response.getheader("X-Modelops-Variant") or "?"
                answer = Answer(
                    time.time(),
                    response.status,
                    variant,
                    response.getheader("X-Modelops-Version") or "?",
                    (time.perf_counter() - started) * 1000.0,
                    ""
                    if variant != "?"
                    else f"HTTP {response.status}: {data[:300].decode(errors='replace')}",
                )
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                if connection is not None:
                    connection.close()
                connection = None
                answer = Answer(
                    time.time(),
                    0,
                    "?",
                    "?",
                    (time.perf_counter() - started) * 1000.0,
                    f"{type(exc).__name__}: {exc}",
                )
            self.answers.append(answer)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        if connection is not None:
            connection.close()

    def summary(self, since: float = 0.0) -> dict[str, dict[str, int]]:
        """{variant: {"ok": n, "failed": n}} for answers after `since`."""
        out: dict[str, dict[str, int]] = {}
        for a in self.answers:
            if a.at < since:
                continue
            bucket = out.setdefault(a.variant, {"ok": 0, "failed": 0})
            bucket["ok" if 200 <= a.status < 300 else "failed"] += 1
        return out

    def unanswered(self, since: float = 0.0) -> list[str]:
        """What each request without a variant's answer got (after `since`): when, after how long, why."""
        return [
            f"{time.strftime('%H:%M:%S', time.gmtime(a.at))}.{int(a.at % 1 * 1000):03d} UTC"
            f" after {a.latency_ms:.0f} ms: {a.detail}"
            for a in self.answers
            if a.at >= since and a.variant == "?"
        ]


# --- following a run ------------------------------------------------------------------------------
@dataclass
class RunResult:
    label: str
    execution_arn: str
    status: str
    states: list[tuple[float, str]] = field(default_factory=list)  # (epoch seconds, state entered)
    stop_time: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)  # the run's history record

    def phase_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (at, name), (end, _) in zip(self.states, [*self.states[1:], (self.stop_time, "")], strict=True):
            phase = PHASES.get(name, "finish")
            out[phase] = out.get(phase, 0.0) + max(0.0, end - at)
        return out


def find_new_execution_arn(sfn: Any, state_machine_arn: str, known: set[str], timeout: float = 30.0) -> str:
    """The execution of `state_machine_arn` not in `known` (bounded wait); DemoError if none starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for execution in sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]:
            if execution["executionArn"] not in known:
                return str(execution["executionArn"])
        time.sleep(0.25)
    raise DemoError(f"no execution started within {timeout:.0f}s of the upload; see start_pipeline's log")


def follow(
    sfn: Any,
    arn: str,
    show: Callable[[str], None],
    *,
    timeout: float = RUN_TIMEOUT_SECONDS,
    detail: Callable[[str], str] | None = None,
) -> tuple[str, RunResult]:
    """Print each state as the workflow enters it (and `detail(state)` when it changes) until the
    execution ends; returns (status, what was seen). DemoError after `timeout` seconds."""
    result = RunResult(arn.rsplit(":", 1)[-1], arn, "RUNNING")
    seen = 0  # id of the last history event read
    started = time.time()
    deadline = time.monotonic() + timeout
    last_detail = ""
    while time.monotonic() < deadline:
        events = _events_after(sfn, arn, seen)
        for event in events:
            if event["type"].endswith("StateEntered"):
                name = event["stateEnteredEventDetails"]["name"]
                at = event["timestamp"].timestamp()
                if not result.states or result.states[-1][1] != name:
                    result.states.append((at, name))
                    if name not in _QUIET_STATES:
                        show(f"  {at - started:6.1f}s  {name}")
        seen = events[-1]["id"] if events else seen
        text = detail(result.states[-1][1] if result.states else "") if detail else ""
        if text and text != last_detail:
            show(f"            {text}")
            last_detail = text
        description = sfn.describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            result.status = description["status"]
            stop = description.get("stopDate")
            result.stop_time = stop.timestamp() if hasattr(stop, "timestamp") else time.time()
            return result.status, result
        time.sleep(0.5)
    raise DemoError(f"execution {arn} still running after {timeout:.0f}s")


_QUIET_STATES = frozenset(
    {
        "WaitTraining",
        "DescribeTraining",
        "CountTrainingPoll",
        "TrainingDone",
        "KeepPollingTraining",
        "InitTrainingPolls",
        "NeedsJudge",
    }
    | {"WaitJudge", "DescribeJudge", "CountJudgePoll", "JudgeDone", "KeepPollingJudge", "InitJudgePolls"}
    | {"WaitBuild", "CheckBuild", "BuildDone", "WaitCanaryReady", "CheckCanaryReady", "IsCanaryReady"}
    | {"StartSteps", "WaitStepReady", "CheckStepReady", "IsStepReady"}
    | {"WaitStableReady", "CheckStableReady", "IsStableReady", "WaitRollbackReady", "CheckRollbackReady"}
    | {"IsRollbackReady", "LockAcquired", "IsBetter", "CanaryVerdict", "Outcome"}
)


def _events_after(sfn: Any, arn: str, last_id: int) -> list[dict[str, Any]]:
    """The execution's history events after event `last_id`, oldest first, without execution data:
    newest-first pages until one reaches an event already seen, so a poll costs what is new, not
    the whole history (up to 25,000 events on AWS: 1,000 pages)."""
    newer: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "executionArn": arn,
        "reverseOrder": True,
        "includeExecutionData": False,
        "maxResults": 10,  # a poll every half second finds a few new events
    }
    for _ in range(1000):
        page = sfn.get_execution_history(**kwargs)
        for event in page["events"]:
            if event["id"] <= last_id:
                return newer[::-1]
            newer.append(event)
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return newer[::-1]


def progress_detail(cloud: LocalCloud) -> Callable[[str], str]:
    """Training status and Deployment replicas while the workflow is in those phases."""
    return lambda state: _progress_detail(cloud, state)


def _progress_detail(cloud: LocalCloud, state: str) -> str:
    phase = PHASES.get(state)
    if phase == "train" and cloud.training_updates:
        _, job, status, secondary = cloud.training_updates[-1]
        return f"training {job}: {status} / {secondary}"
    if phase in {"canary", "promote", "rollback", "bake", "watch"}:
        parts = []
        for name in ("churn-stable", "churn-canary"):
            try:
                d = cloud.kube_store.get("Deployment", "models", name)
            except Exception:
                continue
            st = d.get("status") or {}
            parts.append(f"{name} {st.get('readyReplicas', 0)}/{d['spec'].get('replicas', 0)} ready")
        return "; ".join(parts)
    return ""


# --- the story ------------------------------------------------------------------------------------
def team_script_config(config: ModelConfig) -> ModelConfig:
    """`config` trained by the demo team's script (from its folder, which put_model uploads) with
    the same hyperparameters: the bad version of the demo."""
    doc = config.to_document()
    doc["training"] = {**doc["training"], "script": {"entry_point": "train.py", "source": str(DEMO_TEAM)}}
    return ModelConfig.model_validate(doc)


def live_customers(sample: list[list[float]]) -> list[list[float]]:
    """The training data's customers plus new ones (tenure 0, everything else as a sampled
    customer's), NEW_CUSTOMER_SHARE of the rows: what a live churn model is asked about."""
    tenure = CHURN_FEATURES.index("tenure_months")
    new = round(len(sample) * NEW_CUSTOMER_SHARE / (1 - NEW_CUSTOMER_SHARE))
    return sample + [[0.0 if i == tenure else v for i, v in enumerate(row)] for row in sample[:new]]


def _dataset(version: int, workdir: Path) -> tuple[bytes, list[list[float]]]:
    rows, seed = DATASETS[version]
    path = generate_churn_csv(workdir / f"churn-v{version}.csv", rows, seed)
    data = path.read_bytes()
    sample = [
        [float(row[f]) for f in CHURN_FEATURES]
        for row in list(csv.DictReader(io.StringIO(data.decode())))[:200]
    ]
    return data, sample


def _run_version(
    cloud: LocalCloud,
    version: int,
    workdir: Path,
    show: Callable[[str], None],
    label: str,
    model: str = "churn",
) -> RunResult:
    sfn = cloud.client("stepfunctions")
    known = {
        e["executionArn"]
        for e in sfn.list_executions(stateMachineArn=cloud.info.state_machine_arn)["executions"]
    }
    data, _ = _dataset(version, workdir)
    key = cloud.upload_dataset(model, data, f"{model}-v{version}.csv")
    show(f"\n== {label}: uploaded s3://{cloud.info.bucket}/{key} ({len(data) // 1024} KiB)")
    arn = find_new_execution_arn(sfn, cloud.info.state_machine_arn, known)
    show(f"   execution {arn.rsplit(':', 1)[-1]}")
    _, result = follow(sfn, arn, show, detail=progress_detail(cloud))
    result.label = label
    records = cloud.store().query_docs(model, "HISTORY#", limit=20)
    run_id = arn.rsplit(":", 1)[-1]
    result.record = next((r for r in records if r.get("run_id") == run_id), {})
    show(f"   -> {result.status}: {result.record.get('status')} {result.record.get('error') or ''}".rstrip())
    return result


def stable_image(cloud: LocalCloud) -> str:
    d = cloud.kube_store.get("Deployment", "models", "churn-stable")
    return str(d["spec"]["template"]["spec"]["containers"][0]["image"])


def run_demo(
    cloud: LocalCloud, workdir: Path, show: Callable[[str], None] = print
) -> tuple[int, dict[str, Any]]:
    """Run the story on a started LocalCloud; returns (exit code, facts for the summary/report)."""
    failures: list[str] = []
    config = load_config_file(DEMO_CONFIG)
    cloud.put_model(config)
    show(f"model churn stored from {DEMO_CONFIG.relative_to(ROOT)}; alarms and Deployments created")
    results: list[RunResult] = []

    v1 = _run_version(cloud, 1, workdir, show, "version 1 (first deploy)")
    results.append(v1)
    if v1.record.get("status") != "promoted":
        failures.append(f"version 1 was not promoted: {v1.record.get('status')} {v1.record.get('cause')}")
        return _finish(cloud, results, None, failures, workdir, show)

    _, sample = _dataset(1, workdir)
    url = cloud.service_url("models", "churn")
    traffic = SteadyTraffic(url, live_customers(sample)).start()
    show(
        f"\nsteady traffic: 20 predictions/s to {url}/invocations "
        f"({NEW_CUSTOMER_SHARE:.0%} of them new customers, 0 months of tenure)"
    )
    try:
        v2 = _run_version(cloud, 2, workdir, show, "version 2 (canary, then promoted)")
        results.append(v2)
        if v2.record.get("status") != "promoted":
            failures.append(f"version 2 was not promoted: {v2.record.get('status')} {v2.record.get('cause')}")
        good_image = stable_image(cloud)

        cloud.put_model(team_script_config(config))
        show(
            f"\nthe team trains with its own script now: training.script = {DEMO_TEAM.name}/train.py "
            "(its feature step takes log(tenure), which fails for new customers)"
        )
        alarms_before = len(cloud.alarm_changes)
        v3 = _run_version(cloud, 3, workdir, show, "version 3 (bad: canary alarm, rollback)")
        results.append(v3)
        cloud.put_model(config)  # the built-in training again for whatever comes next
        if v3.record.get("status") != "rolled_back":
            failures.append(
                f"version 3 was not rolled back: {v3.record.get('status')} {v3.record.get('cause')}"
            )
        fired = [c for c in cloud.alarm_changes[alarms_before:] if c.get("state", {}).get("value") == "ALARM"]
        if not fired:
            failures.append("no alarm fired for version 3's canary")
        if stable_image(cloud) != good_image:
            failures.append(
                f"stable runs {stable_image(cloud)} after the rollback, not version 2's {good_image}"
            )
        time.sleep(2)  # answers in flight when the run ended
    finally:
        traffic.stop()
    return _finish(cloud, results, traffic, failures, workdir, show)


def _finish(
    cloud: LocalCloud,
    results: list[RunResult],
    traffic: SteadyTraffic | None,
    failures: list[str],
    workdir: Path,
    show: Callable[[str], None],
) -> tuple[int, dict[str, Any]]:
    facts: dict[str, Any] = {"runs": results, "traffic": traffic, "alarms": list(cloud.alarm_changes)}
    if traffic is not None:
        counts = traffic.summary()
        facts["traffic_counts"] = counts
        stable_failed = counts.get("stable", {}).get("failed", 0)
        unanswered = counts.get("?", {}).get("failed", 0)
        if stable_failed or unanswered:
            failures.append(
                f"{stable_failed} requests failed on the stable variant and {unanswered} got no answer"
                + "".join(f"\n  no answer: {line}" for line in traffic.unanswered()[:10])
            )
    from modelops_local.report import print_summary, write_report

    print_summary(results, facts, show)
    report = write_report(workdir / "demo-report.html", results, facts)
    show(f"\nreport: {report}")
    for failure in failures:
        show(f"FAILED: {failure}")
    if not failures:
        show(
            "demo passed: v1 deployed, v2 promoted through a canary, v3 rolled back on its alarm; stable never failed"
        )
    facts["failures"] = failures
    return (1 if failures else 0), facts


# --- the drift story (`modelops local demo --drift`) -------------------------------------------------
#: The drift story's monitor: a one-minute window, PSI above 0.5 over at least 300 predictions.
DRIFT_SETTINGS = {"enabled": True, "period_minutes": 1, "threshold": 0.5, "min_samples": 300}
#: How the shifted traffic differs from the training data's customers: five years more tenure and
#: half again the monthly charges (the customers a churn model sees after a price change).
SHIFT = {"tenure_months": 60.0, "monthly_charges": 1.5}
DRIFT_RUN_TIMEOUT_SECONDS = 300


def shifted_customers(sample: list[list[float]]) -> list[list[float]]:
    """The sampled customers shifted by SHIFT: tenure plus 60 months, monthly charges x 1.5."""
    tenure = CHURN_FEATURES.index("tenure_months")
    charges = CHURN_FEATURES.index("monthly_charges")
    return [
        [
            v + SHIFT["tenure_months"] if i == tenure else v * SHIFT["monthly_charges"] if i == charges else v
            for i, v in enumerate(row)
        ]
        for row in sample
    ]


def drift_config() -> ModelConfig:
    """The demo's churn model with the drift monitor on (DRIFT_SETTINGS)."""
    doc = load_config_file(DEMO_CONFIG).to_document()
    doc["drift"] = dict(DRIFT_SETTINGS)
    return ModelConfig.model_validate(doc)


def run_drift_demo(
    cloud: LocalCloud,
    workdir: Path,
    show: Callable[[str], None] = print,
    *,
    versions: int = 2,
    config: ModelConfig | None = None,
) -> tuple[int, dict[str, Any]]:
    """The drift story: `versions` versions of the churn model (the drift monitor on) promoted,
    the second under steady traffic of customers like the training data's; then the demo client
    shifts its traffic (`shifted_customers`): the monitor's PSI crosses the threshold, the drift
    alarm fires and a retrain run starts with trigger `drift`. Returns (exit code, facts: the
    runs, the drift execution, `shift_to_start_seconds`). `config`: another model with its drift
    monitor on (default `drift_config()`)."""
    failures: list[str] = []
    config = config or drift_config()
    model = config.name
    cloud.put_model(config)
    show(f"model {model} stored with the drift monitor on: {config.drift.model_dump()}")
    results: list[RunResult] = []
    sfn = cloud.client("stepfunctions")
    traffic: SteadyTraffic | None = None
    facts: dict[str, Any] = {"runs": results}
    try:
        for version in range(1, versions + 1):
            result = _run_version(cloud, version, workdir, show, f"version {version}", model)
            results.append(result)
            if result.record.get("status") != "promoted":
                failures.append(f"version {version} was not promoted: {result.record.get('status')}")
                return 1, {**facts, "failures": failures}
            if traffic is None:
                _, sample = _dataset(version, workdir)
                url = cloud.service_url(config.kubernetes.namespace, config.kubernetes.service)
                traffic = SteadyTraffic(url, sample).start()
                show(f"\nsteady traffic: 20 predictions/s of customers like the training data's to {url}")
        assert traffic is not None
        known = {
            e["executionArn"]
            for e in sfn.list_executions(stateMachineArn=cloud.info.state_machine_arn)["executions"]
        }
        _, sample = _dataset(1, workdir)
        traffic.rows = shifted_customers(sample)
        shifted_at = time.time()
        show(
            f"\ntraffic shifted: tenure + {SHIFT['tenure_months']:.0f} months, monthly charges x {SHIFT['monthly_charges']}"
        )
        arn = _wait_for_drift_run(sfn, cloud.info.state_machine_arn, known, DRIFT_RUN_TIMEOUT_SECONDS)
        if arn is None:
            failures.append(f"no drift run started within {DRIFT_RUN_TIMEOUT_SECONDS}s of the shift")
            return 1, {**facts, "failures": failures}
        described = sfn.describe_execution(executionArn=arn)
        started_at = described["startDate"].timestamp()
        request = json.loads(described["input"])
        facts.update(
            drift_execution=arn,
            drift_request=request,
            shift_to_start_seconds=started_at - shifted_at,
            drift_doc=cloud.store().get_doc(model, "DRIFT"),
        )
        show(
            f"   drift run {arn.rsplit(':', 1)[-1]} started {started_at - shifted_at:.1f}s after the shift: "
            f"{request.get('reason')}"
        )
        _, ended = follow(sfn, arn, show, timeout=RUN_TIMEOUT_SECONDS)
        facts["drift_run_status"] = ended.status
    finally:
        if traffic is not None:
            traffic.stop()
            facts["traffic_counts"] = traffic.summary()
    facts["failures"] = failures
    return (1 if failures else 0), facts


def _wait_for_drift_run(sfn: Any, state_machine_arn: str, known: set[str], timeout: float) -> str | None:
    """The first new execution whose name says trigger drift, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for execution in sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]:
            if execution["executionArn"] not in known and "-drift-" in execution["name"]:
                return str(execution["executionArn"])
        time.sleep(0.5)
    return None
