"""monitoring/: the production rollout's Prometheus rules, checked and unit-tested by promtool.

promtool is Debian's (package ``prometheus``, installed by ``make test`` through
scripts/ensure_prometheus.sh). The unit tests themselves live in monitoring/tests/*.test.yml;
here they run, and their coverage is checked: every alert has a case where it fires and one
where it stays quiet, and every backend series the rules read is one the backend exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from backend_patch.app.metrics import FRAME_LATENCY_BUCKETS, BackendMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules"
TESTS = ROOT / "monitoring" / "tests"


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: run scripts/ensure_prometheus.sh (Debian: prometheus)")
    return tool


def _rule_files() -> list[Path]:
    files = sorted(RULES.glob("*.yml"))
    assert files, f"no rule files under {RULES}"
    return files


def _rules() -> list[dict]:
    return [
        rule
        for path in _rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        [_promtool(), "check", "rules", *map(str, _rule_files())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_pass() -> None:
    tests = sorted(TESTS.glob("*.test.yml"))
    assert tests
    proc = subprocess.run(
        [_promtool(), "test", "rules", *(t.name for t in tests)],
        cwd=TESTS, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS.glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"
    assert (firing | quiet) <= alerts, "tests name alerts the rules do not define"


def test_rules_read_only_series_the_backend_exports() -> None:
    """A renamed backend metric would leave a rule silently empty: every signflow_* series a
    rule reads must be in the backend's exposition (with both cohorts' route label)."""
    metrics = BackendMetrics()
    # Error series appear with their first error (the reasons are open-ended): one per cohort.
    for route in ("torchserve", "local"):
        metrics.errors.labels(route, "invalid_frame").inc()
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    used = {
        name
        for rule in _rules()
        for name in re.findall(r"(?<![:\w])signflow_[a-z_]+\b(?!:)", rule["expr"])
    }
    assert used, "the rules read no backend series"
    for name in used:
        assert name in exported, f"{name}: not exported by backend_patch/app/metrics.py"
        assert "route" in exported[name], f"{name}: no route (cohort) label"


def test_the_slo_edge_is_a_bucket_edge() -> None:
    """The latency SLI counts frames over 30 ms from the le="0.03" bucket: it must exist."""
    edges = set(re.findall(r'le="([0-9.]+)"', " ".join(r["expr"] for r in _rules())))
    assert edges == {"0.03"}
    assert 0.03 in FRAME_LATENCY_BUCKETS


def test_fallback_alert_uses_the_rollout_judges_bound() -> None:
    """The production alert and the harness's canary judge agree on what is too many fallbacks."""
    canary = yaml.safe_load((ROOT / "scenarios" / "canary.yaml").read_text())
    bound = canary["rollout"]["judge"]["max_fallback_share"]
    rule = next(r for r in _rules() if r.get("alert") == "SignflowFallbackShareHigh")
    assert rule["expr"].strip().endswith(f"> {bound}")
