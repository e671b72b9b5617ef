"""The README's workflow diagram (Architecture) against the workflow it draws: every node named
after a state of statemachines/retrain_and_rollout.asl.json is that state, each arrow between two
such nodes is a path of the ASL (through states the diagram leaves out: Wait/Choice loops, Pass
states), and the rollout's states (the steps loop, the approval gate, promotion, rollback) are all
drawn."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

#: The states of the canary and its steps, the approval gate, promotion and rollback: each drawn.
ROLLOUT_STATES = {
    "PrepareRestore",
    "RestoreNow",
    "DeployCanary",
    "CheckCanaryReady",
    "SmokeTest",
    "ShiftTraffic",
    "CheckStepReady",
    "Bake",
    "AnalyzeCanary",
    "CanaryVerdict",
    "CanaryPassed",
    "NotifyApproval",
    "AwaitApproval",
    "Promote",
    "CheckStableReady",
    "FinishPromotion",
    "Watch",
    "Rollback",
}

_ARROW = re.compile(r"\s*(?:-\.->|-->)\s*(?:\|[^|]*\|)?\s*")
_LABEL = re.compile(r"\[[^\]]*\]|\{[^}]*\}")


def asl_edges() -> dict[str, set[str]]:
    states = json.loads((ROOT / "statemachines" / "retrain_and_rollout.asl.json").read_text())["States"]
    edges: dict[str, set[str]] = {}
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Catch", []) + state.get("Choices", [])]
        edges[name] = {t for t in targets if t}
    return edges


def diagram_edges(readme: str) -> list[tuple[str, str]]:
    """(from, to) of each arrow of the README's first mermaid flowchart (`A & B --> C` is two)."""
    block = readme.split("```mermaid\n", 1)[1].split("```", 1)[0]
    edges = []
    for line in block.splitlines():
        line = _LABEL.sub("", line.strip())
        if "-->" not in line and "-.->" not in line:
            continue
        groups = [[node.strip() for node in part.split("&")] for part in _ARROW.split(line)]
        for sources, targets in itertools.pairwise(groups):
            edges += [(a, b) for a in sources for b in targets]
    return edges


def reaches(asl: dict[str, set[str]], start: str, goal: str, drawn: set[str]) -> bool:
    """Whether the ASL goes from start to goal through states the diagram does not draw."""
    seen, frontier = {start}, [start]
    while frontier:
        for nxt in asl[frontier.pop()]:
            if nxt == goal:
                return True
            if nxt not in seen and nxt not in drawn:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def check(readme: str) -> list[str]:
    asl = asl_edges()
    edges = diagram_edges(readme)
    drawn = {node for edge in edges for node in edge if node in asl}
    problems = [
        f"{a} --> {b} is no path of the workflow"
        for a, b in edges
        if a in asl and b in asl and not reaches(asl, a, b, drawn)
    ]
    problems += [f"{state} is not drawn" for state in sorted(ROLLOUT_STATES - drawn)]
    return problems


def test_the_readme_diagram_draws_the_workflow_as_its_asl_runs():
    assert check((ROOT / "README.md").read_text()) == []


def test_an_arrow_the_workflow_does_not_take_or_a_state_left_out_is_found():
    readme = (ROOT / "README.md").read_text()
    # Promotion straight after the bake, skipping the analysis and the approval, is not a path
    wrong = readme.replace(
        "CanaryPassed -->|no| Promote", "Bake --> FinishPromotion\n    CanaryPassed -->|no| Promote"
    )
    assert check(wrong) == ["Bake --> FinishPromotion is no path of the workflow"]
    # A diagram without the approval gate is incomplete (and its shortcut is no path either)
    gateless = readme.replace(
        "CanaryPassed -->|yes| NotifyApproval[NotifyApproval: what to run] --> AwaitApproval",
        "CanaryPassed --> X",
    )
    assert "NotifyApproval is not drawn" in check(gateless)
