"""``python -m backend_patch``: clear failures for bad settings and missing artifacts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from backend_server import REPO_ROOT, BackendStartError, run_backend


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend_patch", "--port", "0", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_setting_exits_2_naming_the_variable() -> None:
    proc = _run({"TORCHSERVE_ROLLOUT_PERCENT": "250"})
    assert proc.returncode == 2
    assert "TORCHSERVE_ROLLOUT_PERCENT" in proc.stderr


def test_help_names_the_options() -> None:
    proc = _run({}, "--help")
    assert proc.returncode == 0 and "--host" in proc.stdout and "--log-level" in proc.stdout


@pytest.mark.slow
def test_missing_model_fails_start_with_the_path(tmp_path) -> None:
    with pytest.raises(BackendStartError) as info, run_backend({"MODEL_DIR": str(tmp_path)}):
        pass
    assert "MODEL_DIR" in str(info.value) and str(tmp_path) in str(info.value)
