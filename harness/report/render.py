"""Turn a results document (docs/RESULTS.md) into one self-contained report.html.

The view model built here is plain dicts and strings, so the template only lays out; every
missing value becomes a sentence that says why, never a crash or a fake zero.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import jinja2

from harness.analysis.compare import comparison_for
from harness.redact import mask, mask_yaml_text
from harness.results.model import READABLE_VERSIONS, reason_text
from harness.results.model import Document as Doc
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


class OtherFault(TypedDict):
    """A fault kind the report has no layout for, shown as JSON."""

    kind: str
    json: str


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


def get_path(obj: object, path: str) -> Any:
    """Value at dotted ``path`` in nested dicts, or None."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


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


def _gate_view(g: Doc, has_baseline: bool) -> GateView:
    metric = str(g.get("metric") or "")
    unit = _unit_for(metric)
    op = str(g.get("op") or "")
    thr, hi = g.get("threshold"), g.get("threshold_hi")
    if op == "between":
        threshold = f"between {fmt(thr, unit)} and {fmt(hi, unit)}"
    else:
        threshold = f"{OPS.get(op, op)} {fmt(thr, unit)}".strip()
    if g.get("relative"):
        threshold += " (from baseline)" if has_baseline or thr is not None else ""
    measured = fmt(g.get("measured"), unit)
    if g.get("compared"):  # compare.METRIC != worse: the comparison's verdict and change
        threshold = f"{OPS.get(op, op)} {g['compared']} (comparison with the baseline)"
        change = _num(g.get("measured"))
        measured = str(g.get("verdict") or "no verdict") + (
            f" ({change * 100:+.1f} %)" if change is not None else ""
        )
    passed = g.get("passed")
    return {
        "expr": str(g.get("expr") or metric),
        "metric": metric,
        "measured": measured,
        "threshold": threshold,
        "outcome": "pass" if passed is True else "fail",
        "reason": g.get("reason"),
    }


def _verdict_view(
    results: Doc, gates: list[GateView], comparison: Doc | None = None
) -> VerdictView:
    """The banner: the one verdict sentence (harness.results.verdict, also the console's)
    and its reasons (failed gates with their formatted figures, invalid reasons, the
    comparison's headline)."""
    line = verdict_line(results, comparison)
    reasons: list[str] = []
    if line.status == "invalid":
        reasons = [reason_text(r) for r in results.get("invalid_reasons") or []] or [
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
        ro = results.get("rollout") or {}
        reasons = [str(ro.get("reason") or "the rollout ran out of evidence")]
    elif line.status == "error":
        err = results.get("error")
        reasons = [str(err)] if err else ["the results carry no verdict"]
        # An interrupted run still says how much it covers and whether that part was valid.
        reasons += [reason_text(r) for r in results.get("invalid_reasons") or []]
    if line.comparison is not None:
        reasons.append(line.comparison)
    symbol = {"passed": "✔", "failed": "✘", "inconclusive": "?", "invalid": "⚠", "error": "⚠"}[
        line.status
    ]
    return {"status": line.status, "headline": line.headline, "reasons": reasons, "symbol": symbol}


def _summary_rows(results: Doc, baseline: Doc | None, comparison: Doc | None) -> list[SummaryGroup]:
    """The summary table; with a comparison, the baseline column and the changes come from
    that one comparison only (never one baseline's values beside another's changes)."""
    summary = results.get("summary") or {}
    base_summary = (baseline or {}).get("summary") or {}
    comparison = comparison or {}
    by_metric = {m.get("metric"): m for m in comparison.get("metrics") or [] if isinstance(m, dict)}
    groups = list(SUMMARY_GROUPS)
    components = sorted(
        set((summary.get("cpu") or {}).keys()) | set((base_summary.get("cpu") or {}).keys()),
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
    has_base = bool(baseline) or bool(by_metric)
    out: list[SummaryGroup] = []
    for title, rows in groups:
        items: list[SummaryItem] = []
        for row in rows:
            cmp = by_metric.get(row.metric) or {}
            run_v = get_path(summary, row.metric)
            if run_v is None:
                run_v = cmp.get("run")
            base_v = cmp.get("baseline") if cmp else get_path(base_summary, row.metric)
            change = cmp.get("change") if cmp.get("change") is not None else _change(run_v, base_v)
            if cmp:
                verdict = str(cmp.get("verdict") or "n/a")
            elif has_base:
                verdict = "n/a"
            else:
                verdict = ""
            note = None
            if row.metric.startswith("gpu.") and run_v is None:
                note = "no GPU"
            p = _num(cmp.get("p_value"))
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
                    "note": cmp.get("note") if verdict == "too little data" else None,
                    "ci_run": _ci(cmp.get("ci_run"), row.unit),
                    "ci_baseline": _ci(cmp.get("ci_baseline"), row.unit),
                }
            )
        out.append({"title": title, "rows": items})
    return out


def _other_compared(comparison: Doc | None, shown: set[str]) -> list[OtherCompared]:
    """Comparison metrics that the summary table does not show, in the comparison's order."""
    out: list[OtherCompared] = []
    for m in (comparison or {}).get("metrics") or []:
        if not isinstance(m, dict) or m.get("metric") in shown:
            continue
        metric = str(m.get("metric"))
        unit = _unit_for(metric)
        verdict = str(m.get("verdict") or "n/a")
        out.append(
            {
                "metric": metric,
                "run": fmt(m.get("run"), unit),
                "baseline": fmt(m.get("baseline"), unit),
                "change": fmt_change(m.get("change")),
                "verdict": verdict,
                "verdict_class": verdict.replace(" ", "-").replace("/", ""),
                "symbol": VERDICT_SYMBOL.get(verdict, ""),
            }
        )
    return out


def _ci(ci: object, unit: str) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(_num(x) is not None for x in ci):
        return f"[{fmt(ci[0], unit)}, {fmt(ci[1], unit)}]"
    return ""


def _window_text(value: object) -> str:
    lat: Doc = value if isinstance(value, Mapping) else {}
    text = " / ".join(fmt(lat.get(k), "ms") for k in ("p50", "p95", "p99"))
    if _num(lat.get("max")) is not None:
        text += f" (max {fmt(lat.get('max'), 'ms')}, {fmt(lat.get('count'), 'count')} frames)"
    return text


def _outage_heading(f: Doc) -> str:
    """One account of the outage, from the fault entry's own windows (analysis.faults)."""
    start, end = f.get("start_s"), f.get("end_s")
    restart = f.get("restart_s")
    if restart is None and f.get("recovery_event_index") is None:
        return f"killed at {fmt(start, 's')}, never restarted (outage to {fmt(end, 's')})"
    text = f"outage {fmt(start, 's')} → {fmt(end, 's')}"
    rec = f.get("recovery_window_s")
    if isinstance(rec, list) and len(rec) == 2:
        text += f", recovery {fmt(rec[0], 's')} → {fmt(rec[1], 's')}"
    if f.get("ready_s") is not None:
        text += f" (READY at {fmt(f.get('ready_s'), 's')}"
        if f.get("recovered_s") is not None:
            text += f", answering again at {fmt(f.get('recovered_s'), 's')}"
        text += ")"
    return text


def _after_ready_text(f: Doc) -> str:
    v = _num(f.get("time_to_recover_after_ready_s"))
    if v is not None and v < 0:
        return f"{fmt(v, 's')} (TorchServe answered the backend before the harness saw READY)"
    return fmt(f.get("time_to_recover_after_ready_s"), "s")


def _fault_views(results: Doc) -> tuple[list[FaultView], list[FaultView], list[OtherFault]]:
    outages: list[FaultView] = []
    reloads: list[FaultView] = []
    other: list[OtherFault] = []
    for f in results.get("faults") or []:
        if not isinstance(f, dict):
            continue
        kind = f.get("kind")
        if kind == "outage":
            rows = [
                ("First fallback answer: its wait", fmt(f.get("time_to_first_fallback_s"), "s")),
                (
                    "First fallback answer after the kill",
                    fmt(f.get("first_fallback_after_kill_s"), "s"),
                ),
                ("Errors during failover", fmt(f.get("errors_during_failover"), "count")),
                ("Latency during outage p50 / p95 / p99", _window_text(f.get("outage_latency_ms"))),
                ("Longest session stall in the outage", fmt(f.get("outage_max_stall_ms"), "ms")),
                (
                    "TorchServe cohort answered by the fallback during outage",
                    fmt(f.get("local_share_during_outage"), "share"),
                ),
                (
                    "Time to recover (TorchServe answering again)",
                    fmt(f.get("time_to_recover_s"), "s")
                    if f.get("time_to_recover_s") is not None
                    else "not recovered within the run",
                ),
                ("of which after the model was READY again", _after_ready_text(f)),
                (
                    "TorchServe restart took (start_torchserve)",
                    # start_torchserve_s: the name of this duration before results had windows
                    fmt(f.get("restart_duration_s", f.get("start_torchserve_s")), "s"),
                ),
            ]
            if "recovery_latency_ms" in f:
                rows += [
                    (
                        "Latency in the recovery window p50 / p95 / p99",
                        _window_text(f.get("recovery_latency_ms")),
                    ),
                    (
                        "Longest session stall in the recovery window",
                        fmt(f.get("recovery_max_stall_ms"), "ms"),
                    ),
                    ("Errors in the recovery window", fmt(f.get("recovery_errors"), "count")),
                ]
            outages.append({"window": _outage_heading(f), "rows": rows})
        elif kind == "reload":
            mw = f.get("mixed_window_s")
            mixed = (
                f"{fmt(mw[0], 's')} → {fmt(mw[1], 's')} "
                f"({fmt(_num(f.get('mixed_window_len_s')), 's')})"
                if isinstance(mw, list) and len(mw) == 2
                else "no mixed window observed"
            )
            rows = [
                ("Time to first new-version answer", fmt(f.get("time_to_first_new_s"), "s")),
                ("Mixed-version window", mixed),
                ("Errors during reload", fmt(f.get("errors"), "count")),
                ("p99 around the switch", fmt(f.get("p99_around_switch_ms"), "ms")),
            ]
            if "fallbacks" in f:
                rows += [
                    (
                        "Answers the reload pushed to the fallback",
                        f"{fmt(f.get('fallbacks'), 'count')} (TorchServe cohort's local answers "
                        f"in its window: {fmt(f.get('local_replies'), 'count')}; its local share "
                        f"before it: {fmt(f.get('local_share_before'), 'share')})",
                    ),
                    ("Longest session stall in the reload", fmt(f.get("max_stall_ms"), "ms")),
                ]
            reloads.append(
                {
                    "window": f"{f.get('from_version', '?')} → {f.get('to_version', '?')} "
                    f"at {fmt(f.get('start_s'), 's')}",
                    "rows": rows,
                }
            )
        else:
            other.append({"kind": str(kind), "json": json.dumps(f, indent=1, default=str)})
    return outages, reloads, other


def _event_rows(results: Doc) -> list[EventRow]:
    rows: list[EventRow] = []
    for ev in results.get("events") or []:
        if not isinstance(ev, dict):
            continue
        took = None
        if _num(ev.get("finished_s")) is not None and _num(ev.get("started_s")) is not None:
            took = ev["finished_s"] - ev["started_s"]
        rows.append(
            {
                "at": fmt(ev.get("at_s"), "s"),
                "label": F.event_label(ev),
                "took": fmt(took, "s") if took is not None else "—",
                "ok": ev.get("ok") is not False,
                "error": ev.get("error"),
            }
        )
    return rows


# One mark per look of a rollout step: not decided yet, advance, abort, inconclusive.
LOOK_MARKS = {"continue": "·", "advance": "A", "complete": "A", "abort": "X", "inconclusive": "?"}


def _looks_text(step: Doc, judgement: Doc | None) -> str:
    """A step's looks on the run clock: ``12 looks, 7.0 s – 18.0 s: ···········A (decided at
    look 12, 18.0 s)``; "—" for results written before the sequential judge."""
    looks = step.get("looks") or []
    if not looks:
        return "—"
    marks = "".join(LOOK_MARKS.get(str(lk.get("decision")), "·") for lk in looks)
    first, last = looks[0].get("at_s"), looks[-1].get("at_s")
    at = (judgement or {}).get("look")
    decided = f" (decided at look {at}, {fmt(last, 's')})" if at else ""
    return (f"{len(looks)} look{'s' if len(looks) != 1 else ''}, {fmt(first, 's')} – "
            f"{fmt(last, 's')}: {marks}{decided}")  # fmt: skip


def _rollout_view(results: Doc) -> RolloutView | None:
    """The rollout's steps for the report: one row per judgement, cohorts side by side."""
    ro = results.get("rollout")
    if not isinstance(ro, dict):
        return None

    def pair(fig: Doc, key: str, pct: str) -> str:
        ts = ((fig.get("torchserve") or {}).get(key) or {}).get(pct)
        lo = ((fig.get("local") or {}).get(key) or {}).get(pct)
        return f"{fmt(ts, 'ms')} / {fmt(lo, 'ms')}"

    rows: list[RolloutRow] = []
    for step in ro.get("steps") or []:
        for j in step.get("judgements") or []:
            fig = j.get("figures") or {}
            ts, lo = fig.get("torchserve") or {}, fig.get("local") or {}
            window = j.get("window_s") or [None, None]
            rows.append({
                "percent": step.get("percent"),
                "set": fmt(step.get("set_s"), "s"),
                "window": f"{fmt(window[0], 's')} – {fmt(window[1], 's')}",
                "sessions": f"{ts.get('sessions', 0)} / {lo.get('sessions', 0)}",
                "frame_p95": pair(fig, "frame_latency_ms", "p95"),
                "inference_p50": pair(fig, "inference_latency_ms", "p50"),
                "errors": f"{fmt(ts.get('error_share'), 'share')} / "
                          f"{fmt(lo.get('error_share'), 'share')}",
                "accuracy": f"{fmt(ts.get('accuracy'))} / {fmt(lo.get('accuracy'))}",
                "local_share": fmt(ts.get("local_share"), "share"),
                "decision": str(j.get("decision") or "—"),
                "reason": j.get("reason") or "",
                "criteria": [
                    f"{c.get('criterion')}: {c.get('status')} — {c.get('why')}"
                    for c in j.get("criteria") or []
                ],
                "looks": _looks_text(step, j),
                "settle": j.get("settle") or "",
            })  # fmt: skip
        if not step.get("judgements"):
            rows.append({"percent": step.get("percent"), "set": fmt(step.get("set_s"), "s"),
                         "window": "—", "sessions": "—", "frame_p95": "—",
                         "inference_p50": "—", "errors": "—", "accuracy": "—",
                         "local_share": "—",
                         "decision": str(step.get("decision") or "—"), "reason": "",
                         "criteria": [], "looks": _looks_text(step, None),
                         "settle": ""})  # fmt: skip
    return {"outcome": ro.get("outcome"), "reason": ro.get("reason"), "rows": rows}


def _traffic_view(summary: Doc) -> list[tuple[str, str]] | None:
    """Session traffic facts (started/ended/refused, lifetimes, connect and close cost)."""
    t = summary.get("traffic")
    if not isinstance(t, dict) or not t.get("planned"):
        return None
    life, conn, close = (t.get(k) or {} for k in ("lifetime_s", "connect_ms", "close_ms"))
    cohorts = ", ".join(f"{k} {v}" for k, v in sorted((t.get("cohorts") or {}).items()))
    return [
        ("Sessions started / ended / refused / dropped",
         f"{t.get('started')} / {t.get('ended')} / {t.get('refused')} / {t.get('disconnected')}"),
        ("Sessions by cohort (route at connect)", cohorts or "—"),
        ("Session lifetime p50 / p95 / max",
         f"{fmt(life.get('p50'), 's')} / {fmt(life.get('p95'), 's')} / "
         f"{fmt(life.get('max'), 's')}"),
        ("Connect (WebSocket handshake) p50 / p95 / max",
         f"{fmt(conn.get('p50'), 'ms')} / {fmt(conn.get('p95'), 'ms')} / "
         f"{fmt(conn.get('max'), 'ms')}"),
        ("Close (handshake) p50 / p95 / max",
         f"{fmt(close.get('p50'), 'ms')} / {fmt(close.get('p95'), 'ms')} / "
         f"{fmt(close.get('max'), 'ms')}"),
    ]  # fmt: skip


def _signed(v: float) -> str:
    return f"{v:+,.0f}" if abs(v) >= 100 else f"{v:+.1f}" if abs(v) >= 1 else f"{v:+.2f}"


def _slope(d: Doc, key: str, unit: str) -> str:
    v, lo, hi = (_num(d.get(k)) for k in (key, f"{key}_low", f"{key}_high"))
    if v is None:
        return f"— ({d.get('reason')})" if d.get("reason") else "—"
    ci = f" [{_signed(lo)}, {_signed(hi)}]" if lo is not None and hi is not None else ""
    return f"{_signed(v)} {unit}{ci}"


def _drift_view(summary: Doc) -> list[tuple[str, str]] | None:
    """The leak gates' slopes (summary.memory, summary.drift; harness/analysis/drift.py)."""
    memory = summary.get("memory")
    drift = summary.get("drift")
    if not isinstance(memory, dict) or not memory:
        return None
    rows: list[tuple[str, str]] = []
    for comp, d in memory.items():
        if isinstance(d, dict):
            rows.append(
                (f"{comp}: RSS / open fds / threads",
                 " / ".join(_slope(d, k, u) for k, u in (("rss_mb_per_h", "MB/h"),
                            ("fds_per_h", "/h"), ("threads_per_h", "/h")))),
            )  # fmt: skip
    if isinstance(drift, dict):
        block = _num(drift.get("block_s"))
        blocks = f" ({drift.get('blocks')} blocks of {block:g} s)" if block else ""
        rows.append((f"frame p99{blocks}", _slope(drift, "frame_p99_ms_per_h", "ms/h")))
    return rows


def _provenance(results: Doc) -> dict[str, Any]:
    prov = mask(results.get("provenance") or {})  # the one rule (harness.redact)
    scalars = [
        (k, fmt(v) if not isinstance(v, str) else v)
        for k, v in prov.items()
        if not isinstance(v, dict | list)
    ]
    nested = {k: v for k, v in prov.items() if isinstance(v, dict | list)}
    return {
        "scalars": scalars,
        "packages": sorted((prov.get("packages") or {}).items())
        if isinstance(prov.get("packages"), dict)
        else [],
        "archives": sorted((prov.get("model_archives") or {}).items())
        if isinstance(prov.get("model_archives"), dict)
        else [],
        "other": {
            k: json.dumps(v, indent=2, sort_keys=True, default=str)
            for k, v in nested.items()
            if k not in ("packages", "model_archives")
        },
    }


def _figure_or_note(
    fn: Callable[[], F.Figure | None], errors: list[str], key: str
) -> F.Figure | None:
    try:
        return fn()
    except Exception as exc:  # one broken figure must not cost the reviewer the whole report
        errors.append(f"{key}: {type(exc).__name__}: {exc}")
        return None


def _measured_s(summary: Doc, workload: Doc) -> float | None:
    """Seconds measured: summary.measured_s, else the load's duration minus warm-up."""
    if _num(summary.get("measured_s")) is not None:
        return float(summary["measured_s"])
    duration = _num(summary.get("duration_s", workload.get("duration_s")))
    warmup = _num(summary.get("warmup_s", workload.get("warmup_s"))) or 0.0
    return None if duration is None else max(duration - warmup, 0.0)


def build_context(results: Doc, baseline: Doc | None) -> dict[str, Any]:
    """The template's view model for ``results`` (and ``baseline`` when given)."""
    if not isinstance(results, dict):
        raise TypeError("results must be a dict (the parsed results.json)")
    summary = results.get("summary") or {}
    # The embedded comparison, or a fresh one when another baseline is passed.
    comparison = comparison_for(results, baseline)
    gates = [
        _gate_view(g, bool(baseline)) for g in results.get("gates") or [] if isinstance(g, dict)
    ]
    fig_errors: list[str] = []
    figs = {
        "latency": _figure_or_note(
            lambda: F.latency_over_time(results, baseline), fig_errors, "latency over time"
        ),
        "throughput": _figure_or_note(
            lambda: F.throughput_over_time(results, baseline), fig_errors, "throughput"
        ),
        "distribution": _figure_or_note(
            lambda: F.latency_distribution(results, baseline), fig_errors, "latency distribution"
        ),
        "served_by": _figure_or_note(
            lambda: F.served_by_over_time(results), fig_errors, "served by"
        ),
        "torchserve": _figure_or_note(
            lambda: F.torchserve_batching(results), fig_errors, "TorchServe batching"
        ),
        "cpu": _figure_or_note(lambda: F.cpu_over_time(results), fig_errors, "CPU"),
        "gpu": _figure_or_note(lambda: F.gpu_over_time(results), fig_errors, "GPU"),
    }
    scenario = results.get("scenario") or {}
    stack = scenario.get("stack") or {}
    workload = scenario.get("workload") or {}
    gpu = summary.get("gpu") or {}
    ts = summary.get("torchserve")
    outages, reloads, other_faults = _fault_views(results)
    groups = _summary_rows(results, baseline, comparison) if summary or comparison else []
    frames = summary.get("frames") or {}
    errors = summary.get("errors") or {}
    gen = summary.get("generator") or {}
    return {
        "title": f"{results.get('name') or 'run'}: harness report",
        "run": {
            "name": results.get("name") or "(unnamed)",
            "run_id": results.get("run_id") or "(no run id)",
            "started_at": results.get("started_at") or "—",
            "finished_at": results.get("finished_at") or "—",
            "description": scenario.get("description") or "",
            "driver": stack.get("driver") or "—",
            "use_torchserve": stack.get("use_torchserve"),
            "rollout": stack.get("rollout_percent"),
            "ts_cfg": stack.get("torchserve") or {},
            "sessions": summary.get("sessions", workload.get("sessions")),
            "fps": summary.get("fps", workload.get("fps")),
            # What was measured (duration minus warm-up), not the configured duration.
            "duration": fmt(_measured_s(summary, workload), "s"),
            "warmup": fmt(summary.get("warmup_s", workload.get("warmup_s")), "s"),
            "schema_ok": results.get("schema") == "signflow-harness/results"
            and results.get("schema_version") in READABLE_VERSIONS,
            "schema": f"{results.get('schema')} v{results.get('schema_version')}",
        },
        "verdict": _verdict_view(results, gates, comparison),
        "gates": gates,
        "comparison": comparison,
        "has_baseline": bool(baseline) or bool(comparison),
        "baseline_name": (comparison or {}).get("baseline_name") or (baseline or {}).get("name"),
        "baseline_run_id": (comparison or {}).get("baseline_run_id")
        or (baseline or {}).get("run_id"),
        "summary_groups": groups,
        "other_compared": _other_compared(
            comparison, {r["metric"] for g in groups for r in g["rows"]}
        ),
        "frames": [
            (k, fmt(frames.get(k), "count"))
            for k in ("scheduled", "sent", "answered", "late", "errored", "lost")
            if k in frames
        ],
        "errors": errors,
        "errors_by_code": sorted((errors.get("by_code") or {}).items()),
        "generator": {
            "late_share": fmt(gen.get("late_share"), "share"),
            "late_threshold": fmt(gen.get("late_threshold_ms"), "ms"),
            "cpu": fmt(gen.get("cpu_percent_mean"), "pct"),
            "saturated": gen.get("cpu_saturated"),
        }
        if gen
        else None,
        "figures": figs,
        "figure_errors": fig_errors,
        "gpu": {
            "present": bool(gpu.get("present")),
            "reason": gpu.get("reason"),
            "name": gpu.get("name"),
        },
        "torchserve": _torchserve_view(ts),
        "outages": outages,
        "reloads": reloads,
        "other_faults": other_faults,
        "events": _event_rows(results),
        "rollout": _rollout_view(results),
        "traffic": _traffic_view(summary),
        "drift": _drift_view(summary),
        "provenance": _provenance(results),
        "scenario_yaml": mask_yaml_text(str(results.get("scenario_yaml") or "")),
        "fixture_note": results.get("fixture_note"),
    }


def _torchserve_view(ts: object) -> dict[str, Any]:
    """summary.torchserve -> the report's words for where a request's server time went.

    Results written before the handler timed itself have ``inference_ms_mean`` (TorchServe's
    "inference latency", arrival to answer, queue included) and no handler time: shown as the
    end-to-end figure, flagged ``legacy``, never as model time.
    """
    if not isinstance(ts, dict):
        return {"present": False}
    legacy = "end_to_end_ms_mean" not in ts and "inference_ms_mean" in ts
    e2e = ts.get("inference_ms_mean") if legacy else ts.get("end_to_end_ms_mean")
    queue, handler = ts.get("queue_ms_mean"), ts.get("handler_ms_mean")
    rest = (
        e2e - queue - handler
        if isinstance(e2e, int | float)
        and isinstance(queue, int | float)
        and isinstance(handler, int | float)
        else None
    )
    return {
        "present": True,
        "legacy": legacy,
        "batch_mean": fmt(ts.get("batch_size_mean")),
        "queue": fmt(queue, "ms"),
        "handler": fmt(handler, "ms"),
        "model": fmt(ts.get("model_ms_mean"), "ms"),
        "end_to_end": fmt(e2e, "ms"),
        "rest": fmt(max(rest, 0.0), "ms") if rest is not None else None,
        "requests": fmt(ts.get("requests"), "count"),
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every value from results.json is data, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(results: Doc, baseline: Doc | None) -> str:
    """The complete report as an HTML string."""
    return _env().get_template("report.html.j2").render(**build_context(results, baseline))


def build_report(results: Doc, baseline: Doc | None, out_path: Path) -> Path:
    """Write the self-contained HTML report of ``results`` to ``out_path`` and return it.

    ``baseline`` is the baseline run's results document (for its series and figures); the
    statistical verdicts come from ``results["comparison"]``. The file is written atomically
    (temporary file then rename) so a reader never sees half a report.
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
