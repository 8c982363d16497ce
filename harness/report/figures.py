"""Matplotlib figures of the HTML report, rendered off-screen and embedded as base64 PNG.

Every figure function takes a run's :class:`~harness.results.model.Results` (docs/RESULTS.md;
a parsed results.json mapping is read as one) and returns a ``Figure`` with
alt text that states what the figure shows, or ``None`` when the data it needs is absent (the
template then says so in words). Lines differ by style and marker, not only by colour, so the
report survives printing in grey.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import matplotlib

matplotlib.use("Agg")  # off-screen: the report is built on headless CI machines

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

import harness.hdr as hdr
from harness.hdr import Floats
from harness.results.model import (
    Document,
    EventRecord,
    OutageFault,
    ReloadFault,
    Results,
    results_of,
)

Doc = Results | Document  # what a figure function is given (a mapping: read as Results)

DPI = 120
WIDTH_IN = 9.6
# Okabe-Ito palette (colour-blind safe); the styles below carry the meaning in grey too.
BLUE, ORANGE, GREEN, VERMILION, PURPLE, GREY = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#555555",
)
STYLES: list[dict[str, Any]] = [
    {"color": BLUE, "linestyle": "-", "marker": None},
    {"color": ORANGE, "linestyle": "--", "marker": "o", "markersize": 3.5},
    {"color": VERMILION, "linestyle": ":", "marker": "^", "markersize": 4, "linewidth": 2.0},
    {"color": GREEN, "linestyle": "-.", "marker": "s", "markersize": 3.5},
    {"color": PURPLE, "linestyle": (0, (5, 1, 1, 1, 1, 1)), "marker": "D", "markersize": 3},
]
ACTION_LABELS = {
    "kill_torchserve": "kill TorchServe",
    "start_torchserve": "start TorchServe",
    "reload_model": "reload",
    "set_rollout": "rollout",
}
HDR_MAX_X = 10_000.0  # 1/(1-q) at q = 99.99 %


@dataclass(frozen=True)
class Figure:
    """One embedded figure: stable key (for tests and anchors), title, alt text, PNG data."""

    key: str
    title: str
    alt: str
    png_b64: str
    caption: str = ""

    @property
    def src(self) -> str:
        """The data: URI to put in ``<img src>``."""
        return f"data:image/png;base64,{self.png_b64}"


def _png(fig: MplFigure) -> str:
    buf = io.BytesIO()
    # metadata None: no software/date stamp, so the same results give the same bytes.
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _arr(values: Iterable[Any] | None) -> Floats:
    if values is None:
        return np.array([], dtype=float)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _run(doc: Doc | None) -> Results | None:
    """The figure's run as Results (None stays None)."""
    if doc is None or isinstance(doc, Results):
        return doc
    return results_of(doc)


def _column(doc: Results | None, key: str) -> Any:
    """Series ``key`` of a run (None when it has none): series are keyed by name."""
    return doc.series.get(key) if doc is not None else None


def _t(doc: Results | None) -> Floats:
    return _arr(_column(doc, "t"))


def _has(values: Floats) -> bool:
    return values.size > 0 and bool(np.isfinite(values).any())


def _aligned(doc: Results | None, key: str) -> tuple[Floats, Floats] | None:
    """The (t, values) pair of series ``key``, or None when absent or all null."""
    t, v = _t(doc), _arr(_column(doc, key))
    n = min(t.size, v.size)
    if n == 0 or not _has(v[:n]):
        return None
    return t[:n], v[:n]


# A per-second chart of more points than this is drawn from bucket envelopes (issue 23): an
# 8-hour run has 28,800 windows, more than a 1,150-pixel-wide chart has pixels, and
# matplotlib took ~50 s to draw the report's lines and bars at that length.
MAX_POINTS = 2000


@dataclass(frozen=True)
class Buckets:
    """A series cut into ``size``-window buckets (the last may be shorter).

    ``start``: each bucket's first time (s); ``lo``/``hi``: its min and max over the finite
    values, at times ``t_lo``/``t_hi`` (NaN where a bucket has no finite value, so gaps stay
    gaps); ``total``: its sum (NaN counted as 0), for counts that are stacked, not enveloped.
    """

    size: int
    start: Floats
    lo: Floats
    hi: Floats
    t_lo: Floats
    t_hi: Floats
    total: Floats

    def line(self) -> tuple[Floats, Floats]:
        """The envelope as one line: each bucket's min and max, in the order they occurred
        (the M4 / min-max reduction: drawn at chart width, it covers the same pixels as the
        full series, so a one-second spike or dip stays visible)."""
        lo_first = ~(self.t_lo > self.t_hi)  # NaN times compare False: keep lo first
        t = np.where(lo_first, self.t_lo, self.t_hi), np.where(lo_first, self.t_hi, self.t_lo)
        v = np.where(lo_first, self.lo, self.hi), np.where(lo_first, self.hi, self.lo)
        return np.column_stack(t).ravel(), np.column_stack(v).ravel()


def buckets(t: Floats, v: Floats, max_points: int = MAX_POINTS) -> Buckets | None:
    """Min/max buckets of the series (t, v) (same length, t ascending), or None when it has
    at most ``max_points`` points (drawn as is).

    The one downsampling of the report's per-second charts. Plain min/max buckets, not LTTB:
    LTTB keeps one point per bucket chosen by triangle area and can drop a bucket's minimum
    or maximum; the envelope keeps both, so the peak p99 and the deepest throughput dip of
    each bucket are drawn (numpy, matplotlib and scipy offer no such reduction; matplotlib's
    path simplification only merges collinear segments). ``2 * len(buckets) <= max_points``.
    """
    n = min(t.size, v.size)
    if n <= max_points:
        return None
    size = math.ceil(n / (max_points // 2))
    rows = math.ceil(n / size)
    pad = rows * size - n
    vv = np.concatenate([v[:n], np.full(pad, np.nan)]).reshape(rows, size)
    tt = np.concatenate([t[:n], np.full(pad, np.nan)]).reshape(rows, size)
    finite = np.isfinite(vv)
    empty = ~finite.any(axis=1)
    i_lo = np.where(finite, vv, np.inf).argmin(axis=1)
    i_hi = np.where(finite, vv, -np.inf).argmax(axis=1)
    r = np.arange(rows)

    def pick(a: Floats, i: np.ndarray[Any, Any]) -> Floats:
        return np.where(empty, np.nan, a[r, i])

    return Buckets(
        size=size,
        start=tt[:, 0],
        lo=pick(vv, i_lo),
        hi=pick(vv, i_hi),
        t_lo=pick(tt, i_lo),
        t_hi=pick(tt, i_hi),
        total=np.where(finite, vv, 0.0).sum(axis=1),
    )


def _drawn(t: Floats, v: Floats) -> tuple[Floats, Floats, int]:
    """(t, v) as drawn: the series itself, or its min/max envelope line; and the bucket width
    in windows (1: not downsampled)."""
    b = buckets(t, v)
    if b is None:
        return t, v, 1
    return (*b.line(), b.size)


def _bucket_note(size: int) -> str:
    """The served-by chart's sentence for a long run ('' when not downsampled)."""
    if size <= 1:
        return ""
    return (
        f" Long run: shares of each {size}-second bucket's inferences; dotted, the lowest "
        f"per-second TorchServe share of each bucket (so a fallback second is not hidden)."
    )


def _envelope_note(size: int) -> str:
    """The sentence a downsampled chart adds to its caption and alt text ('' when not)."""
    if size <= 1:
        return ""
    return (
        f" Long run: each line is the min/max envelope of {size}-second buckets (the lowest "
        f"and highest per-second value of each bucket, so no spike is hidden)."
    )


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return f"{s} {unit}".strip()


def _style_axes(ax: Axes) -> None:
    ax.grid(True, which="major", color="#d0d0d0", linewidth=0.6)
    ax.grid(True, which="minor", color="#ececec", linewidth=0.4)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)


def _event_time(ev: EventRecord) -> float:
    return ev.started_s if ev.started_s is not None else ev.at_s


def event_label(ev: EventRecord) -> str:
    """Short human label of a timeline event (``reload → 2.0``, ``rollout 50 %``)."""
    label = ACTION_LABELS.get(ev.action, ev.action.replace("_", " "))
    version, percent = (ev.params.get(k) for k in ("version", "percent"))
    if ev.action == "reload_model" and version:
        label += f" → {version}"
    if ev.action == "set_rollout" and percent is not None:
        label += f" {percent} %"
    if ev.ok is False:
        label += " (FAILED)"
    return label


def windows(doc: Doc | None) -> list[tuple[str, float, float]]:
    """Shaded windows of a run: ('outage'|'recovery'|'mixed versions', start, end), clock s.

    The outage and recovery windows are the fault entry's own (``start_s``/``end_s`` and
    ``recovery_window_s``, defined once in harness.analysis.faults), so the bands, the headings
    and the gates describe the same seconds.
    """
    out: list[tuple[str, float, float]] = []
    run = _run(doc)
    for f in run.faults if run is not None else []:
        if isinstance(f, OutageFault):
            out.append(("outage", float(f.start_s), float(f.end_s)))
            if _pair(rec := f.recovery_window_s):
                out.append(("recovery", float(rec[0]), float(rec[1])))
        elif isinstance(f, ReloadFault) and _pair(mw := f.mixed_window_s):
            out.append(("mixed versions", float(mw[0]), float(mw[1])))
    return out


def _pair(x: object) -> TypeGuard[Sequence[float]]:
    """``x`` is two numbers (a window's [start, end])."""
    return (
        isinstance(x, Sequence)
        and not isinstance(x, str)
        and len(x) == 2
        and all(isinstance(v, int | float) for v in x)
    )


WINDOW_STYLE = {  # kind -> (hatch, colour)
    "outage": ("///", VERMILION),
    "recovery": ("...", GREEN),
    "mixed versions": ("\\\\\\", PURPLE),
}


def _annotate(ax: Axes, doc: Results | None, *, labels: bool) -> None:
    """Warm-up, outage and mixed-version windows shaded; timeline events as labelled lines."""
    if doc is None:
        return
    warm = doc.summary.warmup_s or 0
    if warm:
        ax.axvspan(
            0,
            warm,
            facecolor="#eeeeee",
            edgecolor="none",
            zorder=0,
            label="warm-up" if labels else None,
        )
    seen: set[str] = set()
    for kind, a, b in windows(doc):
        # A mixed window of 50 ms would be invisible at 1-s resolution: draw at least 0.4 s.
        if b - a < 0.4:
            mid = (a + b) / 2
            a, b = mid - 0.2, mid + 0.2
        hatch, colour = WINDOW_STYLE[kind]
        ax.axvspan(
            a,
            b,
            facecolor=colour,
            alpha=0.12,
            hatch=hatch,
            edgecolor=colour,
            linewidth=0,
            zorder=0,
            label=None if (kind in seen or not labels) else kind,
        )
        seen.add(kind)
    for ev in doc.events:
        x = _event_time(ev)
        ax.axvline(x, color="#222222", linestyle=(0, (4, 2, 1, 2)), linewidth=1.1, zorder=3)
        if labels:
            ax.annotate(
                event_label(ev),
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                rotation=90,
                va="top",
                ha="left",
                fontsize=8,
                color="#222222",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
            )


def _log_if_wide(ax: Axes, values: Iterable[Floats]) -> bool:
    finite = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values] or [np.array([])])
    if finite.size and finite.max() / max(finite.min(), 1e-9) > 15:
        ax.set_yscale("log")
        return True
    return False


def _legend(ax: Axes, **_: Any) -> None:
    # Above the plot area, right-aligned: a legend inside would hide the data it explains.
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            fontsize=8,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=min(len(handles), 6),
            frameon=False,
            borderaxespad=0.2,
            handlelength=2.6,
        )


def _run_name(doc: Results, default: str) -> str:
    return doc.name or default


def latency_over_time(results: Doc, base: Doc | None) -> Figure | None:
    """Frame latency p50/p95/p99 per second, run on top and baseline below, with events."""
    run, baseline = _run(results), _run(base)
    assert run is not None
    keys = [("frame_p50_ms", "p50"), ("frame_p95_ms", "p95"), ("frame_p99_ms", "p99")]
    docs = [("This run", run)] + ([("Baseline", baseline)] if baseline is not None else [])
    docs = [(title, d) for title, d in docs if any(_aligned(d, k) for k, _ in keys)]
    if not docs or docs[0][1] is not run:
        return None
    fig, axes = plt.subplots(
        len(docs), 1, figsize=(WIDTH_IN, 3.3 * len(docs)), sharex=True, sharey=True, squeeze=False
    )
    all_vals: list[Floats] = []
    peaks: list[str] = []
    size = 1
    for (title, doc), ax in zip(docs, axes[:, 0], strict=True):
        for (key, label), style in zip(keys, STYLES, strict=False):
            pair = _aligned(doc, key)
            if pair is None:
                continue
            t, v, bucket = _drawn(*pair)
            size = max(size, bucket)
            ax.plot(
                t, v, label=label, markevery=max(1, t.size // 25), **{"linewidth": 1.6, **style}
            )
            all_vals.append(v)
            if key == "frame_p99_ms":
                i = int(np.nanargmax(v))
                peaks.append(f"{title.lower()} p99 peaks at {_fmt(v[i], 'ms')} at t = {t[i]:.0f} s")
        _annotate(ax, doc, labels=True)
        ax.set_title(f"{title}: {_run_name(doc, title)}", fontsize=10, loc="left")
        ax.set_ylabel("frame latency (ms)", fontsize=9)
        _style_axes(ax)
        _legend(ax, loc="upper right", ncol=3)
    log = _log_if_wide(axes[0, 0], all_vals)
    if log:
        for ax in axes[:, 0]:
            ax.set_ylabel("frame latency (ms, log)", fontsize=9)
    axes[-1, 0].set_xlabel("time since load start (s)", fontsize=9)
    fig.tight_layout()
    alt = (
        "Line chart of frame latency percentiles p50, p95 and p99 per 1-second window against "
        f"time{', log scale' if log else ''}, "
        + ("this run above and the baseline below" if len(docs) > 1 else "this run only")
        + ". "
        + "; ".join(peaks)
        + ". "
        + _events_sentence(run)
        + _envelope_note(size)
    )
    return Figure(
        "latency-over-time",
        "Latency percentiles over time",
        alt,
        _png(fig),
        "Per-second p50 / p95 / p99 of frame latency, measured from the scheduled send time "
        "(coordinated omission corrected). Grey: warm-up (not measured). Dash-dot vertical "
        "lines: timeline events. Hatched: outage (/), recovery (.) and mixed-version (\\) "
        "windows." + _envelope_note(size),
    )


def _events_sentence(doc: Results) -> str:
    parts = [f"{event_label(ev)} at {_event_time(ev):.1f} s" for ev in doc.events]
    for kind, a, b in windows(doc):
        parts.append(f"{kind} window shaded from {a:.2f} s to {b:.2f} s")
    return ("Marked: " + ", ".join(parts) + ".") if parts else "No timeline events."


def throughput_over_time(results: Doc, base: Doc | None) -> Figure | None:
    """Frames/s and inferences/s per second for run (solid) and baseline (dashed), errors."""
    run, baseline = _run(results), _run(base)
    assert run is not None
    if not (_aligned(run, "frames_per_s") or _aligned(run, "inferences_per_s")):
        return None
    errs = _aligned(run, "errors")
    has_err = errs is not None and bool(np.nansum(errs[1]) > 0)
    fig, axes = plt.subplots(
        2 if has_err else 1,
        1,
        figsize=(WIDTH_IN, 4.6 if has_err else 3.4),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]} if has_err else None,
    )
    ax = axes[0, 0]
    lines = [
        (run, "frames_per_s", "frames/s (run)", STYLES[0]),
        (run, "inferences_per_s", "inferences/s (run)", STYLES[3]),
        (baseline, "frames_per_s", "frames/s (baseline)", {**STYLES[0], "color": GREY}),
        (baseline, "inferences_per_s", "inferences/s (baseline)", {**STYLES[3], "color": GREY}),
    ]
    desc = []
    size = 1
    for doc, key, label, style in lines:
        pair = _aligned(doc, key)
        if pair is None:
            continue
        t, v, bucket = _drawn(*pair)
        size = max(size, bucket)
        median = float(np.nanmedian(pair[1]))  # of the seconds, not of the envelope
        style = dict(style)
        if doc is baseline:
            style["linestyle"] = "--"
            style["linewidth"] = 1.0
        ax.plot(t, v, label=label, markevery=max(1, t.size // 25), **style)
        desc.append(f"{label} median {_fmt(median)}")
    _annotate(ax, run, labels=True)
    ax.set_ylabel("per second", fontsize=9)
    ax.set_ylim(bottom=0)
    _style_axes(ax)
    _legend(ax, loc="center right", ncol=2)
    if has_err and errs is not None:
        ax2 = axes[1, 0]
        eb = buckets(*errs)
        if eb is None:
            ax2.bar(errs[0], errs[1], width=0.8, color=VERMILION, hatch="xx", edgecolor="#222222")
            ax2.set_ylabel("errors", fontsize=9)
        else:  # one bar per bucket: its worst second, so a burst is not diluted
            ax2.bar(
                eb.start,
                np.nan_to_num(eb.hi),
                width=eb.size,
                align="edge",
                color=VERMILION,
                linewidth=0,  # ~1,000 bars: outlines would paint the panel black
            )
            ax2.set_ylabel("errors (max/s)", fontsize=9)
            size = max(size, eb.size)
        _annotate(ax2, run, labels=False)
        _style_axes(ax2)
        desc.append(f"{int(np.nansum(errs[1]))} errors in total, shown as bars below")
    axes[-1, 0].set_xlabel("time since load start (s)", fontsize=9)
    fig.tight_layout()
    alt = (
        "Line chart of throughput per 1-second window: frames per second and inferences per "
        "second of this run (solid) and of the baseline (grey dashed, when present). "
        + "; ".join(desc)
        + ". "
        + _events_sentence(run)
        + _envelope_note(size)
    )
    return Figure(
        "throughput-over-time",
        "Throughput over time",
        alt,
        _png(fig),
        "Answered frames and inferences per second; a dip marks frames that were late or lost."
        + _envelope_note(size),
    )


def _hdr_curve(doc: Doc | None, which: str) -> tuple[Floats, Floats] | None:
    """(1/(1-q), latency ms) for 'frame' or 'inference': decoded HDR, else percentile_curve."""
    run = _run(doc)
    if run is None:
        return None
    hists = run.histograms
    encoded = hists.frame_latency if which == "frame" else hists.inference_latency
    curve = hists.percentile_curve.get(which) or []
    if encoded:
        try:
            # The unit is stated by the document (version 1: always microseconds).
            h = hdr.decode(encoded, hists.unit)
        except ValueError:  # a corrupt histogram falls back to the stored curve
            h = None
        if h is not None and h.get_total_count() > 0:
            xs = np.logspace(0, math.log10(HDR_MAX_X), 160)
            qs = 100.0 * (1.0 - 1.0 / xs)
            values = hdr.percentiles_us(h, [float(q) for q in qs])
            return xs, np.array(values, dtype=np.float64) / hdr.US_PER_MS
    pts = [(p, v) for p, v in curve if isinstance(v, int | float) and 0 <= p < 100]
    if len(pts) < 2:
        return None
    return np.array([1.0 / (1.0 - p / 100.0) for p, _ in pts]), np.array([v for _, v in pts])


def latency_distribution(results: Doc, base: Doc | None) -> Figure | None:
    """HDR percentile plot (x: 1/(1-q) log scale to 99.99 %) for run and baseline."""
    run, baseline = _run(results), _run(base)
    curves = [
        (run, "frame", "frame (run)", STYLES[0]),
        (run, "inference", "inference (run)", STYLES[2]),
        (baseline, "frame", "frame (baseline)", {**STYLES[0], "color": GREY, "linestyle": "--"}),
        (
            baseline,
            "inference",
            "inference (baseline)",
            {**STYLES[2], "color": GREY, "linestyle": "-."},
        ),
    ]
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.0))
    desc, vals = [], []
    curves_xy: list[tuple[Floats, Floats]] = []
    for doc, which, label, style in curves:
        c = _hdr_curve(doc, which)
        if c is None:
            continue
        xs, ys = c
        ax.plot(xs, ys, label=label, markevery=max(1, xs.size // 12), **style)
        vals.append(ys)
        curves_xy.append((xs, ys))
        desc.append(f"{label} reaches {_fmt(float(ys[-1]), 'ms')} at the highest percentile")
    if not vals or not any("run" in d for d in desc):
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ticks = [2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["50 %", "90 %", "99 %", "99.9 %", "99.99 %"])
    ax.set_xlim(1, HDR_MAX_X * 1.05)
    log = _log_if_wide(ax, vals)
    if log:
        # The first bucket can hold a 1-us sample; do not let it stretch the axis by decades.
        floors = [float(np.interp(1 / 0.9, xs_, ys_)) for xs_, ys_ in curves_xy if ys_.size]
        floor = min((f for f in floors if f > 0), default=None)
        if floor is not None:
            ax.set_ylim(bottom=floor * 0.5)
    ax.set_xlabel("percentile (log scale of 1 / (1 - q))", fontsize=9)
    ax.set_ylabel("latency (ms" + (", log)" if log else ")"), fontsize=9)
    _style_axes(ax)
    _legend(ax, loc="upper left")
    fig.tight_layout()
    alt = (
        "HDR percentile plot: latency in milliseconds against percentile from 0 % to 99.99 % "
        "on a log scale of 1/(1-q), frame and inference latency for this run and the baseline "
        "(grey). " + "; ".join(desc) + "."
    )
    return Figure(
        "latency-distribution",
        "Latency distribution (HDR percentile plot)",
        alt,
        _png(fig),
        "Whole measured window (warm-up excluded), from the run's HdrHistograms; the tail to "
        "the right is where the p99 and p99.9 live.",
    )


def served_by_over_time(results: Doc) -> Figure | None:
    """Share of inferences served by TorchServe, by the local fallback (the TorchServe cohort's
    classifications answered locally) and by the old pipeline (the old-pipeline cohort, local
    by design: never a fallback), plus model versions. Documents without ``served_fallback``
    (older files) cannot tell the two local kinds apart: their local band says so."""
    run = _run(results)
    assert run is not None
    ts, loc = _aligned(run, "served_torchserve"), _aligned(run, "served_local")
    either = ts if ts is not None else loc
    if either is None:
        return None
    t = either[0]
    n = t.size
    tsv = np.nan_to_num(ts[1][:n]) if ts else np.zeros(n)
    lov = np.nan_to_num(loc[1][:n]) if loc else np.zeros(n)
    known = _column(run, "served_fallback") is not None
    fb = _arr(_column(run, "served_fallback"))
    fbv = np.nan_to_num(fb[:n]) if fb.size >= n else np.zeros(n)
    tot = tsv + lov
    with np.errstate(invalid="ignore", divide="ignore"):
        ts_share = np.where(tot > 0, tsv / tot, np.nan)
        fb_share = np.where(tot > 0, fbv / tot, np.nan)
        old_share = np.where(tot > 0, (lov - fbv) / tot, np.nan)
    mv = _column(run, "model_versions") or []
    names = sorted({k for m in mv if isinstance(m, dict) for k in m})
    full_ts, full_fb = ts_share, fb_share  # the per-second shares, for the alt text
    full_t = t
    size, width = 1, 1.0
    ts_low: Buckets | None = None
    sb = buckets(t, tsv)
    if sb is not None:  # long run: each bucket's share of its inferences, and its worst second
        size, width = sb.size, float(sb.size)
        ts_low = buckets(t, ts_share)
        sums = [sb.total] + [b.total for b in (buckets(t, lov), buckets(t, fbv)) if b]
        tot_b = sums[0] + sums[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            ts_share = np.where(tot_b > 0, sums[0] / tot_b, np.nan)
            fb_share = np.where(tot_b > 0, sums[2] / tot_b, np.nan)
            old_share = np.where(tot_b > 0, (sums[1] - sums[2]) / tot_b, np.nan)
        t = sb.start
        n = t.size
    versions = len(names) > 1
    fig, axes = plt.subplots(
        2 if versions else 1,
        1,
        figsize=(WIDTH_IN, 5.4 if versions else 3.0),
        sharex=True,
        squeeze=False,
    )
    ax = axes[0, 0]
    # Window w covers [w, w+1) s: draw each share from its window's start to its end ("post",
    # with the last window closed at t+1). "mid" centred the step on w and showed the fallback
    # half a second before the kill.
    t_edge = np.append(t, t[-1] + width) if n else t

    def closed(share: Floats) -> Floats:
        return np.append(share, share[-1]) if n else share

    ts_plot, fb_plot, old_plot = closed(ts_share), closed(fb_share), closed(old_share)
    bands = [
        (0 * ts_plot, ts_plot, BLUE, "..", "TorchServe"),
        (ts_plot, ts_plot + fb_plot, VERMILION, "xx", "local fallback (TorchServe cohort)"),
        (
            ts_plot + fb_plot,
            ts_plot + fb_plot + old_plot,
            ORANGE,
            "//",
            "old pipeline (local by design)" if known else "local (old pipeline or fallback)",
        ),
    ]
    for lo, hi, colour, hatch, label in bands:
        if not known and label.startswith("local fallback"):
            continue
        ax.fill_between(
            t_edge,
            lo * 100,
            hi * 100,
            step="post",
            facecolor=colour,
            alpha=0.35,
            hatch=hatch,
            edgecolor=colour,
            linewidth=0,
            label=label,
        )
    ax.step(t_edge, ts_plot * 100, where="post", color=BLUE, linewidth=1.2)
    if sb is not None and ts_low is not None:
        ax.step(
            t_edge,
            closed(ts_low.lo) * 100,
            where="post",
            color="#222222",
            linestyle=":",
            linewidth=1.0,
            label="TorchServe, lowest second of each bucket",
        )
    _annotate(ax, run, labels=True)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of inferences", fontsize=9)
    _style_axes(ax)
    _legend(ax, loc="lower left", ncol=2)
    desc = (
        f"TorchServe served {np.nanmean(full_ts) * 100:.0f} % on average per second, lowest "
        f"{np.nanmin(full_ts) * 100:.0f} %"
        if _has(full_ts)
        else "no inferences"
    )
    if known and _has(full_fb):
        desc += f"; local fallback at most {np.nanmax(full_fb) * 100:.0f} % of a second"
    if versions:
        ax2 = axes[1, 0]
        counts = np.array(
            [
                [float(m[k]) if isinstance(m, dict) and k in m else 0.0 for m in mv[: full_t.size]]
                for k in names
            ]
        )
        m_t = full_t[: counts.shape[1]]
        if sb is not None:  # the answers of each bucket, like the bands above
            summed = [buckets(m_t, row) for row in counts]
            if all(summed):
                counts = np.array([b.total for b in summed if b])
                m_t = sb.start[: counts.shape[1]]
        totals = counts.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.where(totals > 0, counts / totals, np.nan) * 100
        bottom = np.zeros(m_t.size)
        hatches = ["", "xx", "..", "++"]
        for i, name in enumerate(names):
            col = STYLES[i % len(STYLES)]["color"]
            ax2.bar(
                m_t,
                np.nan_to_num(shares[i]),
                bottom=bottom,
                width=0.9 * width,
                align="edge",  # window w is [w, w+1) s, like the chart above
                color=col,
                alpha=0.55,
                hatch=hatches[i % 4],
                edgecolor="#333333",
                linewidth=0.3,
                label=f"model {name}",
            )
            bottom += np.nan_to_num(shares[i])
        _annotate(ax2, run, labels=False)
        ax2.set_ylim(0, 100)
        ax2.set_ylabel("% by model version", fontsize=9)
        _style_axes(ax2)
        _legend(ax2, loc="lower left", ncol=len(names))
        desc += "; lower panel: share of answers per model version (" + ", ".join(names) + ")"
    axes[-1, 0].set_xlabel("time since load start (s)", fontsize=9)
    fig.tight_layout()
    alt = (
        "Stacked area chart of the share of inferences per second served by TorchServe "
        "(dotted), by the local fallback of the TorchServe cohort (crossed) and by the old "
        f"pipeline (hatched, local by design, not a fallback). {desc}. "
        + _events_sentence(run)
        + _bucket_note(size)
    )
    return Figure(
        "served-by",
        "Who served the inferences",
        alt,
        _png(fig),
        "Per second, the share of inference replies tagged served_by = torchserve or local"
        + (", and below, the model version that answered." if versions else ".")
        + _bucket_note(size),
    )


# How STYLES[0..2] look, for the alt text of figures drawing up to three lines.
LINE_LOOKS = ("solid", "dashed, circles", "dotted, triangles")


def torchserve_batching(results: Doc) -> Figure | None:
    """Achieved batch-size histogram, and per second where a request's time in TorchServe went:
    queue, the handler's own time, end to end (arrival to answer; results written before the
    split have only that one, as ``ts_inference_ms``)."""
    run = _run(results)
    assert run is not None
    ts = run.summary.torchserve
    hist = (ts.batch_size_hist if ts is not None else None) or {}
    lines = (
        (_aligned(run, "ts_end_to_end_ms") or _aligned(run, "ts_inference_ms"), "end to end"),
        (_aligned(run, "ts_queue_ms"), "queue"),
        (_aligned(run, "ts_handler_ms"), "handler"),
    )
    if not hist and all(pair is None for pair, _ in lines):
        return None
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(WIDTH_IN, 3.4), gridspec_kw={"width_ratios": [2, 3]}
    )
    desc = []
    if hist:
        items = sorted(((int(k), int(v)) for k, v in hist.items()), key=lambda kv: kv[0])
        xs, ys = [k for k, _ in items], [v for _, v in items]
        ax1.bar(xs, ys, width=0.8, color=BLUE, alpha=0.7, hatch="//", edgecolor="#1b2a41")
        stack = run.scenario.get("stack") or {}
        cfg = (stack.get("torchserve") or {}).get("batch_size")
        if isinstance(cfg, int):
            ax1.axvline(cfg, color="#222222", linestyle="--", linewidth=1)
            ax1.annotate(
                f"configured batch_size = {cfg}",
                xy=(cfg, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-6, -3),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none"},
            )
            ax1.set_xlim(0, max(cfg, *xs) + 1)
        ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
        mean = sum(k * v for k, v in items) / max(1, sum(ys))
        desc.append(
            f"batch sizes from {xs[0]} to {xs[-1]}, mean {mean:.1f}"
            + (f" against a configured batch_size of {cfg}" if isinstance(cfg, int) else "")
        )
    else:
        ax1.text(
            0.5,
            0.5,
            "no batch-size histogram",
            ha="center",
            va="center",
            transform=ax1.transAxes,
            fontsize=9,
        )
    ax1.set_xlabel("achieved batch size", fontsize=9)
    ax1.set_ylabel("batches", fontsize=9)
    ax1.set_title("Batch sizes", fontsize=10, loc="left")
    _style_axes(ax1)
    size = 1
    for (pair, label), style in zip(lines, STYLES, strict=False):
        if pair is None:
            continue
        t, v, bucket = _drawn(*pair)
        size = max(size, bucket)
        ax2.plot(t, v, label=f"{label} time", markevery=max(1, t.size // 20), **style)
        desc.append(f"mean {label} time {_fmt(float(np.nanmean(pair[1])), 'ms')}")
    _annotate(ax2, run, labels=False)
    if _log_if_wide(ax2, [pair[1] for pair, _ in lines if pair is not None]):
        ax2.set_ylabel("server time per request (ms, log)", fontsize=9)
    else:
        ax2.set_ylim(bottom=0)
        ax2.set_ylabel("server time per request (ms)", fontsize=9)
    ax2.set_xlabel("time since load start (s)", fontsize=9)
    _style_axes(ax2)
    _legend(ax2, loc="upper right")
    fig.tight_layout()
    alt = (
        "Left: bar chart of how many batches TorchServe ran at each batch size. Right: line "
        "chart per second of a request's "
        + ", ".join(
            f"{label} time ({look})"
            for (pair, label), look in zip(lines, LINE_LOOKS, strict=True)
            if pair is not None
        )
        + "; gaps are seconds with no TorchServe request. "
        + "; ".join(desc)
        + "."
        + _envelope_note(size)
    )
    return Figure(
        "torchserve-batching",
        "TorchServe batching",
        alt,
        _png(fig),
        "From TorchServe's Prometheus metrics: the batches it actually formed, and where a "
        "request's server time went. End to end = arrival at TorchServe to answer (queue + "
        "batch assembly + handler + transfer: TorchServe's 'inference latency'); queue = "
        "waiting for a worker; handler = the handler's own time for the request's batch."
        + _envelope_note(size),
    )


def _per_h(run: Results, comp: str) -> float | None:
    d = (run.summary.memory or {}).get(comp)
    return d.rss_mb_per_h if d is not None else None


def _rss_fit(run: Results, comp: str, t: Floats) -> tuple[Floats, Floats] | None:
    """The RSS fit's line (summary.memory.COMP) over the measured window, or None."""
    d = (run.summary.memory or {}).get(comp)
    slope, start = _per_h(run, comp), d.rss_mb_start if d is not None else None
    warmup = run.summary.warmup_s or 0.0
    x = t[t >= warmup]
    if slope is None or start is None or x.size < 2:
        return None
    return x, start + slope / 3600.0 * (x - x[0])


def cpu_over_time(results: Doc) -> Figure | None:
    """CPU % and resident memory per component over time."""
    run = _run(results)
    assert run is not None
    t = _t(run)
    cpu = {k: _arr(v) for k, v in (_column(run, "cpu_percent") or {}).items() if _has(_arr(v))}
    rss = {k: _arr(v) for k, v in (_column(run, "rss_mb") or {}).items() if _has(_arr(v))}
    if not cpu or t.size == 0:
        return None
    fig, axes = plt.subplots(
        2 if rss else 1, 1, figsize=(WIDTH_IN, 5.2 if rss else 3.0), sharex=True, squeeze=False
    )
    desc = []
    order = sorted(
        cpu,
        key=lambda k: (
            ("backend", "torchserve", "harness").index(k)
            if k in ("backend", "torchserve", "harness")
            else 9
        ),
    )
    styles = {name: STYLES[i % len(STYLES)] for i, name in enumerate(order)}
    size = 1
    for name in order:
        v = cpu[name][: t.size]
        tx, vx, bucket = _drawn(t[: v.size], v)
        size = max(size, bucket)
        axes[0, 0].plot(tx, vx, label=name, markevery=max(1, vx.size // 20), **styles[name])
        desc.append(f"{name} CPU mean {_fmt(float(np.nanmean(v)), '%')}")
    _annotate(axes[0, 0], run, labels=True)
    axes[0, 0].set_ylabel("CPU % (100 = one core)", fontsize=9)
    axes[0, 0].set_ylim(bottom=0)
    _style_axes(axes[0, 0])
    _legend(axes[0, 0], loc="upper left", ncol=len(order))
    if rss:
        ax = axes[1, 0]
        for name, v in rss.items():
            v = v[: t.size]
            st = styles.get(name, STYLES[4])
            tx, vx, bucket = _drawn(t[: v.size], v)
            size = max(size, bucket)
            ax.plot(tx, vx, label=name, markevery=max(1, vx.size // 20), **st)
            desc.append(f"{name} memory up to {_fmt(float(np.nanmax(v)), 'MB')}")
            fit = _rss_fit(run, name, t[: v.size])
            if fit is not None:  # the leak gate's Theil-Sen line over the measured window
                x, y = fit
                if size > 1:  # a straight line: its two ends draw it
                    x, y = x[[0, -1]], y[[0, -1]]
                ax.plot(x, y, color="black", linestyle=":", linewidth=1.2)
                desc.append(f"{name} RSS fit {_fmt(_per_h(run, name), 'MB')} per hour")
        _annotate(ax, run, labels=False)
        ax.set_ylabel("resident memory (MB)", fontsize=9)
        ax.set_ylim(bottom=0)
        _style_axes(ax)
        _legend(ax, loc="upper left", ncol=len(rss))
    axes[-1, 0].set_xlabel("time since load start (s)", fontsize=9)
    fig.tight_layout()
    alt = (
        "Line chart of CPU utilisation per component per second"
        + (" and, below, resident memory per component" if rss else "")
        + ". "
        + "; ".join(desc)
        + "."
        + _envelope_note(size)
    )
    return Figure(
        "cpu-over-time",
        "CPU and memory per component",
        alt,
        _png(fig),
        "Sampled every second with psutil over each component's processes (children included); "
        "dotted: the RSS fit of the leak gates over the measured window." + _envelope_note(size),
    )


def gpu_over_time(results: Doc) -> Figure | None:
    """GPU utilisation and memory over time; None when no GPU series (stated in words)."""
    run = _run(results)
    assert run is not None
    u, m = _aligned(run, "gpu_util"), _aligned(run, "gpu_mem_mb")
    if u is None and m is None:
        return None
    fig, axes = plt.subplots(
        2 if (u and m) else 1,
        1,
        figsize=(WIDTH_IN, 4.6 if (u and m) else 2.8),
        sharex=True,
        squeeze=False,
    )
    desc = []
    row, size = 0, 1
    if u is not None:
        ax = axes[row, 0]
        tx, vx, size = _drawn(*u)
        ax.plot(tx, vx, label="GPU utilisation", markevery=max(1, tx.size // 20), **STYLES[3])
        ax.set_ylim(0, 100)
        ax.set_ylabel("GPU util %", fontsize=9)
        _annotate(ax, run, labels=True)
        _style_axes(ax)
        desc.append(
            f"utilisation mean {_fmt(float(np.nanmean(u[1])), '%')}, "
            f"max {_fmt(float(np.nanmax(u[1])), '%')}"
        )
        row += 1
    if m is not None:
        ax = axes[row, 0]
        tx, vx, bucket = _drawn(*m)
        size = max(size, bucket)
        ax.plot(tx, vx, label="GPU memory used", markevery=max(1, tx.size // 20), **STYLES[1])
        ax.set_ylim(bottom=0)
        ax.set_ylabel("GPU memory (MB)", fontsize=9)
        _annotate(ax, run, labels=row == 0)
        _style_axes(ax)
        desc.append(f"memory up to {_fmt(float(np.nanmax(m[1])), 'MB')}")
    axes[-1, 0].set_xlabel("time since load start (s)", fontsize=9)
    fig.tight_layout()
    name = (run.summary.gpu.name if run.summary.gpu else None) or "GPU"
    alt = (
        f"Line chart of {name} utilisation and memory per second (NVML). "
        + "; ".join(desc)
        + "."
        + _envelope_note(size)
    )
    return Figure(
        "gpu-over-time",
        f"GPU utilisation ({name})",
        alt,
        _png(fig),
        "Sampled every second through NVML." + _envelope_note(size),
    )
