"""Without a Docker engine the compose driver says what is missing and the run exits 3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_docker_engine_is_exit_3_with_a_hint(tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-such-docker.sock")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            str(REPO / "scenarios" / "fallback-kill.yaml"),
            "--set",
            "stack.driver=compose",
            "--out",
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "docker" in proc.stderr.lower() and "install" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
