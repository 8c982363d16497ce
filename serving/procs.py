"""Ports and pids: the process primitives TorchServe's launcher (``serving/local.py``) needs.

They live here, below the harness, so ``serving/`` imports nothing of ``harness/``; the
harness's process toolkit (``harness.stack.procs``) builds on them and hands them on. A zombie
counts as gone (it only waits to be reaped), and a port counts as free the way Java's server
sockets would see it (``SO_REUSEADDR``).
"""

from __future__ import annotations

import socket
import time

import psutil

__all__ = ["free_port", "pid_alive", "port_is_free", "wait_gone"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``port`` now (SO_REUSEADDR, as Java's server sockets do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone: it only waits to be reaped)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait for ``pids`` to exit (polling every 50 ms); returns those still alive at the
    deadline (``timeout_s`` seconds from now)."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in pids if pid_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if pid_alive(p)]
    return left
