"""The whole runner through the CLI against a real (tiny) backend on loopback, external driver.

Exercises stack -> load + collectors -> analysis -> results.json + junit.xml + logs without
TorchServe or trained models. The verdict may be INVALID on a loaded machine (the generator's
self-check), so the test accepts exit 0 or 2 but checks everything else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_builders import served_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture
def backend_port() -> Iterator[int]:
    with served_port(HERE / "fake_backend.py") as port:
        yield port


@pytest.mark.slow
def test_run_on_external_stack(tmp_path: Path, backend_port: int) -> None:
    scenario = tmp_path / "ext.yaml"
    scenario.write_text(
        "name: ext\n"
        "stack:\n  driver: external\n  external:\n"
        f"    ws_url: ws://127.0.0.1:{backend_port}/api/v1/translate/stream\n"
        f"    http_url: http://127.0.0.1:{backend_port}\n"
        "workload: {sessions: 2, duration_s: 5, warmup_s: 1}\n"
        "gates: ['errors.total == 0', 'frame.latency_ms.p50 < 0.001']\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(tmp_path / "out"),
         "--set", "workload.sessions=3"],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    # The one run folder, and `latest` pointing at it.
    (run_dir,) = (p for p in (tmp_path / "out").iterdir() if not p.is_symlink())
    assert (tmp_path / "out" / "latest").resolve() == run_dir.resolve()
    doc = json.loads((run_dir / "results.json").read_text())
    # The impossible p50 gate fails (exit 1) unless the generator was INVALID (exit 2).
    expected = 2 if doc["verdict"] == "invalid" else 1
    assert proc.returncode == expected, proc.stdout + proc.stderr
    assert doc["verdict"] in ("failed", "invalid")
    assert doc["scenario"]["workload"]["sessions"] == 3
    assert doc["summary"]["frames"]["scheduled"] == 3 * 5 * 30 - 3 * 30
    assert doc["summary"]["errors"]["total"] == 0
    assert doc["summary"]["served_by"]["local"] == 1.0
    assert doc["summary"]["cpu"]["harness"]["mean_percent"] is not None
    assert doc["summary"]["generator"]["cpu_percent_mean"] is not None
    gates = {g["expr"]: g["passed"] for g in doc["gates"]}
    assert gates == {"errors.total == 0": True, "frame.latency_ms.p50 < 0.001": False}
    suite = ET.parse(run_dir / "junit.xml").getroot()
    assert len([c for c in suite.findall("testcase") if c.get("name") != "measurement valid"]) == 2
    assert (run_dir / "logs").is_dir()
