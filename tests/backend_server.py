"""Start the backend as a real uvicorn subprocess for tests and the harness.

    with run_backend({"USE_TORCHSERVE": "false"}) as backend:
        backend.base_url  # http://127.0.0.1:<free port>
        backend.ws_url    # ws://127.0.0.1:<port>/api/v1/translate/stream

The server binds port 0 itself (no race for a free port), its output goes to a log file, and it
is stopped (SIGTERM, then SIGKILL) on exit, also when the body raises or on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WS_PATH = "/api/v1/translate/stream"


@dataclass(frozen=True)
class BackendHandle:
    """Where a started backend listens, and its process."""

    base_url: str
    ws_url: str
    pid: int
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the backend's stdout+stderr."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class BackendStartError(RuntimeError):
    """The backend exited or did not become ready; the message carries its log tail."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def run_backend(
    env: dict[str, str] | None = None,
    *,
    timeout_s: float = 90.0,
    log_dir: Path | None = None,
    python: str = sys.executable,
) -> Iterator[BackendHandle]:
    """Start ``python -m backend_patch --port 0`` with ``env`` on top of os.environ.

    Returns once GET /ready answers 200; raises BackendStartError with the log tail otherwise.
    """
    tmp = None
    if log_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="signflow-backend-")
        log_dir = Path(tmp.name)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"backend-{os.getpid()}-{time.monotonic_ns()}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [python, "-m", "backend_patch", "--host", "127.0.0.1", "--port", "0"],
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the test run must not hit it before we stop it
        )
    try:
        handle = _wait_started(proc, log_path, timeout_s)
        yield handle
    finally:
        _stop(proc)
        if tmp is not None:
            tmp.cleanup()


def _wait_started(proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> BackendHandle:
    deadline = time.monotonic() + timeout_s
    urls: dict[str, object] | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendStartError(
                f"backend exited with status {proc.returncode} before it was ready:\n"
                + _tail(log_path)
            )
        if urls is None:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith('{"http_url"'):
                    urls = json.loads(line)
                    break
        if urls is not None and _ready(f"{urls['http_url']}/ready"):
            return BackendHandle(
                base_url=str(urls["http_url"]),
                # The start-up line gives the stream URL; older backends printed only the origin.
                ws_url=str(urls["ws_url"]).removesuffix(WS_PATH) + WS_PATH,
                pid=proc.pid,
                log_path=log_path,
            )
        time.sleep(0.05)
    raise BackendStartError(f"backend not ready after {timeout_s:.0f} s:\n" + _tail(log_path))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
