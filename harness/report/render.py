"""Turn a run's :class:`~harness.results.model.Results` (docs/RESULTS.md) into one
self-contained report.html.

The view model built here from the results' attributes is plain strings and typed dicts, so the
template only lays out; every missing value becomes a sentence that says why, never a crash or a
fake zero.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

import jinja2
from pydantic import BaseModel

from harness.analysis.compare import Comparison, comparison_for
from harness.redact import mask, mask_yaml_text
from harness.results.model import (
    READABLE_VERSIONS,
    SCHEMA,
    CohortLatency,
    Document,
    GateResult,
    Gpu,
    LatencyDrift,
    OutageFault,
    ProcessDrift,
    PrometheusRecord,
    ReloadFault,
    Results,
    RolloutJudgement,
    RolloutRecord,
    RolloutStep,
    Summary,
    TorchServeSummary,
    WindowLatency,
    results_of,
)
from harness.results.verdict import verdict_line

from . import figures as F

TEMPLATES = Path(__file__).resolve().parent / "templates"


class GateView(TypedDict):
    """One gate row of the report (values formatted with their unit)."""

    expr: str
    metric: str
    measured: str
    threshold: str
    outcome: str  # "pass" | "fail"
    reason: str | None


class VerdictView(TypedDict):
    """The verdict box: status (passed/failed/invalid/error), headline, reasons, symbol."""

    status: str
    headline: str
    reasons: list[str]
    symbol: str


class SummaryItem(TypedDict):
    """One summary-table row: run and baseline values, change and the comparison's verdict."""

    label: str
    metric: str
    run: str
    baseline: str
    change: str
    verdict: str
    verdict_class: str
    symbol: str
    p_value: str
    note: str | None
    ci_run: str
    ci_baseline: str


class SummaryGroup(TypedDict):
    """A titled group of summary rows."""

    title: str
    rows: list[SummaryItem]


class PrometheusView(TypedDict):
    """The Prometheus section: the server, the linked interval, the queries, how to serve the
    stored data again."""

    url: str
    start: str
    end: str
    queries: list[tuple[str, str, str]]  # (expression, what it is, graph link)
    data_dir: str | None
    run_dir: str
    listen: str  # host:port of the links, to serve the stored data there again


class OtherCompared(TypedDict):
    """A compared metric the summary table does not show."""

    metric: str
    run: str
    baseline: str
    change: str
    verdict: str
    verdict_class: str
    symbol: str


class FaultView(TypedDict):
    """An outage or reload: its window heading and (label, value) rows."""

    window: str
    rows: list[tuple[str, str]]


class ComparisonView(TypedDict):
    """What the page says of the comparison itself (its rows are the summary table's)."""

    environment_differs: bool
    warnings: list[str]
    stability: list[str]
    rule: str | None


class ProvenanceView(TypedDict):
    """Where the run was made: scalar facts, packages, archives, other nested facts as JSON."""

    scalars: list[tuple[str, str]]
    packages: list[tuple[str, Any]]
    archives: list[tuple[str, Any]]
    other: dict[str, str]


class EventRow(TypedDict):
    """One timeline event as executed."""

    at: str
    label: str
    took: str
    ok: bool
    error: str | None


class RolloutRow(TypedDict):
    """One rollout judgement (or a step never judged): TorchServe cohort / old cohort."""

    percent: int | None
    set: str
    window: str
    sessions: str
    frame_p95: str
    inference_p50: str
    errors: str
    accuracy: str
    local_share: str
    decision: str
    reason: str
    criteria: list[str]
    looks: str
    settle: str


class RolloutView(TypedDict):
    """The rollout table: outcome, why, one row per judgement."""

    outcome: str | None
    reason: str | None
    rows: list[RolloutRow]


FigureViews = dict[str, F.Figure | None]  # template key -> figure (None: said in words)


@dataclass(frozen=True)
class Row:
    """One line of the summary table: dotted metric path into ``summary`` and its unit."""

    label: str
    metric: str
    unit: str  # ms | rate | count | share | pct | mb | ratio


SUMMARY_GROUPS: list[tuple[str, list[Row]]] = [
    (
        "Frame latency (every frame, from scheduled send)",
        [
            Row(f"frame {p}", f"frame.latency_ms.{k}", "ms")
            for p, k in (("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"))
        ]
        # What a user feels: the longest any session waited for a reply (docs/RESULTS.md).
        + [Row("longest wait of a session (max stall)", "stall.max_ms", "ms")],
    ),
    (
        "Inference latency (frames answered with a prediction)",
        [
            Row(f"inference {p}", f"inference.latency_ms.{k}", "ms")
            for p, k in (("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"))
        ],
    ),
    (
        "Throughput and errors",
        [
            Row("frames answered per second", "throughput.frames_per_s", "rate"),
            Row("inferences per second", "throughput.inferences_per_s", "rate"),
            Row("errors (total)", "errors.total", "count"),
            Row("accuracy", "accuracy", "share"),
        ],
    ),
    (
        "Who served",
        [
            Row("share served by TorchServe", "served_by.torchserve", "share"),
            Row("share answered locally (old pipeline or fallback)", "served_by.local", "share"),
            # Fallback is a TorchServe-cohort figure: the old pipeline's answers are not one.
            Row("fallback: TorchServe cohort answered locally", "fallback.share", "share"),
        ],
    ),
    (
        "GPU",
        [
            Row("GPU utilisation mean", "gpu.util_mean", "pct"),
            Row("GPU utilisation p95", "gpu.util_p95", "pct"),
            Row("GPU memory used (max)", "gpu.memory_used_mb_max", "mb"),
        ],
    ),
]
OPS = {"<=": "≤", ">=": "≥", "!=": "≠", "==": "="}
VERDICT_SYMBOL = {
    "better": "▲",
    "worse": "▼",
    "no significant change": "=",
    "too little data": "?",
    "not judged": "–",
    "n/a": "–",
}


def get_path(obj: object, path: str) -> object:
    """Value at dotted ``path`` through models (their fields and extras) and data-keyed maps
    (``cpu.backend.mean_percent``), or None."""
    cur: object = obj
    for part in path.split("."):
        if isinstance(cur, BaseModel):
            fields = type(cur).model_fields
            cur = getattr(cur, part) if part in fields else (cur.model_extra or {}).get(part)
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def _given(model: BaseModel, name: str, default: object) -> object:
    """``model.name`` when the document gave it (even as null), else ``default``: the report
    falls back to the scenario only for figures a document did not record."""
    return getattr(model, name) if name in model.model_fields_set else default


def _recorded(model: BaseModel) -> bool:
    """Whether a section holds anything (a run that never measured has an empty summary)."""
    return bool(model.model_fields_set or model.model_extra)


def _num(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def fmt(x: object, unit: str = "") -> str:
    """Human format of a measured value; ``—`` for missing."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    v = _num(x)
    if v is None:
        return "—" if x is None else str(x)
    if unit == "share":
        return f"{v * 100:.1f} %"
    if unit == "pct":
        return f"{v:.1f} %"
    if unit == "count":
        return f"{v:,.0f}"
    if unit == "mb":
        return f"{v:,.0f} MB"
    if unit == "s":
        return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
    suffix = {"ms": " ms", "rate": "/s", "MB/h": " MB/h", "ms/h": " ms/h", "/h": " /h"}.get(
        unit, ""
    )
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    elif v == int(v) and unit not in ("ms",):
        s = f"{v:.0f}"
    else:
        s = f"{v:.2f}"
    return s + suffix


def _change(run: object, base: object) -> float | None:
    r, b = _num(run), _num(base)
    if r is None or b is None or b == 0:
        return None
    return (r - b) / abs(b)


def fmt_change(change: object) -> str:
    """Relative change as a signed percentage."""
    c = _num(change)
    if c is None:
        return "—"
    return f"{c * 100:+.1f} %"


def _unit_for(metric: str) -> str:
    if metric.endswith(("_per_h", "_per_h_low", "_per_h_high")):  # leak gates' slopes
        return "MB/h" if "_mb_" in metric else "ms/h" if "_ms_" in metric else "/h"
    if "latency" in metric or metric.endswith("_ms"):
        return "ms"
    if metric.endswith("_s"):
        return "s"
    if metric.startswith("throughput."):
        return "rate"
    if metric in ("accuracy", "fallback.share") or metric.startswith("served_by."):
        return "share"
    if "percent" in metric or metric.startswith("gpu.util"):
        return "pct"
    if metric.endswith("_mb") or "mb_" in metric:
        return "mb"
    return ""


def _gate_view(g: GateResult, has_baseline: bool) -> GateView:
    metric = g.metric
    unit = _unit_for(metric)
    op = g.op or ""
    thr, hi = g.threshold, g.threshold_hi
    if op == "between":
        threshold = f"between {fmt(thr, unit)} and {fmt(hi, unit)}"
    else:
        threshold = f"{OPS.get(op, op)} {fmt(thr, unit)}".strip()
    if g.relative:
        threshold += " (from baseline)" if has_baseline or thr is not None else ""
    measured = fmt(g.measured, unit)
    if g.compared:  # compare.METRIC != worse: the comparison's verdict and change
        threshold = f"{OPS.get(op, op)} {g.compared} (comparison with the baseline)"
        change = _num(g.measured)
        measured = str(g.verdict or "no verdict") + (
            f" ({change * 100:+.1f} %)" if change is not None else ""
        )
    return {
        "expr": g.expr or metric,
        "metric": metric,
        "measured": measured,
        "threshold": threshold,
        "outcome": "pass" if g.passed else "fail",
        "reason": g.reason,
    }


def _verdict_view(
    results: Results, gates: list[GateView], comparison: Comparison | None = None
) -> VerdictView:
    """The banner: the one verdict sentence (harness.results.verdict, also the console's)
    and its reasons (failed gates with their formatted figures, invalid reasons, the
    comparison's headline)."""
    line = verdict_line(results, comparison.model_dump(mode="json") if comparison else None)
    reasons: list[str] = []
    if line.status == "invalid":
        reasons = [r.message for r in results.invalid_reasons] or [
            "the run was marked invalid without a reason"
        ]
    elif line.status == "failed":
        reasons = [
            f"{g['expr']}: measured {g['measured']}" + (f" ({g['reason']})" if g["reason"] else "")
            for g in gates
            if g["outcome"] == "fail"
        ]
    elif line.status == "inconclusive":
        # A rollout short of evidence with nothing failed: an answer, not a failure.
        ro = results.rollout
        reasons = [(ro.reason if ro else None) or "the rollout ran out of evidence"]
    elif line.status == "error":
        reasons = [results.error] if results.error else ["the results carry no verdict"]
        # An interrupted run still says how much it covers and whether that part was valid.
        reasons += [r.message for r in results.invalid_reasons]
    if line.comparison is not None:
        reasons.append(line.comparison)
    symbol = {"passed": "✔", "failed": "✘", "inconclusive": "?", "invalid": "⚠", "error": "⚠"}[
        line.status
    ]
    return {"status": line.status, "headline": line.headline, "reasons": reasons, "symbol": symbol}


def _summary_rows(
    results: Results, baseline: Results | None, comparison: Comparison | None
) -> list[SummaryGroup]:
    """The summary table; with a comparison, the baseline column and the changes come from
    that one comparison only (never one baseline's values beside another's changes)."""
    summary = results.summary
    base_summary = baseline.summary if baseline is not None else None
    by_metric = {m.metric: m for m in comparison.metrics} if comparison else {}
    groups = list(SUMMARY_GROUPS)
    components = sorted(
        set(summary.cpu) | set(base_summary.cpu if base_summary else {}),
        key=lambda k: (["backend", "torchserve", "harness", k]).index(k),
    )
    if components:
        groups.append(
            (
                "CPU per component (100 % = one core)",
                [Row(f"{c} CPU mean", f"cpu.{c}.mean_percent", "pct") for c in components]
                + [Row(f"{c} memory max", f"cpu.{c}.rss_mb_max", "mb") for c in components],
            )
        )
    has_base = baseline is not None or bool(by_metric)
    out: list[SummaryGroup] = []
    for title, rows in groups:
        items: list[SummaryItem] = []
        for row in rows:
            cmp = by_metric.get(row.metric)
            run_v = get_path(summary, row.metric)
            if run_v is None and cmp is not None:
                run_v = cmp.run
            base_v = cmp.baseline if cmp else get_path(base_summary, row.metric)
            change = cmp.change if cmp and cmp.change is not None else _change(run_v, base_v)
            if cmp:
                verdict = str(cmp.verdict)
            elif has_base:
                verdict = "n/a"
            else:
                verdict = ""
            note = None
            if row.metric.startswith("gpu.") and run_v is None:
                note = "no GPU"
            p = _num(cmp.p_value) if cmp else None
            items.append(
                {
                    "label": row.label,
                    "metric": row.metric,
                    "run": fmt(run_v, row.unit) if run_v is not None else (note or "—"),
                    "baseline": fmt(base_v, row.unit),
                    "change": fmt_change(change),
                    "verdict": verdict,
                    "verdict_class": verdict.replace(" ", "-").replace("/", ""),
                    "symbol": VERDICT_SYMBOL.get(verdict, ""),
                    "p_value": (f"p = {p:.3g}" if p is not None else ""),
                    # Why the data could not decide (n shown).
                    "note": cmp.note if cmp and verdict == "too little data" else None,
                    "ci_run": _ci(cmp.ci_run if cmp else None, row.unit),
                    "ci_baseline": _ci(cmp.ci_baseline if cmp else None, row.unit),
                }
            )
        out.append({"title": title, "rows": items})
    return out


def _other_compared(comparison: Comparison | None, shown: set[str]) -> list[OtherCompared]:
    """Comparison metrics that the summary table does not show, in the comparison's order."""
    out: list[OtherCompared] = []
    for m in comparison.metrics if comparison else []:
        if m.metric in shown:
            continue
        unit = _unit_for(m.metric)
        verdict = str(m.verdict)
        out.append(
            {
                "metric": m.metric,
                "run": fmt(m.run, unit),
                "baseline": fmt(m.baseline, unit),
                "change": fmt_change(m.change),
                "verdict": verdict,
                "verdict_class": verdict.replace(" ", "-").replace("/", ""),
                "symbol": VERDICT_SYMBOL.get(verdict, ""),
            }
        )
    return out


def _comparison_view(comparison: Comparison | None) -> ComparisonView | None:
    """What the template says of the comparison itself; ``rule`` only when it was recorded
    (documents written before the rule was stated have none)."""
    if comparison is None:
        return None
    return {
        "environment_differs": comparison.environment_differs,
        "warnings": comparison.warnings,
        "stability": comparison.stability,
        "rule": comparison.rule if "rule" in comparison.model_fields_set else None,
    }


def _ci(ci: object, unit: str) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(_num(x) is not None for x in ci):
        return f"[{fmt(ci[0], unit)}, {fmt(ci[1], unit)}]"
    return ""


def _window_text(lat: WindowLatency | None) -> str:
    lat = lat or WindowLatency()
    text = " / ".join(fmt(v, "ms") for v in (lat.p50, lat.p95, lat.p99))
    if _num(lat.max) is not None:
        text += f" (max {fmt(lat.max, 'ms')}, {fmt(lat.count, 'count')} frames)"
    return text


def _outage_heading(f: OutageFault) -> str:
    """One account of the outage, from the fault entry's own windows (analysis.faults)."""
    start, end = f.start_s, f.end_s
    if f.restart_s is None and f.recovery_event_index is None:
        return f"killed at {fmt(start, 's')}, never restarted (outage to {fmt(end, 's')})"
    text = f"outage {fmt(start, 's')} → {fmt(end, 's')}"
    rec = f.recovery_window_s
    if rec is not None and len(rec) == 2:
        text += f", recovery {fmt(rec[0], 's')} → {fmt(rec[1], 's')}"
    if f.ready_s is not None:
        text += f" (READY at {fmt(f.ready_s, 's')}"
        if f.recovered_s is not None:
            text += f", answering again at {fmt(f.recovered_s, 's')}"
        text += ")"
    return text


def _after_ready_text(f: OutageFault) -> str:
    v = _num(f.time_to_recover_after_ready_s)
    if v is not None and v < 0:
        return f"{fmt(v, 's')} (TorchServe answered the backend before the harness saw READY)"
    return fmt(f.time_to_recover_after_ready_s, "s")


def _outage_view(f: OutageFault) -> FaultView:
    # start_torchserve_s: the name of the restart's duration before results had windows.
    restart = _given(f, "restart_duration_s", (f.model_extra or {}).get("start_torchserve_s"))
    rows = [
        ("First fallback answer: its wait", fmt(f.time_to_first_fallback_s, "s")),
        ("First fallback answer after the kill", fmt(f.first_fallback_after_kill_s, "s")),
        ("Errors during failover", fmt(f.errors_during_failover, "count")),
        ("Latency during outage p50 / p95 / p99", _window_text(f.outage_latency_ms)),
        ("Longest session stall in the outage", fmt(f.outage_max_stall_ms, "ms")),
        (
            "TorchServe cohort answered by the fallback during outage",
            fmt(f.local_share_during_outage, "share"),
        ),
        (
            "Time to recover (TorchServe answering again)",
            fmt(f.time_to_recover_s, "s")
            if f.time_to_recover_s is not None
            else "not recovered within the run",
        ),
        ("of which after the model was READY again", _after_ready_text(f)),
        ("TorchServe restart took (start_torchserve)", fmt(restart, "s")),
    ]
    if "recovery_latency_ms" in f.model_fields_set:  # results written since recovery windows
        rows += [
            (
                "Latency in the recovery window p50 / p95 / p99",
                _window_text(f.recovery_latency_ms),
            ),
            ("Longest session stall in the recovery window", fmt(f.recovery_max_stall_ms, "ms")),
            ("Errors in the recovery window", fmt(f.recovery_errors, "count")),
        ]
    return {"window": _outage_heading(f), "rows": rows}


def _reload_view(f: ReloadFault) -> FaultView:
    mw = f.mixed_window_s
    mixed = (
        f"{fmt(mw[0], 's')} → {fmt(mw[1], 's')} ({fmt(_num(f.mixed_window_len_s), 's')})"
        if mw is not None and len(mw) == 2
        else "no mixed window observed"
    )
    rows = [
        ("Time to first new-version answer", fmt(f.time_to_first_new_s, "s")),
        ("Mixed-version window", mixed),
        ("Errors during reload", fmt(f.errors, "count")),
        ("p99 around the switch", fmt(f.p99_around_switch_ms, "ms")),
    ]
    if "fallbacks" in f.model_fields_set:  # results written since fallbacks were told apart
        rows += [
            (
                "Answers the reload pushed to the fallback",
                f"{fmt(f.fallbacks, 'count')} (TorchServe cohort's local answers "
                f"in its window: {fmt(f.local_replies, 'count')}; its local share "
                f"before it: {fmt(f.local_share_before, 'share')})",
            ),
            ("Longest session stall in the reload", fmt(f.max_stall_ms, "ms")),
        ]
    versions = (_given(f, "from_version", "?"), _given(f, "to_version", "?"))
    return {
        "window": f"{versions[0]} → {versions[1]} at {fmt(f.start_s, 's')}",
        "rows": rows,
    }


def _fault_views(results: Results) -> tuple[list[FaultView], list[FaultView]]:
    outages = [_outage_view(f) for f in results.faults if isinstance(f, OutageFault)]
    reloads = [_reload_view(f) for f in results.faults if isinstance(f, ReloadFault)]
    return outages, reloads


def _event_rows(results: Results) -> list[EventRow]:
    rows: list[EventRow] = []
    for ev in results.events:
        took = None
        if ev.finished_s is not None and ev.started_s is not None:
            took = ev.finished_s - ev.started_s
        rows.append(
            {
                "at": fmt(ev.at_s, "s"),
                "label": F.event_label(ev),
                "took": fmt(took, "s") if took is not None else "—",
                "ok": ev.ok is not False,
                "error": ev.error,
            }
        )
    return rows


# One mark per look of a rollout step: not decided yet, advance, abort, inconclusive.
LOOK_MARKS = {"continue": "·", "advance": "A", "complete": "A", "abort": "X", "inconclusive": "?"}


def _looks_text(step: RolloutStep, judgement: RolloutJudgement | None) -> str:
    """A step's looks on the run clock: ``12 looks, 7.0 s – 18.0 s: ···········A (decided at
    look 12, 18.0 s)``; "—" for results written before the sequential judge."""
    looks = step.looks
    if not looks:
        return "—"
    marks = "".join(LOOK_MARKS.get(lk.decision, "·") for lk in looks)
    first, last = looks[0].at_s, looks[-1].at_s
    at = judgement.look if judgement else None
    decided = f" (decided at look {at}, {fmt(last, 's')})" if at else ""
    return (f"{len(looks)} look{'s' if len(looks) != 1 else ''}, {fmt(first, 's')} – "
            f"{fmt(last, 's')}: {marks}{decided}")  # fmt: skip


def rollout_view(ro: RolloutRecord | None) -> RolloutView | None:
    """The rollout's steps for the report (and the production judgement's page): one row per
    judgement, cohorts side by side."""
    if ro is None:
        return None

    def pair(ts: CohortLatency, lo: CohortLatency, pct: str) -> str:
        return f"{fmt(getattr(ts, pct), 'ms')} / {fmt(getattr(lo, pct), 'ms')}"

    rows: list[RolloutRow] = []
    for step in ro.steps:
        for j in step.judgements:
            ts, lo = j.figures.torchserve, j.figures.local
            window: list[float | None] = [None, None]
            if j.window_s:
                window = [*j.window_s]
            rows.append({
                "percent": step.percent,
                "set": fmt(step.set_s, "s"),
                "window": f"{fmt(window[0], 's')} – {fmt(window[1], 's')}",
                "sessions": f"{ts.sessions} / {lo.sessions}",
                "frame_p95": pair(ts.frame_latency_ms, lo.frame_latency_ms, "p95"),
                "inference_p50": pair(ts.inference_latency_ms, lo.inference_latency_ms, "p50"),
                "errors": f"{fmt(ts.error_share, 'share')} / {fmt(lo.error_share, 'share')}",
                "accuracy": f"{fmt(ts.accuracy)} / {fmt(lo.accuracy)}",
                "local_share": fmt(ts.local_share, "share"),
                "decision": j.decision,
                "reason": j.reason,
                "criteria": [f"{c.criterion}: {c.status} — {c.why}" for c in j.criteria],
                "looks": _looks_text(step, j),
                "settle": j.settle or "",
            })  # fmt: skip
        if not step.judgements:
            rows.append({"percent": step.percent, "set": fmt(step.set_s, "s"),
                         "window": "—", "sessions": "—", "frame_p95": "—",
                         "inference_p50": "—", "errors": "—", "accuracy": "—",
                         "local_share": "—",
                         "decision": step.decision or "—", "reason": "",
                         "criteria": [], "looks": _looks_text(step, None),
                         "settle": ""})  # fmt: skip
    return {"outcome": ro.outcome, "reason": ro.reason, "rows": rows}


def _traffic_view(summary: Summary) -> list[tuple[str, str]] | None:
    """Session traffic facts (started/ended/refused, lifetimes, connect and close cost)."""
    t = summary.traffic
    if t is None or not t.planned:
        return None
    life, conn, close = t.lifetime_s, t.connect_ms, t.close_ms
    cohorts = ", ".join(f"{k} {v}" for k, v in sorted(t.cohorts.items()))
    return [
        ("Sessions started / ended / refused / dropped",
         f"{t.started} / {t.ended} / {t.refused} / {t.disconnected}"),
        ("Sessions by cohort (route at connect)", cohorts or "—"),
        ("Session lifetime p50 / p95 / max",
         f"{fmt(life.p50, 's')} / {fmt(life.p95, 's')} / {fmt(life.max, 's')}"),
        ("Connect (WebSocket handshake) p50 / p95 / max",
         f"{fmt(conn.p50, 'ms')} / {fmt(conn.p95, 'ms')} / {fmt(conn.max, 'ms')}"),
        ("Close (handshake) p50 / p95 / max",
         f"{fmt(close.p50, 'ms')} / {fmt(close.p95, 'ms')} / {fmt(close.max, 'ms')}"),
    ]  # fmt: skip


def _signed(v: float) -> str:
    return f"{v:+,.0f}" if abs(v) >= 100 else f"{v:+.1f}" if abs(v) >= 1 else f"{v:+.2f}"


def _slope(d: ProcessDrift | LatencyDrift, key: str, unit: str) -> str:
    v, lo, hi = (_num(getattr(d, k)) for k in (key, f"{key}_low", f"{key}_high"))
    if v is None:
        return f"— ({d.reason})" if d.reason else "—"
    ci = f" [{_signed(lo)}, {_signed(hi)}]" if lo is not None and hi is not None else ""
    return f"{_signed(v)} {unit}{ci}"


def _drift_view(summary: Summary) -> list[tuple[str, str]] | None:
    """The leak gates' slopes (summary.memory, summary.drift; harness/analysis/drift.py)."""
    if not summary.memory:
        return None
    rows: list[tuple[str, str]] = [
        (f"{comp}: RSS / open fds / threads",
         " / ".join(_slope(d, k, u) for k, u in (("rss_mb_per_h", "MB/h"),
                    ("fds_per_h", "/h"), ("threads_per_h", "/h"))))
        for comp, d in summary.memory.items()
    ]  # fmt: skip
    if (drift := summary.drift) is not None:
        block = _num(drift.block_s)
        blocks = f" ({drift.blocks} blocks of {block:g} s)" if block else ""
        rows.append((f"frame p99{blocks}", _slope(drift, "frame_p99_ms_per_h", "ms/h")))
    return rows


def _provenance(results: Results) -> ProvenanceView:
    # Masked as a whole (the one rule, harness.redact): configs may carry keys and tokens.
    prov = mask(results.provenance.model_dump(mode="json", exclude_unset=True))
    return {
        "scalars": [
            (k, fmt(v) if not isinstance(v, str) else v)
            for k, v in prov.items()
            if not isinstance(v, dict | list)
        ],
        "packages": _items(prov.get("packages")),
        "archives": _items(prov.get("model_archives")),
        "other": {
            k: json.dumps(v, indent=2, sort_keys=True, default=str)
            for k, v in prov.items()
            if isinstance(v, dict | list) and k not in ("packages", "model_archives")
        },
    }


def _items(value: object) -> list[tuple[str, Any]]:
    return sorted(value.items()) if isinstance(value, dict) else []


def _figure_or_note(
    fn: Callable[[], F.Figure | None], errors: list[str], key: str
) -> F.Figure | None:
    try:
        return fn()
    except Exception as exc:  # one broken figure must not cost the reviewer the whole report
        errors.append(f"{key}: {type(exc).__name__}: {exc}")
        return None


def _measured_s(summary: Summary, scenario: Document) -> float | None:
    """Seconds measured: summary.measured_s, else the load's duration minus warm-up."""
    if _num(summary.measured_s) is not None:
        return summary.measured_s
    duration = _num(_given(summary, "duration_s", get_path(scenario, "workload.duration_s")))
    warmup = _num(_given(summary, "warmup_s", get_path(scenario, "workload.warmup_s"))) or 0.0
    return None if duration is None else max(duration - warmup, 0.0)


def _figures(results: Results, baseline: Results | None, errors: list[str]) -> FigureViews:
    """Every figure, or None with the reason in ``errors`` when drawing one failed."""
    draw: dict[str, tuple[str, Callable[[], F.Figure | None]]] = {
        "latency": ("latency over time", lambda: F.latency_over_time(results, baseline)),
        "throughput": ("throughput", lambda: F.throughput_over_time(results, baseline)),
        "distribution": (
            "latency distribution",
            lambda: F.latency_distribution(results, baseline),
        ),
        "served_by": ("served by", lambda: F.served_by_over_time(results)),
        "torchserve": ("TorchServe batching", lambda: F.torchserve_batching(results)),
        "cpu": ("CPU", lambda: F.cpu_over_time(results)),
        "gpu": ("GPU", lambda: F.gpu_over_time(results)),
    }
    return {key: _figure_or_note(fn, errors, what) for key, (what, fn) in draw.items()}


def _run_view(results: Results) -> dict[str, object]:
    """The run's identity, stack and workload for the page's head."""
    summary = results.summary
    # The scenario as the run recorded it (any version): read by path, never validated.
    scenario = results.scenario

    def given(name: str) -> object:  # the summary's figure, else the scenario's workload's
        return _given(summary, name, get_path(scenario, f"workload.{name}"))

    schema = results.schema_ if "schema_" in results.model_fields_set else None
    version = results.schema_version if "schema_version" in results.model_fields_set else None
    return {
        "name": results.name or "(unnamed)",
        "run_id": results.run_id or "(no run id)",
        "started_at": results.started_at or "—",
        "finished_at": results.finished_at or "—",
        "description": get_path(scenario, "description") or "",
        "driver": get_path(scenario, "stack.driver") or "—",
        "use_torchserve": get_path(scenario, "stack.use_torchserve"),
        "rollout": get_path(scenario, "stack.rollout_percent"),
        "ts_cfg": get_path(scenario, "stack.torchserve") or {},
        "sessions": given("sessions"),
        "fps": given("fps"),
        # What was measured (duration minus warm-up), not the configured duration.
        "duration": fmt(_measured_s(summary, scenario), "s"),
        "warmup": fmt(given("warmup_s"), "s"),
        "schema_ok": schema == SCHEMA and version in READABLE_VERSIONS,
        "schema": f"{schema} v{version}",
    }


def build_context(
    results: Results | Document, baseline: Results | Document | None
) -> dict[str, Any]:
    """The template's view model for ``results`` (and ``baseline`` when given).

    A parsed results.json is read as :class:`Results` here (partial documents too:
    ``harness.results.model.results_of``). TypeError when ``results`` is neither.
    """
    results = _as_results(results)
    baseline = _as_results(baseline) if baseline is not None else None
    summary = results.summary
    # The embedded comparison, or a fresh one when another baseline is passed.
    comparison = comparison_for(results, baseline)
    gates = [_gate_view(g, baseline is not None) for g in results.gates]
    fig_errors: list[str] = []
    figs = _figures(results, baseline, fig_errors)
    gpu = summary.gpu or Gpu()
    outages, reloads = _fault_views(results)
    groups = (
        _summary_rows(results, baseline, comparison) if _recorded(summary) or comparison else []
    )
    frames = summary.frames
    gen = summary.generator
    return {
        "title": f"{results.name or 'run'}: harness report",
        "run": _run_view(results),
        "verdict": _verdict_view(results, gates, comparison),
        "gates": gates,
        "comparison": _comparison_view(comparison),
        "has_baseline": baseline is not None or comparison is not None,
        "baseline_name": (comparison.baseline_name if comparison else None)
        or (baseline.name if baseline else None),
        "baseline_run_id": (comparison.baseline_run_id if comparison else None)
        or (baseline.run_id if baseline else None),
        "summary_groups": groups,
        "other_compared": _other_compared(
            comparison, {r["metric"] for g in groups for r in g["rows"]}
        ),
        "frames": [
            (k, fmt(getattr(frames, k), "count"))
            for k in ("scheduled", "sent", "answered", "late", "errored", "lost")
            if frames is not None and k in frames.model_fields_set
        ],
        "errors": summary.errors,
        "errors_by_code": sorted(summary.errors.by_code.items()),
        "generator": {
            "late_share": fmt(gen.late_share, "share"),
            "late_threshold": fmt(gen.late_threshold_ms, "ms"),
            "cpu": fmt(gen.cpu_percent_mean, "pct"),
            "saturated": gen.cpu_saturated,
        }
        if gen is not None and _recorded(gen)
        else None,
        "figures": figs,
        "figure_errors": fig_errors,
        "gpu": {"present": gpu.present, "reason": gpu.reason, "name": gpu.name},
        "torchserve": _torchserve_view(summary.torchserve),
        "outages": outages,
        "reloads": reloads,
        "events": _event_rows(results),
        "rollout": rollout_view(results.rollout),
        "traffic": _traffic_view(summary),
        "drift": _drift_view(summary),
        "provenance": _provenance(results),
        "prometheus": _prometheus_view(results.prometheus, results.run_dir),
        "scenario_yaml": mask_yaml_text(results.scenario_yaml),
        "fixture_note": (results.model_extra or {}).get("fixture_note"),
    }


def _prometheus_view(rec: PrometheusRecord | None, run_dir: str | None) -> PrometheusView | None:
    """results.prometheus -> the report's Prometheus section (None without one)."""
    if rec is None:
        return None

    def utc(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")

    return {
        "url": rec.url,
        "start": utc(rec.start_unix_s),
        "end": utc(rec.end_unix_s),
        "queries": [(q.expr, q.about, q.link) for q in rec.queries],
        "data_dir": rec.data_dir,
        "run_dir": run_dir or "RUN_DIR",
        "listen": urlsplit(rec.url).netloc.rpartition("@")[2],
    }


def _as_results(doc: Results | Document) -> Results:
    if isinstance(doc, Results):
        return doc
    if not isinstance(doc, Mapping):
        raise TypeError("results must be Results or a parsed results.json mapping")
    return results_of(doc)


def _torchserve_view(ts: TorchServeSummary | None) -> dict[str, Any]:
    """summary.torchserve -> the report's words for where a request's server time went.

    Results written before the handler timed itself have ``inference_ms_mean`` (TorchServe's
    "inference latency", arrival to answer, queue included) and no handler time: shown as the
    end-to-end figure, flagged ``legacy``, never as model time.
    """
    if ts is None:
        return {"present": False}
    given = ts.model_fields_set
    legacy = "end_to_end_ms_mean" not in given and "inference_ms_mean" in given
    e2e = ts.inference_ms_mean if legacy else ts.end_to_end_ms_mean
    queue, handler = ts.queue_ms_mean, ts.handler_ms_mean
    rest = (
        e2e - queue - handler
        if isinstance(e2e, int | float) and queue is not None and handler is not None
        else None
    )
    return {
        "present": True,
        "legacy": legacy,
        "batch_mean": fmt(ts.batch_size_mean),
        "queue": fmt(queue, "ms"),
        "handler": fmt(handler, "ms"),
        "model": fmt(ts.model_ms_mean, "ms"),
        "end_to_end": fmt(e2e, "ms"),
        "rest": fmt(max(rest, 0.0), "ms") if rest is not None else None,
        "requests": fmt(ts.requests, "count"),
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every value from results.json is data, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(results: Results | Document, baseline: Results | Document | None) -> str:
    """The complete report as an HTML string."""
    return _env().get_template("report.html.j2").render(**build_context(results, baseline))


def build_report(
    results: Results | Document, baseline: Results | Document | None, out_path: Path
) -> Path:
    """Write the self-contained HTML report of ``results`` to ``out_path`` and return it.

    ``baseline`` is the baseline run's results (for its series and figures); the statistical
    verdicts come from ``results.comparison``. Either may be a parsed results.json mapping.
    The file is written atomically (temporary file then rename) so a reader never sees half a
    report.
    """
    out_path = Path(out_path)
    html = render_html(results, baseline)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        # mkstemp creates 0600; a report is meant to be shared like results.json next to it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path
