"""``python -m backend_patch --host 127.0.0.1 --port 8000 [--log-level info]``.

Serves the backend with uvicorn; every other setting comes from the environment (see
app/config.py). ``--port 0`` picks a free port. Once the socket is bound, one JSON line
``{"http_url", "ws_url", "pid"}`` goes to stdout so that callers know where it listens;
``ws_url`` is the full URL of the stream endpoint (``.../api/v1/translate/stream``).

``BACKEND_WORKERS`` > 1 runs that many worker processes (uvicorn's supervisor, spawned) on the
one listening socket, the kernel spreading connections over them; ``pid`` is then the
supervisor's, which stops the workers on SIGINT/SIGTERM and replaces one that dies. What the
workers must agree on lives in one private directory made here (app/shared.py): metrics in
prometheus_client's multiprocess mode, the live rollout percent, the key renewal lock. Per
process, deliberately: the hedge and circuit breaker state (each process judges TorchServe on
its own calls and connections; sharing it would put cross-process synchronisation on every
window, and each process still opens its circuit within TORCHSERVE_BREAKER_FAILURES of its own
failures), the hedge budget (a ratio of each process's windows, so the total stays the same
ratio; the burst is per process) and the session ids in logs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn

from .app.config import Settings, SettingsError, load_settings

STREAM_PATH = "/api/v1/translate/stream"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m backend_patch", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port, 0 = any free port")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="overrides LOG_LEVEL",
    )
    return p.parse_args(argv)


def uvicorn_config(app: object, settings: Settings, **extra: object) -> uvicorn.Config:
    """The uvicorn configuration of the backend: its protocols, limits and deadlines."""
    from .app.server_protocols import Deadlines, SignflowHttpProtocol, SignflowWebSocketProtocol

    deadlines = Deadlines(
        handshake_s=settings.handshake_timeout_s,
        send_s=settings.ws_send_timeout_s,
        close_s=settings.ws_close_timeout_s,
    )
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        http=functools.partial(SignflowHttpProtocol, deadlines=deadlines),  # type: ignore[arg-type]
        ws=functools.partial(SignflowWebSocketProtocol, deadlines=deadlines),  # type: ignore[arg-type]
        # The protocol layer refuses bigger messages (close 1009) before they are buffered whole.
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        **extra,  # type: ignore[arg-type]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the backend until SIGINT/SIGTERM; return the exit status."""
    args = _parse(argv)
    overrides = {"log_level": args.log_level} if args.log_level else {}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .app.main import create_app

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"error: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(
        json.dumps(
            {
                "http_url": f"http://{host}:{port}",
                "ws_url": f"ws://{host}:{port}{STREAM_PATH}",
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )
    if settings.backend_workers > 1:
        return _run_workers(settings, sock)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    server.run(sockets=[sock])
    # uvicorn swallows a failed start-up (e.g. missing model); tell the caller.
    return 0 if server.started else 3


def _run_workers(settings: Settings, sock: socket.socket) -> int:
    """BACKEND_WORKERS processes on ``sock`` with their shared directory; until SIGINT/SIGTERM."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from .app.shared import MULTIPROC_ENV, RolloutCell

    shared = tempfile.mkdtemp(prefix="signflow-backend-shared-")
    try:
        os.environ[MULTIPROC_ENV] = shared  # inherited by the spawned workers
        RolloutCell.create(Path(shared), settings.torchserve_rollout_percent)
        # Spawned workers import the app factory by name and read the same environment.
        config = uvicorn_config(
            "backend_patch.app.main:create_app",
            settings,
            factory=True,
            workers=settings.backend_workers,
        )
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    # A worker that could not start (e.g. missing model) stops the supervisor: say so, as the
    # one-process path does.
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
