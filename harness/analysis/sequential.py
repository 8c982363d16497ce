"""Anytime-valid statistics: confidence sequences for shares and quantiles.

A confidence sequence (CS) at level ``1 - alpha`` is a sequence of intervals that holds the true
value at EVERY sample size at once with probability ``>= 1 - alpha``: a judge may look after each
new observation (here: every second) and stop at any look it likes, and the chance that any of
its looks excludes the truth stays ``<= alpha``. Fixed-sample intervals looked at 60 times do not
have that property (their error rate grows with the looks).

Construction (the mixture sequential probability ratio test): for Bernoulli observations
``X_1..X_t`` with success probability ``p``, ``S_t = sum X_i``, and a Beta(a, b) prior,

    M_t(p0) = B(a + S_t, b + t - S_t) / B(a, b) / (p0^S_t (1 - p0)^(t - S_t))

is a non-negative martingale with mean 1 when ``p = p0`` (the Bayes factor of the beta-binomial
mixture against ``p0``), so by Ville's inequality ``P(exists t: M_t(p) >= 1/alpha) <= alpha``.
The CS for ``p`` is ``{p0 : M_t(p0) < 1/alpha}``. The judge needs one side at a time (a lower
bound to fail a criterion, an upper one to pass it), so the prior is truncated to one side of
``p0`` (still a mixture of likelihood ratios, each a supermartingale under any ``p`` on the
other side): about half the evidence a two-sided mixture needs (Robbins 1970, "Statistical
methods related to
the law of the iterated logarithm"; Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Stat. 49(2), section 3).

Quantiles (Howard & Ramdas 2022, "Sequential estimation of quantiles with applications to
A/B-testing and best-arm identification", Bernoulli 28(3)): for a continuous distribution F and
its ``p``-quantile ``q``, the indicators ``X_i <= q`` are Bernoulli(p), so the set of ``q`` whose
count ``#{X_i <= q}`` the test of ``p0 = p`` does not reject is a CS for the quantile; with the
order statistics the bounds are order statistics at the counts the tests reject
(:func:`bound_counts`, :func:`quantile_bounds`).

Both need observations that are independent (or at least a martingale difference sequence
given the past); the rollout judge feeds them inference replies and frames thinned to one per
session every 0.1 s (harness/analysis/rollout.py). ``benchmarks/rollout_judge.py`` measures the
false-abort rate on simulated A/A cohorts judged every second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import betainc, betaincc, betaln

Floats = npt.NDArray[np.float64]
Side = Literal["above", "below"]


def quantile_prior(p: float) -> tuple[float, float]:
    """The Beta(a, b) prior used to test a ``p``-quantile: mean ``p``, smaller parameter 1.

    Centred on the null so the mixture spends its evidence near it (a uniform prior needs ~100
    observations more to bound a p95 from above). Any fixed prior keeps the bounds valid."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    return (p / (1.0 - p), 1.0) if p >= 0.5 else (1.0, (1.0 - p) / p)


def log_evidence(
    successes: int | npt.NDArray[np.int64],
    trials: int,
    p0: float,
    prior: tuple[float, float],
    side: Side,
) -> float | Floats:
    """``log M_t(p0)`` of the one-sided beta-binomial mixture (module docstring): the prior
    truncated to ``p > p0`` (``side="above"``: evidence that the share is above ``p0``) or to
    ``p < p0`` (``"below"``). The truncated mass is the regularised incomplete beta function,
    so ``M = B(a+S, b+t-S) / B(a, b) * P_post(side) / P_prior(side) / L(p0)``. Vectorised over
    ``successes``; ``p0`` in (0, 1)."""
    a, b = prior
    s = np.asarray(successes, dtype=np.float64)
    t = trials - s
    if side == "above":
        post, norm = betaincc(a + s, b + t, p0), betaincc(a, b, p0)
    else:
        post, norm = betainc(a + s, b + t, p0), betainc(a, b, p0)
    with np.errstate(divide="ignore"):
        out = (
            betaln(a + s, b + t)
            - betaln(a, b)
            + np.log(post)
            - math.log(norm)
            - s * math.log(p0)
            - t * math.log1p(-p0)
        )
    return float(out) if out.ndim == 0 else np.asarray(out, dtype=np.float64)


@lru_cache(maxsize=65536)
def bound_counts(trials: int, p: float, alpha: float) -> tuple[int, int]:
    """``(k_below, k_above)`` for ``trials`` observations of a ``p``-quantile at level
    ``alpha`` (prior :func:`quantile_prior`): the largest count ``#{X <= q}`` at which the
    one-sided test says the share is below ``p`` (-1: none), and the smallest count at which
    it says above (``trials + 1``: none). Evidence is monotone in the count, so these are
    thresholds."""
    bar = math.log(1.0 / alpha)
    prior = quantile_prior(p)

    def rejects(count: int, side: Side) -> bool:
        return float(log_evidence(count, trials, p, prior, side)) >= bar

    # "below" evidence falls as the count grows, "above" evidence rises: binary searches
    # (O(log n) evaluations a look instead of n).
    k_below = -1
    if rejects(0, "below"):
        lo, hi = 0, trials  # invariant: rejects(lo); the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if rejects(mid, "below") else (lo, mid - 1)
        k_below = lo
    k_above = trials + 1
    if rejects(trials, "above"):
        lo, hi = 0, trials  # invariant: rejects(hi); the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if rejects(mid, "above") else (mid + 1, hi)
        k_above = lo
    return k_below, k_above


def quantile_bounds(
    samples: Sequence[float] | Floats, p: float, alpha_lo: float, alpha_hi: float
) -> tuple[float, float]:
    """Anytime-valid bounds on the ``p``-quantile of ``samples``' distribution: ``lo`` (below
    the quantile at every look with probability >= 1 - ``alpha_lo``) and ``hi`` (above it,
    1 - ``alpha_hi``); ``-inf``/``inf`` where the data cannot bound it yet.

    ``lo = X_(k+1)`` for the largest count ``k`` the "below" test rejects: every ``x`` under it
    has ``#{X <= x} <= k``, evidence that ``F(x) < p``, i.e. the quantile is above ``x``;
    ``hi = X_(k)`` for the smallest count ``k`` the "above" test accepts as evidence."""
    x = np.asarray(samples, dtype=np.float64)
    t = int(x.size)
    if t == 0:
        return -math.inf, math.inf
    k_lo = bound_counts(t, p, alpha_lo)[0]
    k_hi = bound_counts(t, p, alpha_hi)[1]
    kth = [k for k in (k_lo, k_hi - 1) if 0 <= k < t]
    if kth:
        x = np.partition(x, kth)  # only two order statistics are needed: O(n), no sort
    lo = float(x[k_lo]) if k_lo >= 0 else -math.inf
    hi = float(x[k_hi - 1]) if k_hi <= t else math.inf
    return lo, hi


def quantile_cs(samples: Sequence[float] | Floats, p: float, alpha: float) -> tuple[float, float]:
    """Two-sided anytime-valid ``1 - alpha`` interval for the ``p``-quantile (``alpha/2`` a
    side, :func:`quantile_bounds`)."""
    return quantile_bounds(samples, p, alpha / 2.0, alpha / 2.0)


def share_bounds(
    successes: int, trials: int, alpha_lo: float, alpha_hi: float
) -> tuple[float, float]:
    """Anytime-valid bounds on a Bernoulli share from ``successes`` of ``trials`` (uniform
    prior): ``lo`` at level ``alpha_lo``, ``hi`` at ``alpha_hi``; ``(0, 1)`` without trials."""
    if trials <= 0:
        return 0.0, 1.0
    prior = (1.0, 1.0)
    bar = math.log(1.0 / alpha_lo), math.log(1.0 / alpha_hi)

    def above(p0: float) -> float:
        return float(log_evidence(successes, trials, p0, prior, "above")) - bar[0]

    def below(p0: float) -> float:
        return float(log_evidence(successes, trials, p0, prior, "below")) - bar[1]

    eps = 1e-12
    mle = successes / trials
    mid = min(max(mle, 2 * eps), 1 - 2 * eps)
    lo = 0.0 if successes == 0 or above(eps) < 0 or above(mid) >= 0 else brentq(above, eps, mid)
    hi = (
        1.0
        if successes == trials or below(1 - eps) < 0 or below(mid) >= 0
        else brentq(below, mid, 1 - eps)
    )
    return float(lo), float(hi)


def share_cs(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Two-sided anytime-valid ``1 - alpha`` interval for a share (``alpha/2`` a side)."""
    return share_bounds(successes, trials, alpha / 2.0, alpha / 2.0)


def units_to_bound_above(p: float, alpha: float) -> int:
    """The fewest observations that can bound a ``p``-quantile from above at level ``alpha``
    (all of them below the bound, ``S = n``). The planner's minimum data
    (harness.scenario.evidence.min_units_above computes the same in closed form)."""
    n = 1
    while bound_counts(n, p, alpha)[1] > n:
        n += 1
        if n > 1_000_000:  # pragma: no cover - alpha is validated to be >= 1e-6
            raise ValueError(f"alpha {alpha} is too small to ever bound the p{p * 100:g}")
    return n


def units_to_bound_below(p: float, alpha: float) -> int:
    """The fewest observations that can bound a ``p``-quantile from below (``S = 0``)."""
    n = 1
    while bound_counts(n, p, alpha)[0] < 0:
        n += 1
        if n > 1_000_000:  # pragma: no cover
            raise ValueError(f"alpha {alpha} is too small to ever bound the p{p * 100:g}")
    return n


@dataclass(frozen=True)
class Interval:
    """A confidence-sequence interval in the criterion's unit, with its sample size."""

    lo: float
    hi: float
    n: int

    def finite(self) -> list[float | None]:
        """``[lo, hi]`` with the unbounded ends as None (JSON has no infinity)."""
        return [None if math.isinf(v) else v for v in (self.lo, self.hi)]
