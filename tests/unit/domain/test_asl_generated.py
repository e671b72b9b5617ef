from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_checked_in_definition_matches_generator():
    # The ASL is generated from tools/gen_asl.py so shared Retry/Catch policies stay identical.
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_asl", ROOT / "tools" / "gen_asl.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text() == module.render(), (
        "statemachines/retrain_and_rollout.asl.json is stale: run `python tools/gen_asl.py`"
    )


def test_every_transition_exists_and_every_state_is_reachable():
    definition = json.loads((ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text())
    states = definition["States"]
    edges: dict[str, set[str]] = {name: set() for name in states}
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Catch", [])] + [c["Next"] for c in state.get("Choices", [])]
        for target in filter(None, targets):
            assert target in states, f"{name} -> missing state {target}"
            edges[name].add(target)
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(edges[current])
    assert seen == set(states), f"unreachable: {set(states) - seen}"


def test_no_sync_integrations_or_eks_call():
    text = (ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text()
    assert ".sync" not in text and "eks:call" not in text


def test_every_state_after_deploy_canary_rolls_back_on_error():
    states = json.loads((ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text())["States"]
    for name in [
        "DeployCanary",
        "CheckCanaryReady",
        "SmokeTest",
        "Bake",
        "AnalyzeCanary",
        "AwaitApproval",
        "RestoreNow",
        "Promote",
        "CheckStableReady",
        "FinishPromotion",
        "Watch",
    ]:
        catchers = states[name]["Catch"]
        assert catchers[-1] == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Rollback"}, (
            name
        )


def test_json_paths_end_in_dollar_suffix():
    # A key ending in `.$` must hold a path or intrinsic; a plain key must not look like one.
    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith(".$"):
                    assert isinstance(value, str) and (
                        value.startswith("$") or value.startswith("States.")
                    ), key
                elif isinstance(value, str) and key not in {
                    "Variable",
                    "InputPath",
                    "OutputPath",
                    "ResultPath",
                    "SecondsPath",
                    "TimeoutSecondsPath",
                    "ErrorPath",
                    "CausePath",
                    "NumericGreaterThanPath",
                }:
                    assert not value.startswith("$."), f"{key}: {value} looks like a path; key needs '.$'"
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads((ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text()))


def _transitions(state: dict) -> set[str]:
    nexts = {state.get("Next"), state.get("Default")}
    nexts |= {choice.get("Next") for choice in state.get("Choices", [])}
    nexts |= {catch.get("Next") for catch in state.get("Catch", [])}
    return {n for n in nexts if n}


def test_promotion_is_entered_only_through_the_canary_passing_a_person_or_a_restore_now():
    # CanaryPassed is the single entry after an analysis passed (its Choice sends a model with
    # approval.required to the approval wait); a person's `modelops promote` ends the bake in
    # success; `rollback --to --now` promotes without a canary
    states = json.loads((ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text())["States"]
    into_promote = sorted(name for name, state in states.items() if "Promote" in _transitions(state))
    assert into_promote == ["AwaitApproval", "Bake", "CanaryPassed", "RestoreNow"]
    assert _transitions(states["CanaryVerdict"]) == {"CanaryPassed", "CanaryRejected", "ShiftTraffic"}
    assert _transitions(states["CanaryPassed"]) == {"NotifyApproval", "Promote"}
    assert states["AwaitApproval"]["TimeoutSecondsPath"] == "$.run.config.approval.timeout_seconds"
    assert states["AwaitApproval"]["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": "$.approval",
        "Next": "ApprovalTimedOut",
    }
    assert states["ApprovalTimedOut"]["Next"] == "Rollback"
