"""The statistics behind a baseline comparison (:mod:`harness.analysis.compare` holds the rows,
verdicts, warnings and headline): autocorrelation and block length, the circular block bootstrap
over 1-s windows (one run, or several runs' windows pooled), its variance correction, the
between-run component, the t tests and the intervals.

* **Block bootstrap.** Adjacent windows are autocorrelated (a shared machine drifts), so
  treating them as independent makes p far too small. Each metric's own per-window series gives
  its lag-1 autocorrelation r (bias-corrected for short series); the blocks are b = ceil(tau)
  windows, tau = (1 + r)/(1 - r) the series' memory under an AR(1) model (1 for an uncorrelated
  series, at most n/3). Each latency percentile is read from the merged histogram of the
  resampled windows (each percentile on its own data); rates use the mean of the resampled
  windows; ``BOOTSTRAP_RESAMPLES`` resamples, fixed seed. A block bootstrap's variance is short
  by two known factors (it keeps correlation only inside a block, and it is a plug-in variance
  over n/b blocks); ``variance_correction`` restores both under the same AR(1) model.
* **Several runs a side** (``--repeat N``): the runs' windows are pooled, each run resampled in
  blocks inside itself (a block never spans two runs, which were separate stack starts), and
  the side's value is read from all its windows. Run-to-run differences beyond what each run's
  own windows explain are added as a random effect: the DerSimonian-Laird between-run variance
  tau^2 (DerSimonian & Laird 1986, Controlled Clinical Trials 7:177) over the runs' own values
  and bootstrap variances, one tau^2 from both sides' runs (2(k - 1) degrees of freedom),
  tau^2/k on the pooled value of k runs.
* **Tests**: the change (of log values for latency, the difference for rates) with Student's t
  on n_run/b + n_base/b - 2 degrees of freedom (the independent blocks).
* **Intervals** (``Boot.interval``): the 95 % t interval from the corrected variance, clipped to
  the range the statistic could take (the observed range of the side's replies, or of its
  per-window values): a percentile or mean cannot lie outside what was measured. For percentile
  p it is given only when the side's replies put the true percentile inside the observed range
  with >= 97.5 % confidence at each end (order statistics: n >= ln(0.025)/ln(max(p, 1 - p)));
  else None (cannot be computed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

import harness.hdr as hdr
from harness.hdr import Floats

BOOTSTRAP_RESAMPLES = 500
BOOTSTRAP_SEED = 20261128
# A block spans this many integrated autocorrelation times (block_length); the variance
# correction covers the correlation a block of one tau cuts, so longer blocks only cost power.
BLOCK_TAUS = 1.0
# One-sided miss allowed at each end of an order-statistic bound (a 95 % interval).
_TAIL = 0.025


def lag1_autocorrelation(values: Sequence[float] | Floats) -> float:
    """Lag-1 sample autocorrelation of a per-window series, bias-corrected for a short series
    (+ (1 + 4 r)/n, Kendall's first-order correction) and clamped to [0, 0.95]; 0 for fewer
    than 4 finite values or a constant series. NaN windows are left out."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 4:
        return 0.0
    xc = x - x.mean()
    denom = float(xc @ xc)
    if denom == 0:
        return 0.0
    r1 = float(xc[:-1] @ xc[1:]) / denom
    return min(max(r1 + (1 + 4 * r1) / n, 0.0), 0.95)


def block_length(values: Sequence[float] | Floats) -> int:
    """Block length (windows) for a per-window series, from its measured autocorrelation
    (``lag1_autocorrelation``; NaN windows left out): ``block_length_for``."""
    n = int(np.count_nonzero(np.isfinite(np.asarray(values, dtype=np.float64))))
    return block_length_for(lag1_autocorrelation(values), n)


def block_length_for(r: float, n: int) -> int:
    """Block length for lag-1 autocorrelation ``r`` over ``n`` windows: tau = (1 + r)/(1 - r),
    the windows the series needs to forget (its integrated autocorrelation time under an AR(1)
    model); b = ceil(BLOCK_TAUS * tau), so a block spans that memory (1 for an uncorrelated
    series); at most max(1, n // 3)."""
    tau = (1 + r) / (1 - r)
    return int(min(max(1, n // 3), max(1, math.ceil(BLOCK_TAUS * tau))))


def variance_correction(r: float, b: int, n: int) -> float:
    """Factor on a circular block bootstrap's variance of a mean-like statistic under an AR(1)
    series with lag-1 autocorrelation ``r`` cut into blocks of ``b`` of ``n`` windows: the
    bootstrap keeps correlation only within a block (Bartlett weights 1 - k/b) where the true
    variance holds all of it (tau), and its plug-in variance over m = n/b blocks is short by
    (m - 1)/m. Returns tau / bartlett * m / (m - 1) (>= 1)."""
    tau = (1 + r) / (1 - r)
    bartlett = 1 + 2 * sum((1 - k / b) * r**k for k in range(1, b))
    m = max(n / b, 1.5)
    return max(tau / bartlett, 1.0) * m / (m - 1)


def block_weights(rng: np.random.Generator, n: int, b: int, resamples: int) -> Floats:
    """(R, n) how often each window is drawn by a moving-block bootstrap with blocks of ``b``."""
    nblocks = math.ceil(n / b)
    starts = rng.integers(0, n, size=(resamples, nblocks))
    idx = ((starts[:, :, None] + np.arange(b)) % n).reshape(resamples, -1)[:, :n]
    flat = (idx + np.arange(resamples)[:, None] * n).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def segmented_block_weights(
    rng: np.random.Generator, segments: Sequence[int], b: int, resamples: int
) -> Floats:
    """(R, sum(segments)) window draws of a circular block bootstrap inside each segment (one
    run's windows): a block never spans two runs. One segment is ``block_weights``."""
    return np.hstack([block_weights(rng, n, min(b, n), resamples) for n in segments])


def replies_for_interval(p: float) -> int:
    """Replies that put percentile ``p`` (0-100) inside the observed range with >= 97.5 %
    confidence at each end: the smallest n with max(q, 1 - q)^n <= 0.025 (q = p/100;
    order statistics of independent replies)."""
    q = max(p / 100.0, 1.0 - p / 100.0)
    return 1 if q <= 0 else math.ceil(math.log(_TAIL) / math.log(q))


@dataclass
class RunPart:
    """One run's share of a pooled side: its own value, resampled values and variance factor."""

    value: float
    draws: Floats
    var_factor: float

    def var(self, log: bool) -> float:
        d = np.log(np.maximum(self.draws, 1e-9)) if log else self.draws
        return float(np.var(d)) * self.var_factor if d.size else 0.0

    def point(self, log: bool) -> float:
        return math.log(max(self.value, 1e-9)) if log else self.value


def between_run_variance(groups: Sequence[Sequence[RunPart]], log: bool) -> float:
    """DerSimonian-Laird tau^2 of runs in ``groups`` (each side's runs, one common tau^2: the
    run-to-run variation is the machine's and the harness's, not a side's): the variance of the
    runs' true values beyond each run's own sampling variance, Q and C summed over the groups
    with sum(k - 1) degrees of freedom. 0 without a group of 2 runs, or when the runs agree
    within their noise."""
    q = c = dof = 0.0
    for parts in groups:
        if len(parts) < 2:
            continue
        y = np.array([p.point(log) for p in parts])
        if not np.isfinite(y).all():
            continue
        w = 1.0 / np.maximum(np.array([p.var(log) for p in parts]), 1e-12)
        mean = float(w @ y / w.sum())
        q += float(w @ (y - mean) ** 2)
        c += float(w.sum() - (w @ w) / w.sum())
        dof += len(parts) - 1
    return max(0.0, (q - dof) / c) if c > 0 else 0.0


@dataclass
class Boot:
    """One side's bootstrap of one metric."""

    value: float  # the whole-sample value
    draws: Floats  # (R,) resampled values (NaN-free)
    n: int  # windows with data
    block: int
    # variance_correction for this series: the bootstrap variance times this is the estimate.
    var_factor: float = 1.0
    total: int | None = None  # replies (latency)
    # The range the statistic could take: what was observed (None: unbounded).
    bounds: tuple[float, float] | None = None
    # The percentile (0-100) this is, for the order-statistic condition; None: a mean or rate.
    percentile: float | None = None
    # Several runs pooled: each run's part (for the between-run variance); empty for one run.
    parts: list[RunPart] = field(default_factory=list)

    @property
    def blocks(self) -> float:
        """Independent blocks behind the estimate (n / b)."""
        return self.n / self.block

    def var(self, log: bool, tau2: float | None = None) -> float:
        """Corrected variance of the statistic (of its log with ``log``), plus tau^2/k over
        k pooled runs (``tau2``, else this side's own ``between_run_variance``)."""
        d = np.log(np.maximum(self.draws, 1e-9)) if log else self.draws
        within = float(np.var(d)) * self.var_factor if d.size else 0.0
        if not self.parts:
            return within
        if tau2 is None:
            tau2 = between_run_variance([self.parts], log)
        return within + tau2 / len(self.parts)

    def interval(self, log: bool, level: float = 0.95) -> list[float] | None:
        """``level`` t interval (df = blocks - 1) of the value from the corrected variance,
        clipped to ``bounds``; None when it cannot be computed (no draws, a non-positive value
        on the log scale, or too few replies for the percentile: ``replies_for_interval``)."""
        if not self.draws.size or (log and self.value <= 0):
            return None
        if self.percentile is not None and (self.total or 0) < replies_for_interval(
            self.percentile
        ):
            return None
        half = critical_value(1.0 - level, max(self.blocks - 1.0, 1.0)) * math.sqrt(self.var(log))
        if log:
            lo, hi = self.value * math.exp(-half), self.value * math.exp(half)
        else:
            lo, hi = self.value - half, self.value + half
        if self.bounds is not None:
            lo, hi = max(lo, self.bounds[0]), min(hi, self.bounds[1])
        return [lo, hi]


@dataclass
class Sample:
    """One side's per-window data for one metric, ready to resample."""

    rows: Floats  # (n, G) per-window histogram counts, or (n, 2) per-window [value, 1]
    per_window: Floats  # (n,) the metric in each window (its own series)
    read: Callable[[Floats], Floats]  # (R, G) weights @ rows -> (R,) statistic
    total: int | None = None  # replies (latency)
    bounds: tuple[float, float] | None = None  # what any read can give: the observed range
    percentile: float | None = None  # 0-100 for a percentile
    segments: tuple[int, ...] = ()  # windows of each pooled run, in order; () = one run

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])


def _segments(runs: Sequence[int] | None, keep: Floats) -> tuple[int, ...]:
    """Windows kept per run (in run order), from each window's run index."""
    if runs is None:
        return ()
    idx = np.asarray(runs, dtype=np.int64)[keep]
    counts = np.bincount(idx) if idx.size else np.zeros(0, dtype=np.int64)
    return tuple(int(c) for c in counts if c > 0)


def latency_sample(
    hists: Sequence[hdr.Histogram | None], stat: str, runs: Sequence[int] | None = None
) -> Sample | None:
    """A latency statistic (ms) over per-window histograms; None without data. ``runs``: each
    window's run (0, 0, ..., 1, 1, ...) when several runs' windows are pooled."""
    if not any(h is not None and h.get_total_count() > 0 for h in hists):
        return None
    pct: float | None = None
    if stat == "mean":
        grid, mat = hdr.stack(hists, highest=False)

        def read(m: Floats) -> Floats:
            return hdr.stacked_means(grid, m) / hdr.US_PER_MS
    else:
        p = pct = hdr.PERCENTILES[stat]
        grid, mat = hdr.stack(hists)

        def read(m: Floats) -> Floats:
            return hdr.stacked_percentiles(grid, m, p) / hdr.US_PER_MS

    keep = mat.sum(axis=1) > 0
    mat = mat[keep]
    seen = grid[mat.sum(axis=0) > 0] / hdr.US_PER_MS
    bounds = (float(seen.min()), float(seen.max()))
    return Sample(mat, read(mat), read, int(mat.sum()), bounds, pct, _segments(runs, keep))


def series_sample(values: Sequence[float], runs: Sequence[int] | None = None) -> Sample | None:
    """The mean of a per-window series (NaN windows left out); None without data."""
    x = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(x)
    x = x[keep]
    if x.size == 0:
        return None

    def read(m: Floats) -> Floats:
        return m[:, 0] / m[:, 1]  # the weighted sum over the windows drawn

    rows = np.column_stack([x, np.ones_like(x)])
    return Sample(
        rows, x, read, None, (float(x.min()), float(x.max())), None, _segments(runs, keep)
    )


def bootstrap(sample: Sample, r: float, seed: int) -> Boot:
    """Circular block bootstrap of one side, blocks sized for autocorrelation ``r`` (pooled
    runs: inside each run, ``segmented_block_weights``, with each run's part kept)."""
    n = sample.n
    segments = sample.segments or (n,)
    b = block_length_for(r, min(segments))
    rng = np.random.default_rng(seed)
    weights = segmented_block_weights(rng, segments, b, BOOTSTRAP_RESAMPLES)
    value = float(sample.read(sample.rows.sum(axis=0, keepdims=True))[0])
    draws = sample.read(weights @ sample.rows)
    parts = []
    if len(segments) > 1:
        start = 0
        for size in segments:
            rows, w = sample.rows[start : start + size], weights[:, start : start + size]
            part = sample.read(w @ rows)
            parts.append(
                RunPart(
                    float(sample.read(rows.sum(axis=0, keepdims=True))[0]),
                    part[np.isfinite(part)],
                    variance_correction(r, min(b, size), size),
                )
            )
            start += size
    return Boot(
        value,
        draws[np.isfinite(draws)],
        n,
        b,
        variance_correction(r, b, n),
        sample.total,
        sample.bounds,
        sample.percentile,
        parts,
    )


def boot_pair(
    run: Sample | None, base: Sample | None, seed: int, floor: Sequence[Sample | None] = ()
) -> tuple[Boot | None, Boot | None]:
    """Both sides' bootstraps with ONE autocorrelation: the largest measured (on both sides,
    and on the ``floor`` series: the family's p50, whose drift a noisy tail series such as
    per-window p99 hides under its sampling noise) plus its standard error (1/sqrt(n), n the
    shorter side's windows), at most 0.95. The sample autocorrelation of a short series is
    noisy and biased low, and an underestimate would make the blocks too short and p too
    small; erring long only widens the intervals."""
    sides = [s for s in (run, base) if s is not None]
    measured = [*sides, *(f for f in floor if f is not None)]
    r = max((lag1_autocorrelation(s.per_window) for s in measured), default=0.0)
    if sides:
        r = min(r + 1.0 / math.sqrt(max(min(s.n for s in sides), 1)), 0.95)
    return (
        None if run is None else bootstrap(run, r, seed),
        None if base is None else bootstrap(base, r, seed + 1000),
    )


def two_sided_p(z: float, df: float | None) -> float:
    """Two-sided p-value of a t statistic with ``df`` degrees of freedom (None: normal)."""
    if df is None:
        return math.erfc(abs(z) / math.sqrt(2.0))
    from scipy.stats import t

    return float(2.0 * t.sf(abs(z), df))


def critical_value(two_sided_alpha: float, df: float | None) -> float:
    """The critical value of a two-sided test at ``two_sided_alpha`` (t with ``df``, or normal)."""
    if df is None:
        from statistics import NormalDist

        return NormalDist().inv_cdf(1.0 - two_sided_alpha / 2.0)
    from scipy.stats import t

    return float(t.ppf(1.0 - two_sided_alpha / 2.0, df))


@dataclass
class Test:
    """A change test's outcome before the family-wise decision."""

    p: float
    effect: float  # the estimate on the test's scale (log ratio or difference)
    se: float
    log: bool  # effect is a log ratio
    # Degrees of freedom of the t reference (None: normal): the independent blocks behind the
    # bootstrap's standard error, so few blocks widen the test as they should.
    df: float | None = None


def boot_test(run: Boot, base: Boot, log: bool) -> Test:
    """t-test of the change: the two sides' bootstrap standard errors, with as many degrees of
    freedom as independent blocks (n/b a side, minus 2)."""
    log = log and run.value > 0 and base.value > 0
    effect = math.log(run.value / base.value) if log else run.value - base.value
    tau2 = between_run_variance([run.parts, base.parts], log)  # both sides' runs: one tau^2
    se = math.sqrt(run.var(log, tau2) + base.var(log, tau2))
    df = max(run.blocks + base.blocks - 2.0, 1.0)
    p = (1.0 if effect == 0 else 0.0) if se == 0 else two_sided_p(effect / se, df)
    return Test(p, effect, se, log, df)
