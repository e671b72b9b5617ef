"""What a person sees at the end of a local run: a summary table and a self-contained HTML report.

The report (no scripts, no network) holds, per run, the workflow's state graph with the path the
execution took, and the canary-versus-stable error rate and latency over time with the alarm and
rollback moments marked.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "retrain_and_rollout.asl.json"
VARIANT_COLORS = {"stable": "#2563eb", "canary": "#ea580c"}


class _Run(Protocol):
    label: str
    status: str
    states: list[tuple[float, str]]
    stop_time: float
    record: dict[str, Any]

    def phase_seconds(self) -> dict[str, float]: ...


# --- the summary table ----------------------------------------------------------------------------
def summary_rows(runs: Sequence[_Run]) -> list[dict[str, str]]:
    rows = []
    for run in runs:
        record = run.record
        evaluation = record.get("evaluation") or {}
        analysis = record.get("analysis") or {}
        image = str(record.get("image") or "")
        phases = run.phase_seconds()
        rows.append(
            {
                "run": run.label,
                "outcome": str(record.get("status") or run.status),
                "version": str(record.get("version") or "-"),
                "metric": _metric(evaluation),
                "image": image.rsplit("@", 1)[-1][:19] if "@" in image else "-",
                "canary": _verdict(analysis, record),
                "time": f"{sum(phases.values()):.0f}s",
                "phases": " ".join(f"{k} {v:.0f}s" for k, v in phases.items() if v >= 0.5),
            }
        )
    return rows


def _metric(evaluation: Mapping[str, Any]) -> str:
    if not evaluation:
        return "-"
    metric = evaluation.get("metric", "metric")
    candidate, champion = evaluation.get("candidate"), evaluation.get("champion")
    text = f"{metric} {candidate:.4f}" if isinstance(candidate, int | float) else f"{metric} ?"
    if isinstance(champion, int | float):
        text += f" (champion {champion:.4f})"
    return text


def _verdict(analysis: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    if record.get("status") == "rolled_back":
        return f"rolled back: {record.get('error') or ''}".strip()
    if not analysis:
        return "-"
    if analysis.get("verdict") == "pass":
        notes = analysis.get("notes") or []
        return "pass" + (f" ({notes[0]})" if notes else "")
    return "fail: " + "; ".join(analysis.get("reasons") or [])


def print_summary(runs: Sequence[_Run], facts: Mapping[str, Any], show: Callable[[str], None]) -> None:
    rows = summary_rows(runs)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # the CLI extra is missing: plain text
        for row in rows:
            show("  ".join(f"{k}={v}" for k, v in row.items()))
    else:
        table = Table(title="modelops local: runs")
        for column in ("run", "outcome", "version", "metric", "image", "canary", "time", "phases"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row.values())
        console = Console(record=True, width=160)
        with console.capture() as capture:
            console.print(table)
        show(capture.get())
    counts = facts.get("traffic_counts")
    if counts:
        parts = [f"{variant}: {c['ok']} ok, {c['failed']} failed" for variant, c in sorted(counts.items())]
        show("traffic: " + "; ".join(parts))


# --- the HTML report ------------------------------------------------------------------------------
def write_report(path: Path, runs: Sequence[_Run], facts: Mapping[str, Any]) -> Path:
    definition = json.loads(ASL.read_text(encoding="utf-8"))
    traffic = facts.get("traffic")
    answers = list(getattr(traffic, "answers", []) or [])
    alarms = [a for a in facts.get("alarms", []) if (a.get("state") or {}).get("value") == "ALARM"]
    sections = []
    for run in runs:
        visited = [name for _, name in run.states]
        start, end = (run.states[0][0] if run.states else 0.0), run.stop_time
        rollback_at = next((at for at, name in run.states if name == "Rollback"), None)
        window = [a for a in answers if start <= a.at <= end]
        run_alarms = [a["time"] for a in alarms if start <= a["time"] <= end]
        sections.append(
            f"<section><h2>{html.escape(run.label)}: {html.escape(str(run.record.get('status') or run.status))}</h2>"
            + state_graph_svg(definition, visited)
            + (
                traffic_svg(window, start, end, run_alarms, rollback_at)
                if window
                else "<p>no traffic sampled</p>"
            )
            + "</section>"
        )
    rows = summary_rows(runs)
    table = "<table><tr>" + "".join(f"<th>{k}</th>" for k in (rows[0] if rows else {})) + "</tr>"
    for row in rows:
        table += "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row.values()) + "</tr>"
    table += "</table>"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>modelops local report</title><style>"
        "body{font-family:sans-serif;margin:2em;color:#111}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}section{margin:2em 0}"
        "</style></head><body><h1>modelops local report</h1>" + table + "".join(sections) + "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _edges(states: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(from, to, kind) for every transition: next, choice, default, catch."""
    out = []
    for name, state in states.items():
        if "Next" in state:
            out.append((name, state["Next"], "next"))
        for choice in state.get("Choices", []):
            out.append((name, choice["Next"], "choice"))
        if "Default" in state:
            out.append((name, state["Default"], "choice"))
        for catch in state.get("Catch", []):
            out.append((name, catch["Next"], "catch"))
    return out


def state_graph_svg(definition: Mapping[str, Any], visited: Sequence[str]) -> str:
    """The workflow as layered boxes (depth = shortest distance from StartAt along next/choice
    edges), the path taken drawn bold and its states filled."""
    states: Mapping[str, Any] = definition["States"]
    edges = _edges(states)
    depth = {definition["StartAt"]: 0}
    frontier = [definition["StartAt"]]
    while frontier:
        nxt = []
        for name in frontier:
            for a, b, kind in edges:
                if a == name and kind != "catch" and b not in depth:
                    depth[b] = depth[name] + 1
                    nxt.append(b)
        frontier = nxt
    for name in states:
        depth.setdefault(name, max(depth.values()) + 1)
    columns: dict[int, list[str]] = {}
    for name in states:
        columns.setdefault(depth[name], []).append(name)
    box_w, box_h, gap_x, gap_y = 130, 22, 24, 8
    pos = {}
    for col, names in columns.items():
        for row, name in enumerate(names):
            pos[name] = (10 + col * (box_w + gap_x), 10 + row * (box_h + gap_y))
    width = 20 + (max(columns) + 1) * (box_w + gap_x)
    height = 20 + max(len(n) for n in columns.values()) * (box_h + gap_y)
    taken = set(itertools.pairwise(visited))
    seen = set(visited)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='10'>"]
    for a, b, kind in edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        bold = (a, b) in taken
        color = "#16a34a" if bold else ("#f3c4c4" if kind == "catch" else "#d4d4d4")
        parts.append(
            f"<line x1='{x1 + box_w}' y1='{y1 + box_h / 2}' x2='{x2}' y2='{y2 + box_h / 2}' "
            f"stroke='{color}' stroke-width='{2.5 if bold else 1}'/>"
        )
    for name, (x, y) in pos.items():
        fill = "#bbf7d0" if name in seen else "#f8fafc"
        if name in seen and name in {"Rollback", "RunFailed", "RecordRollback", "CanaryRejected"}:
            fill = "#fecaca"
        parts.append(
            f"<rect x='{x}' y='{y}' width='{box_w}' height='{box_h}' rx='4' fill='{fill}' stroke='#64748b'/>"
            f"<text x='{x + 4}' y='{y + 15}'>{html.escape(name[:22])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def buckets(
    answers: Iterable[Any], start: float, seconds: float = 2.0
) -> dict[str, list[tuple[float, float, float]]]:
    """{variant: [(t, error rate, p99 latency ms)]} per `seconds`-wide bucket after `start`."""
    grouped: dict[tuple[str, int], list[Any]] = {}
    for a in answers:
        if a.variant in VARIANT_COLORS:
            grouped.setdefault((a.variant, int((a.at - start) // seconds)), []).append(a)
    out: dict[str, list[tuple[float, float, float]]] = {}
    for (variant, index), items in sorted(grouped.items()):
        latencies = sorted(a.latency_ms for a in items)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        errors = sum(1 for a in items if not 200 <= a.status < 300) / len(items)
        out.setdefault(variant, []).append((index * seconds, errors, p99))
    return out


def traffic_svg(
    answers: Sequence[Any], start: float, end: float, alarms: Sequence[float], rollback_at: float | None
) -> str:
    """Two charts (error rate, p99 latency) of canary vs stable, with alarm (red) and rollback (black) marks."""
    series = buckets(answers, start)
    span = max(1.0, end - start)
    width, height, pad = 900, 140, 40
    charts = []
    for title, index in (("error rate", 1), ("p99 latency ms", 2)):
        values = [p[index] for points in series.values() for p in points] or [1.0]
        ymax = max(max(values) * 1.1, 0.1 if index == 1 else 1.0)
        parts = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 30}' font-size='11'>"
        ]
        parts.append(f"<text x='{pad}' y='12'>{title} (max {ymax:.3g})</text>")
        parts.append(
            f"<rect x='{pad}' y='18' width='{width - 2 * pad}' height='{height - 20}' fill='none' stroke='#ccc'/>"
        )

        def x_of(t: float) -> float:
            return pad + (width - 2 * pad) * t / span

        def y_of(v: float, ymax: float = ymax) -> float:
            return 18 + (height - 20) * (1 - v / ymax)

        for variant, points in series.items():
            coords = " ".join(f"{x_of(t):.1f},{y_of(e if index == 1 else lat):.1f}" for t, e, lat in points)
            parts.append(
                f"<polyline fill='none' stroke='{VARIANT_COLORS[variant]}' stroke-width='2' points='{coords}'/>"
            )
        for at in alarms:
            x = x_of(at - start)
            parts.append(
                f"<line x1='{x:.1f}' y1='18' x2='{x:.1f}' y2='{height - 2}' stroke='red' stroke-dasharray='4'/>"
            )
            parts.append(f"<text x='{x + 3:.1f}' y='30' fill='red'>alarm</text>")
        if rollback_at is not None:
            x = x_of(rollback_at - start)
            parts.append(
                f"<line x1='{x:.1f}' y1='18' x2='{x:.1f}' y2='{height - 2}' stroke='black' stroke-width='2'/>"
            )
            parts.append(f"<text x='{x + 3:.1f}' y='44'>rollback</text>")
        parts.append(
            f"<text x='{pad}' y='{height + 14}'>0 s</text><text x='{width - pad - 30}' y='{height + 14}'>{span:.0f} s</text>"
        )
        legend = " ".join(
            f"<tspan fill='{c}'>&#9632; {v}</tspan>" for v, c in VARIANT_COLORS.items() if v in series
        )
        parts.append(f"<text x='{width / 2:.0f}' y='{height + 14}'>{legend}</text></svg>")
        charts.append("".join(parts))
    return "<div>" + "<br/>".join(charts) + "</div>"
