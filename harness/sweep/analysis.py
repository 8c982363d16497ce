"""What a sweep's runs mean: outcome of a point, the Pareto front, equivalence, the
recommendation. Pure functions over results documents and plain dicts (sweep.json's shapes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.compare import Verdict, compare
from harness.analysis.gates import resolve_metric
from harness.load.selfcheck import CPU_SATURATED, FELL_BEHIND
from harness.results.model import reason_from_v1
from harness.results.model import reason_text as reason_text

from .search import Outcome

# Figures kept per point in sweep.json (metric path -> key).
FIGURES = {
    "frame.latency_ms.p50": "p50_ms",
    "frame.latency_ms.p95": "p95_ms",
    "frame.latency_ms.p99": "p99_ms",
    "inference.latency_ms.p95": "inference_p95_ms",
    "inference.latency_ms.p99": "inference_p99_ms",
    "throughput.frames_per_s": "frames_per_s",
    "throughput.inferences_per_s": "inferences_per_s",
    "errors.total": "errors",
    "torchserve.batch_size_mean": "batch_size_mean",
    "generator.late_share": "late_share",
}


def figures(doc: Mapping[str, Any]) -> dict[str, float | None]:
    """The point's headline figures (None where not measured)."""
    summary = doc.get("summary") or {}
    return {key: resolve_metric(path, summary)[0] for path, key in FIGURES.items()}


def outcome(doc: Mapping[str, Any], code: int) -> tuple[Outcome, str | None]:
    """(outcome, why) of one run for the search.

    passed -> pass; a failed constraint -> fail. INVALID because the generator fell behind or
    saturated its CPU -> machine-limit (the load machine, not the system, is the limit). INVALID
    because the system under test stopped reading or answered beyond the latency limit -> fail:
    the system is past its capacity, which is what the search looks for. No measurement (the
    stack failed) -> error.
    """
    verdict = doc.get("verdict")
    if verdict == "passed":
        return "pass", None
    if verdict == "failed":
        failed = [g["expr"] for g in doc.get("gates") or [] if not g.get("passed")]
        return "fail", "failed " + ", ".join(failed)
    reasons = [reason_text(r) for r in doc.get("invalid_reasons") or []]
    if verdict == "invalid":
        machine = any(_reason_kind(r) in MACHINE_KINDS for r in doc.get("invalid_reasons") or [])
        return ("machine-limit" if machine else "fail"), "; ".join(reasons)
    return "error", doc.get("error") or "; ".join(reasons) or f"exit {code}"


# results schema 2 states each INVALID reason as {kind, message, ...}; schema 1 as prose, whose
# kind harness.results.model.reason_from_v1 reads. Both are read.
MACHINE_KINDS = (FELL_BEHIND, CPU_SATURATED)


def _reason_kind(reason: Any) -> str:
    if isinstance(reason, Mapping):
        return str(reason.get("kind"))
    return str(reason_from_v1(str(reason)).kind)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Ids of the points no other point beats: (id, throughput up, latency down).

    A point is dominated when another has throughput >= and latency <= with one strict.
    """
    front = []
    for pid, thr, lat in points:
        dominated = any(
            (t >= thr and q <= lat) and (t > thr or q < lat)
            for other, t, q in points
            if other != pid
        )
        if not dominated:
            front.append(pid)
    return front


def cost(params: Mapping[str, Any], scenario: Mapping[str, Any]) -> tuple[float, ...]:
    """Cheaper first: replicas, then workers, then TorchServe at all, then the batch delay,
    then the batch size (of the configuration's scenario; ``params`` only for ties)."""
    stack = scenario.get("stack") or {}
    ts = stack.get("torchserve") or {}
    on = bool(stack.get("use_torchserve"))
    return (
        float(stack.get("torchserve_replicas", 1) if on else 0),
        float(ts.get("workers", 1) if on else 0),
        float(on),
        float(ts.get("max_batch_delay_ms", 0) if on else 0),
        float(ts.get("batch_size", 1) if on else 0),
    )


def cost_words(scenario: Mapping[str, Any]) -> str:
    """``1 replica x 1 worker, delay 5 ms`` (or ``no TorchServe``)."""
    stack = scenario.get("stack") or {}
    if not stack.get("use_torchserve"):
        return "no TorchServe"
    ts = stack.get("torchserve") or {}
    reps = stack.get("torchserve_replicas", 1)
    return (
        f"{reps} replica{'s' if reps != 1 else ''} x {ts.get('workers')} worker"
        f"{'s' if ts.get('workers') != 1 else ''}, delay {ts.get('max_batch_delay_ms')} ms"
    )


def same_within_noise(run: Mapping[str, Any], base: Mapping[str, Any], metric: str) -> bool:
    """Whether ``metric`` of two runs differs only by noise, by the project's comparison
    statistics (``harness.analysis.compare``)."""
    # "too little data" is not "the same": only a tested no-significant-change is equivalence.
    return _verdicts(run, base).get(metric) is Verdict.SAME


def _verdicts(run: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Verdict]:
    return {m.metric: m.verdict for m in compare(dict(run), dict(base)).metrics}


def break_tie(
    tied: Sequence[Mapping[str, Any]],
    docs: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str],
) -> tuple[Mapping[str, Any], str]:
    """Order configurations whose capacities are the same lower bound (each passed the largest
    load tried) by their constraint ``metrics`` at that load: each pair's best points compared
    by the comparison statistics, a metric judged better counts for one and against the other;
    most net wins first, then the cheapest. Returns (chosen, the reason in words)."""
    score = {c["id"]: 0 for c in tied}
    found: list[str] = []
    for i, a in enumerate(tied):
        for b in tied[i + 1 :]:
            da, db = docs.get(a.get("best_point") or ""), docs.get(b.get("best_point") or "")
            if da is None or db is None:
                continue
            verdicts = _verdicts(da, db)
            for metric in metrics:
                v = verdicts.get(metric)
                if v in (Verdict.BETTER, Verdict.WORSE):
                    win, lose = (a, b) if v is Verdict.BETTER else (b, a)
                    score[win["id"]] += 1
                    score[lose["id"]] -= 1
                    va, vb = (
                        resolve_metric(metric, da.get("summary") or {})[0],
                        resolve_metric(metric, db.get("summary") or {})[0],
                    )
                    found.append(
                        f"{metric} {win['id']} better than {lose['id']} ({a['id']} {va:.4g} vs "
                        f"{b['id']} {vb:.4g})"
                        if va is not None and vb is not None
                        else f"{metric} {win['id']} better than {lose['id']}"
                    )
    chosen = min(tied, key=lambda c: (-score[c["id"]], c["cost"]))
    if found:
        return chosen, "the constraint metrics at that load: " + "; ".join(found)
    return chosen, (
        "no constraint metric differs beyond the noise at that load, so the cheapest is named"
    )


def recommend(
    configs: Sequence[Mapping[str, Any]],
    docs: Mapping[str, Mapping[str, Any]],
    objective: str,
    higher_is_better: bool,
    resolution: int,
    constraint_metrics: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The recommendation: the best configuration that meets the constraints, or the cheapest
    of those equivalent to it. None when no configuration meets them.

    ``configs``: sweep.json configurations (``id``, ``status``, ``value``, ``cost``,
    ``best_point``, ``censored``); ``docs``: results documents by point id, for the noise test
    of metric objectives and the tie-break. Capacities are equivalent when both were measured
    and lie within the search's ``resolution`` (at least one session: the search cannot tell
    them apart); metric values when the comparison statistics find no change. A censored
    capacity (passed at search.max) is a lower bound, above every measured one, and never
    equivalent to anything: configurations tied at the same bound are ordered by their
    ``constraint_metrics`` at that load (``break_tie``).
    """
    met = [c for c in configs if c["status"] == "met" and c.get("value") is not None]
    if not met:
        return None
    sign = 1.0 if higher_is_better else -1.0
    bounds = [c for c in met if c.get("censored")] if objective == "capacity" else []
    if bounds:
        top = max(c["value"] for c in bounds)
        tied = [c for c in bounds if c["value"] == top]
        chosen, why = break_tie(tied, docs, constraint_metrics)
        return {
            "config": chosen["id"],
            "best_measured": chosen["id"],
            "equivalent": [],
            "censored": True,
            "tied": sorted(c["id"] for c in tied if c is not chosen),
            "tie_break": why if len(tied) > 1 else None,
        }
    best = max(met, key=lambda c: (sign * c["value"], [-x for x in c["cost"]]))
    equivalent = []
    for c in met:
        if c is best:
            continue
        if objective == "capacity":
            same = abs(c["value"] - best["value"]) <= max(resolution, 1)
        else:
            a, b = docs.get(c.get("best_point") or ""), docs.get(best.get("best_point") or "")
            same = a is not None and b is not None and same_within_noise(a, b, objective)
        if same:
            equivalent.append(c)
    chosen = min([best, *equivalent], key=lambda c: (c["cost"], -sign * c["value"]))
    return {
        "config": chosen["id"],
        "best_measured": best["id"],
        "equivalent": sorted(c["id"] for c in [best, *equivalent] if c is not chosen),
        "censored": False,
        "tied": [],
        "tie_break": None,
    }
