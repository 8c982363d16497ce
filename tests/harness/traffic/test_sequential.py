"""Anytime-valid confidence sequences (harness/analysis/sequential.py) and the evidence
planner (harness/scenario/evidence.py) against closed forms; validate's rollout warnings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.sequential import (
    bound_counts,
    quantile_cs,
    quantile_prior,
    share_cs,
    units_to_bound_above,
    units_to_bound_below,
)
from harness.scenario import load_scenario
from harness.scenario.evidence import (
    _prior,
    cohort_session_seconds,
    criterion_alpha,
    min_units_above,
    min_units_below,
    plan_rollout,
    sign_rate,
)

REPO = Path(__file__).resolve().parents[3]


def test_quantile_cs_holds_at_every_look_at_once() -> None:
    """200 seeded sequences of 300 draws, looked at after every draw: the share of sequences
    whose interval EVER misses the true median stays under alpha (0.1), while a fixed-sample
    95 % interval looked at as often misses far more."""
    alpha, misses = 0.1, 0
    rng = np.random.default_rng(11)
    for _ in range(200):
        x = rng.lognormal(0.0, 1.0, 300)  # median 1.0
        for t in range(5, 301, 5):
            lo, hi = quantile_cs(x[:t], 0.5, alpha)
            if not lo <= 1.0 <= hi:
                misses += 1
                break
    assert misses / 200 <= alpha


def test_share_cs_holds_at_every_look_at_once() -> None:
    alpha, misses = 0.1, 0
    rng = np.random.default_rng(12)
    for _ in range(200):
        x = rng.random(300) < 0.2
        s = np.cumsum(x)
        for t in range(10, 301, 10):
            lo, hi = share_cs(int(s[t - 1]), t, alpha)
            if not lo <= 0.2 <= hi:
                misses += 1
                break
    assert misses / 200 <= alpha


def test_share_bound_closed_form_at_zero() -> None:
    # S = 0 of n, uniform prior truncated below p: M(p) = (1 - (1-p)^(n+1)) / ((n + 1) p (1-p)^n)
    n, alpha = 100, 0.01
    lo, hi = share_cs(0, n, 2 * alpha)
    assert lo == 0.0
    m = (1 - (1 - hi) ** (n + 1)) / ((n + 1) * hi * (1 - hi) ** n)
    assert m == pytest.approx(1 / alpha, rel=1e-6)
    assert share_cs(0, 0, alpha) == (0.0, 1.0)


def test_minimum_counts_closed_form_agree() -> None:
    """The planner's closed forms (scenario layer) and the judge's counts agree. The p50 one
    by hand: uniform prior on (1/2, 1], all n observations below the bound:
    M = 2 (1 - 2^-(n+1)) / (n + 1) / 2^-n >= 1/alpha."""
    for p in (0.5, 0.95, 0.99):
        assert _prior(p) == quantile_prior(p)
        for alpha in (0.05, 0.01 / 4, 0.01 / 9):
            assert min_units_above(p, alpha) == units_to_bound_above(p, alpha)
            assert min_units_below(p, alpha) == units_to_bound_below(p, alpha)

    def m(n: int) -> float:
        return 2 * (1 - 2.0 ** -(n + 1)) / (n + 1) * 2.0**n

    alpha = 0.01 / 4
    n = min_units_above(0.5, alpha)
    assert m(n) >= 1 / alpha > m(n - 1)
    assert n == 12
    assert bound_counts(n, 0.5, alpha)[1] == n  # only "all below" bounds it yet


def test_cohort_session_seconds_closed_form() -> None:
    # From 0 % to 10 % at 2/s, 10 s sessions: 0.2 u^2 / 2 session-seconds by u <= 10 s.
    assert cohort_session_seconds(2.0, 10.0, 0.0, 0.1, 0.0, 10.0) == pytest.approx(10.0)
    # ...then 2 sessions stream at once: + 2 per second.
    assert cohort_session_seconds(2.0, 10.0, 0.0, 0.1, 0.0, 15.0) == pytest.approx(20.0)
    # From 10 % to 50 %: the old 10 % fade out as the new 50 % come in.
    got = cohort_session_seconds(2.0, 10.0, 0.1, 0.5, 1.0, 11.0)
    grid = np.arange(1.0005, 11, 0.001)
    want = sum(0.1 * 2 * max(10 - u, 0) + 0.5 * 2 * min(u, 10) for u in grid) * 0.001
    assert got == pytest.approx(want, rel=1e-3)


def test_plan_of_the_canary() -> None:
    sc = load_scenario(REPO / "scenarios" / "canary.yaml")
    plans = plan_rollout(sc)
    assert plans is not None and [p.percent for p in plans] == [10, 50, 100]
    first = plans[0]
    # 2 TorchServe sessions at 0.2 new ones per second: 10 s.
    assert first.sessions_s == pytest.approx(10.0, abs=0.11)
    alpha = criterion_alpha(sc.rollout)  # type: ignore[arg-type]
    assert alpha == pytest.approx(0.05 / 4)
    need = {n.criterion: n for n in first.needs}
    inf = need["inference.p50 latency"]
    assert inf.units == 9  # 2 (1 - 2^-10) / 10 * 2^9 = 102 >= 1/alpha = 80 > 57 (n = 8)
    # 9 classifications at sign_rate per session-second; from 1 s, 0.2 (u^2 - 1) / 2
    # session-seconds while u <= 10 s (sessions last 10 s), then 2 more each second.
    need_ss = 9 / sign_rate(sc)
    u = math.sqrt(2 * need_ss / 0.2 + 1.0)
    if u > 10.0:
        u = 10.0 + (need_ss - 0.2 * (100 - 1) / 2) / 2.0
    assert inf.seconds == pytest.approx(u, abs=0.11)
    assert first.ready_s is not None and first.ready_s < sc.rollout.budget_s  # type: ignore[union-attr]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


ROLLOUT = """\
name: thin
stack: {driver: local, use_torchserve: true%s}
workload:
  arrivals: {rate_per_s: %s, session_length: {distribution: fixed, seconds: 10}, seed: 1}
  duration_s: 60
  trace: {synthetic: {seed: 1, signs: 20}}
rollout:
  steps: [10, 100]
  start_s: 5
  hold_s: 12
"""


def test_validate_warns_of_a_rollout_from_a_share_above_zero(tmp_path: Path) -> None:
    warnings: list[str] = []
    load_scenario(_write(tmp_path, ROLLOUT % ("", "2")), warnings=warnings)
    (w,) = [w for w in warnings if "rollout_percent" in w]
    assert "starts from 100 % (the default is 100)" in w and "stack.rollout_percent: 0" in w
    warnings.clear()
    load_scenario(_write(tmp_path, ROLLOUT % (", rollout_percent: 0", "2")), warnings=warnings)
    assert not [w for w in warnings if "rollout_percent" in w]


def test_validate_warns_when_a_step_cannot_reach_its_minimum_data(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = _write(tmp_path, ROLLOUT % (", rollout_percent: 0", "0.1"))
    load_scenario(path, warnings=warnings)
    (w,) = [w for w in warnings if "minimum data" in w]
    # names the file, the line and the field, the step, and what it lacks
    assert f"{path}:10" in w and "rollout.hold_s" in w
    assert "step 1 (10 %)" in w and "classifications" in w and "INCONCLUSIVE" in w
    warnings.clear()
    load_scenario(REPO / "scenarios" / "canary.yaml", warnings=warnings)
    assert warnings == []


def test_validate_names_the_steps_and_the_rollout_gate() -> None:
    import subprocess
    import sys

    for name, gates in (("canary.yaml", "2 gates"), ("rollout-abort.yaml", "1 gate")):
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "validate", str(REPO / "scenarios" / name)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"{gates} + rollout 10 -> 50 -> 100 % from t=4 s" in proc.stdout
        assert "judged every 1 s for up to 36 s) and its gate 'rollout completes'" in proc.stdout
        assert proc.stderr == ""  # the shipped rollouts validate without a warning
