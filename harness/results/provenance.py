"""Provenance of a run: code, packages, model archives, configs (secrets masked), hardware."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.redact import MASK, mask
from harness.results.description import Describable
from harness.results.description import sha256_file as sha256_file

__all__ = ["MASK", "collect_provenance", "mask", "sha256_file"]

PACKAGES = (
    "torch", "torchserve", "torch-model-archiver", "fastapi", "uvicorn", "websockets", "numpy",
    "aiohttp", "hdrhistogram", "pydantic", "psutil", "nvidia-ml-py", "scipy", "signflow-harness",
)  # fmt: skip
REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def package_versions() -> dict[str, str | None]:
    """Installed versions (None when a package is absent)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_name() -> str | None:
    """Name of GPU 0 through NVML, or None when no NVIDIA GPU/driver is present."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() < 1:
                return None
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            return name.decode() if isinstance(name, bytes) else str(name)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library, no device: all mean "no GPU" here
        return None


def collect_provenance(stack: Describable | None) -> dict[str, Any]:
    """The ``provenance`` block of results.json; ``stack.describe()`` (a
    :class:`~harness.results.description.StackDescription`) supplies configs/archives."""
    configs: dict[str, Any] = {}
    archives: dict[str, Any] = {}
    if stack is not None:
        try:
            described: dict[str, Any] = dict(stack.describe())
        except Exception as exc:  # provenance must never break a finished run
            described = {"describe_error": f"{type(exc).__name__}: {exc}"}
        archives = dict(described.pop("model_archives", None) or {})
        configs = mask(described)
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "packages": package_versions(),
        "model_archives": archives,
        "configs": configs,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        # A hash, not the name: results get shared, host names can be sensitive.
        "hostname_hash": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
        "os": f"{platform.system()} {platform.release()}",
    }
