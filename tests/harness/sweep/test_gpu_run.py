"""scripts/gpu-run.sh and its kit's dependency list (scripts/gpu_deps.py), tested here.

The end-to-end test runs the script in its CPU mode (CUDA absent): quick mode (GPU_RUN_QUICK=1)
has short runs and 2-run budgets, so both sweeps start real stacks. By default it uses the
repository's venv and Java; with GPU_RUN_TEST_KIT=DIR (a kit for this machine's Python:
``GPU_KIT_PYTHON=3.11 scripts/gpu-kit.sh DIR``, which downloads ~60 MiB) it runs as on the CUDA
machine instead: on a stand-in of that machine's Python (fake_device.py: torch and the
preinstalled packages, nothing else of the project's), installing the kit's wheels and
unpacking its Java.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_device import build as build_fake_device

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))

from gpu_deps import NOT_USED, PREINSTALLED  # noqa: E402


@pytest.fixture(scope="module")
def fake_device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a stand-in for the CUDA machine (torch and its image's packages only)."""
    return build_fake_device(tmp_path_factory.mktemp("device") / "venv")


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _gpu_run(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-run.sh"), str(out)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_kit_carries_what_the_cuda_machine_lacks_at_the_locked_versions() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_deps.py"), "kit", "--python-version", "3.12"],
        capture_output=True,
        text=True,
        check=True,
    )
    kit = dict(line.split("==") for line in proc.stdout.split())
    assert {"torchserve", "torch-model-archiver", "fastapi", "uvicorn", "pydantic"} <= set(kit)
    # Neither what the machine has (torch, scipy, matplotlib and contourpy among them) nor what
    # a GPU run never imports (locust and its gevent, docker).
    assert not set(kit) & PREINSTALLED
    assert not set(kit) & ({"gevent", "flask", "pyzmq", "websocket-client"} | set(NOT_USED))
    pins = _lock_pins()
    assert {name: pins.get(name) for name in kit} == kit


def test_check_names_what_a_bare_machine_lacks(fake_device: Path) -> None:
    script = REPO / "scripts" / "gpu_deps.py"
    here = subprocess.run([sys.executable, str(script), "check"], capture_output=True, text=True)
    assert here.returncode == 0, here.stderr
    there = subprocess.run(
        [str(fake_device), str(script), "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert there.returncode == 1
    for name in ("torchserve", "torch-model-archiver", "fastapi", "uvicorn", "structlog"):
        assert f"gpu_deps: {name}: not installed" in there.stderr
    assert "torch:" not in there.stderr and "scipy" not in there.stderr


def test_gpu_run_without_a_kit_stops_before_starting_anything(
    tmp_path: Path, fake_device: Path
) -> None:
    out = tmp_path / "out"
    proc = _gpu_run(out, PYTHON=str(fake_device), GPU_KIT=str(tmp_path / "no-kit"))
    assert proc.returncode == 3, proc.stderr
    assert f"lacks packages and there is no kit at {tmp_path / 'no-kit'}" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu-run.log"]


@pytest.mark.slow
def test_gpu_run_script_in_cpu_mode(tmp_path: Path) -> None:
    out = tmp_path / "gpu-out"
    kit = os.environ.get("GPU_RUN_TEST_KIT")
    env = {"GPU_RUN_QUICK": "1"}
    if kit:  # as on the CUDA machine: its python, the kit's wheels and Java
        python = build_fake_device(tmp_path / "device")
        env |= {"PYTHON": str(python), "GPU_KIT": kit}
    proc = _gpu_run(out, **env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "cpu"
    curve = summary["batch_curve"]["curve"]
    assert [r["batch_size"] for r in curve] == [1, 2, 4, 8, 16, 32, 64]
    assert all(r["samples_per_s"] > 0 for r in curve)
    assert set(summary["sweeps"]) == {"batching", "capacity"}
    for name, s in summary["sweeps"].items():
        sweep_dir = out / Path(s["sweep"]).parent
        assert (sweep_dir / "sweep.html").is_file(), name
        assert s["runs"] <= 2 and s["stack_starts"] >= 1
    log = (out / "gpu-run.log").read_text()
    assert "mode cpu" in log
    if kit:
        assert "kit wheels into" in log and "java-17-jre/bin/java, openjdk version" in log
