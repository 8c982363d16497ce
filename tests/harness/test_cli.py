"""The CLI's exit codes and outputs (real subprocesses of `python -m harness`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_results import make_doc

REPO = Path(__file__).resolve().parents[2]


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_invalid_scenario_exits_2_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nworkload:\n  sessions: 2\n  duration_s: 5\n  fsp: 30\n")
    for command in ("validate", "run"):
        proc = harness(command, str(bad), "--out", str(tmp_path / "out")) if command == "run" \
            else harness(command, str(bad))  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "bad.yaml:5:" in proc.stderr and "did you mean 'fps'" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_validate_ok_and_set(tmp_path: Path) -> None:
    proc = harness("validate", str(REPO / "scenarios" / "baseline.yaml"),
                   "--set", "workload.sessions=3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3 sessions" in proc.stdout


def test_compare_table_and_fail_on_worse(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    make_doc(tmp_path / "a")
    new = tmp_path / "a" / "results.json"
    base_doc = json.loads(new.read_text())
    base_doc["summary"]["errors"]["total"] = 0
    doc = json.loads(new.read_text())
    doc["summary"]["errors"]["total"] = 5
    new.write_text(json.dumps(doc))
    base = tmp_path / "base.json"
    base.write_text(json.dumps(base_doc))
    proc = harness("compare", str(new), str(base))
    assert proc.returncode == 0, proc.stderr
    assert "errors.total" in proc.stdout and "WORSE" in proc.stdout
    assert harness("compare", str(new), str(base), "--fail-on-worse").returncode == 1
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{}")
    proc = harness("compare", str(bogus), str(base))
    assert proc.returncode == 2 and "bogus.json" in proc.stderr
