"""Test tiers follow the folder: tests/unit, tests/integration, tests/e2e (markers registered in
pyproject.toml and applied here, so `pytest -m unit` selects by folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from modelops_local.moto_patches import MotoPatches

# One OpenMP thread per test process (before any test module imports scikit-learn or LightGBM),
# as the serving image and the local training jobs have: `make test` runs two pytest-xdist
# workers, or the unit tier beside the e2e lanes, on 2 cores, and OpenMP's spinning threads then
# wait on each other - a HistGradientBoosting fit took 4 s instead of 0.3 s beside a busy core.
# The subprocesses tests start inherit it. Set it yourself to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

#: botocore parses its JSON data (service models, endpoints) per Session, and the product makes one
#: per service, which tests reset for each test: every test process shares what its loaders parsed
#: instead (`MotoPatches.share_loader_caches`; about 0.15 s of CPU per client otherwise).
_SHARED_LOADERS = MotoPatches()


def pytest_configure(config: pytest.Config) -> None:
    _SHARED_LOADERS.share_loader_caches()


def pytest_unconfigure(config: pytest.Config) -> None:
    _SHARED_LOADERS.undo()


TIER_ORDER = {"unit": 0, "integration": 1, "e2e": 2}

#: Integration folders whose tests `make test` runs with the cores to themselves (marker `alone`):
#: the workflow's timing goals (1,000 uploads delivered within a minute, 20 models holding their
#: locks together), real `serve` processes timed on drain and idle deadlines, real pod processes
#: and probes. The rest of the integration tier (the bad-input corpus, the CLI, the local runtime's
#: AWS stand-ins) runs after the unit tier beside the e2e lanes, whose CPU is about half idle.
ALONE = ("integration/workflow", "integration/serving", "integration/local/kube")

# Property tests (hypothesis) are bounded and deterministic by default: the same examples on every
# run (derandomize), no example database written into the tree, and no per-example deadline: it
# times the machine, not the code (at nice 10 beside the `alone` tests and a CPU hog, an example
# that takes 0.1 ms took 3.9 s once and failed a 2 s deadline); pytest-timeout bounds each test.
# HYPOTHESIS_PROFILE=explore searches harder and at random.
settings.register_profile(
    "ci", max_examples=150, deadline=None, derandomize=True, database=None, print_blob=True
)
settings.register_profile("explore", max_examples=2000, deadline=None, derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: Under pytest-xdist (`make test`: `-n 3` for this tier) the end-to-end tests, which mostly wait
#: out bake and watch windows and alarm periods, run in E2E_LANES lanes side by side: each lane is
#: one worker with its own local runtime (its own ports, state folder and processes). Lanes are
#: balanced by these seconds (each test's call in three lanes beside the rest of the integration
#: tier on a clean clone, 2026-12-06 05:41 UTC; the training-failure test's from an earlier run;
#: tools/e2e_timeline.py tells where each test's time goes); an unlisted test counts 60.
E2E_LANES = int(os.environ.get("E2E_LANES", "3"))
E2E_SECONDS = {
    "test_the_demo_story_holds": 177,
    "test_an_approval_timeout_and_an_abort_in_each_phase_roll_back_and_release_the_lock": 80,
    "test_three_httproute_steps_give_the_canary_each_steps_share_then_promote": 68,
    "test_a_burst_of_uploads_never_runs_two_rollouts_and_ends_on_the_newest_data": 59,
    # a minute of it waits for the drift monitor's first scheduled tick (drift.period_minutes 1)
    "test_shifted_traffic_starts_a_retrain_on_the_drift_trigger": 75,
    # the fault matrix's e2e rows (the decision rows run at the integration tier since issue 11)
    "test_a_canary_that_crash_loops_or_never_gets_ready_leaves_v1_serving": 51,
    "test_a_lightgbm_multiclass_model_is_served_by_name_then_replaced_by_an_xgboost_candidate": 45,
    "test_kubernetes_api_errors_and_a_read_timeout_that_fires_are_retried_to_the_right_outcome": 56,
    "test_approved_versions_are_promoted_and_rollback_to_brings_the_first_back": 48,
    "test_first_deploy_then_a_tie_is_rejected_then_a_watch_alarm_restores_the_previous_image": 48,
    "test_a_model_whose_code_needs_a_package_of_its_own_is_built_with_it_and_served": 21,
    "test_a_script_mode_model_trains_from_the_teams_code_and_is_promoted": 21,
    "test_up_env_status_tick_and_ctrl_c": 24,
    "test_the_image_clean_up_keeps_what_serves_on_the_local_runtime": 18,
    "test_a_redelivered_s3_event_starts_nothing_new": 21,
    "test_a_dataset_with_missing_values_in_several_columns_is_promoted": 17,
    "test_an_execution_stopped_while_it_waits_for_approval_is_cleaned_up": 12,
    "test_a_training_failure_changes_nothing_on_the_cluster_and_says_why": 4,
}


#: On xdist workers (`make test` runs the unit and integration tiers with `-n 2`) the slowest tests
#: are handed out first, so none of them starts last and leaves one worker running it alone; a test
#: not listed here keeps its place. Seconds of each test's call in
#: `pytest -m "unit or integration" -n 2` on the 2-core machine shared with other work (2026-12-04,
#: 22:05-22:21 UTC, load average 4.5-7; Retry waits scaled at the integration tier, see
#: tests/integration/workflow/conftest.py).
SLOW_FIRST_SECONDS = {
    "test_a_thousand_uploads_within_a_minute_never_run_two_rollouts_and_end_on_the_newest": 133,
    "test_twenty_models_at_once_proceed_independently": 43,
    "test_a_team_images_serving_image_holds_the_judges_baseline": 39,
    "test_a_follow_up_with_nothing_newer_than_what_its_holder_trained_trains_nothing": 29,
    "test_happy_path_promotes_and_releases_the_lock": 28,
    "test_an_upload_whose_run_arrives_after_a_newer_one_was_trained_trains_nothing": 24,
    "test_a_stable_alarm_during_promotion_rolls_back_at_the_watchs_first_moment": 22,
    "test_alarm_in_watch_window_restores_previous_stable_image": 20,
}


def _tier(item: pytest.Item) -> str:
    return Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]


def e2e_lanes(nodeids: list[str], lanes: int = E2E_LANES) -> dict[str, str]:
    """Each e2e test's lane: longest first onto the least loaded lane."""
    load = [0.0] * max(1, lanes)
    lane_of = {}
    seconds = {nodeid: E2E_SECONDS.get(nodeid.rsplit("::", 1)[-1].split("[")[0], 60) for nodeid in nodeids}
    for nodeid in sorted(seconds, key=lambda n: (-seconds[n], n)):
        lane = load.index(min(load))
        load[lane] += seconds[nodeid]
        lane_of[nodeid] = f"e2e-lane-{lane}"
    return lane_of


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`-n N` (--dist load): every e2e lane is one unit of work for one worker; every other test
    is a unit of its own, handed to whichever worker is free. (xdist's own --dist loadgroup
    cannot do this under pytest 9: it renames `item._nodeid`, which pytest 9 no longer reads.)"""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class E2eLaneScheduling(LoadScopeScheduling):
        lane_of: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.lane_of is None:
                # never more lanes than workers: a lane's worker stops after it, so a lane left
                # over would find no worker ("Unexpectedly no active workers available")
                e2e = [n for n in self.collection or [] if n.startswith("tests/e2e/")]
                self.lane_of = e2e_lanes(e2e, min(E2E_LANES, self.numnodes))
            return self.lane_of.get(nodeid, nodeid)

        def _reschedule(self, node: Any) -> None:
            # A lane's worker keeps its local runtime (and the environment it points this process
            # at) up to the end of its session: it takes nothing after its lane, and stops.
            if any(scope.startswith("e2e-lane-") for scope in self.assigned_work.get(node, {})):
                node.shutdown()
                return
            super()._reschedule(node)

    return E2eLaneScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier (so `pytest -m unit` selects by folder). Run alone, the tiers
    go fastest first (unit, integration, e2e), so a broken unit fails the run early; on xdist
    workers the slowest tier is handed out first (e2e lanes, then integration, then unit), and
    within a tier the tests of SLOW_FIRST_SECONDS, slowest first."""
    alone = tuple(f"{folder}/" for folder in ALONE)
    for item in items:
        where = Path(str(item.fspath)).relative_to(ROOT / "tests")
        if where.parts[0] in TIER_ORDER:
            item.add_marker(getattr(pytest.mark, where.parts[0]))
        if where.as_posix().startswith(alone):
            item.add_marker(pytest.mark.alone)
    if hasattr(config, "workerinput"):
        items.sort(
            key=lambda item: (
                -TIER_ORDER.get(_tier(item), 1),
                -SLOW_FIRST_SECONDS.get(getattr(item, "originalname", item.name), 0),
            )
        )
    else:
        items.sort(key=lambda item: TIER_ORDER.get(_tier(item), 1))


def load_event(name: str) -> dict:
    """The sample events in events/ are the ones `sam local invoke` uses; tests load the same files."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in us-east-1 and no AWS_ENDPOINT_URL: boto3 clients in the test talk to
    moto's in-process mock (or fail), never to a real account or a running local stack."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
