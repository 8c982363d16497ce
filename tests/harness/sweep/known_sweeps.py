"""Helpers of the sweep tests: the known-capacity server's URLs and sweep files for it.

A plain module (not conftest.py): another test folder's conftest.py would shadow the name
``conftest`` when both folders run in one session.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FPS = 5.0


def known_url(port: int, service_ms: float) -> str:
    """The WebSocket URL of one queue of the known server (its service time, nominal arrivals)."""
    return f"ws://127.0.0.1:{port}/stream?service_ms={service_ms}&fps={FPS:g}"


def known_sweep_text(
    port: int,
    services_ms: list[float],
    *,
    search: str = "{start: 2, max: 12, resolution: 0}",
    budget: str = "{max_runs: 30, max_minutes: 10}",
    extra_points: str = "",
    report: bool = False,
) -> str:
    """A sweep over the known server: one configuration per service time (its own queue).

    Constraint ``inference.latency_ms.p95 < 300``: below capacity a reply waits about one
    service time (sessions are not phase-aligned); above it the backlog grows by
    ``sessions * fps * service - 1`` seconds per second, past 300 ms within the 5 s run. The
    generator may be up to 100 ms late (``late_threshold_ms``) before a run is INVALID: the
    tests share two cores with other jobs, and a late send only adds to a latency far below
    the constraint.
    """
    points = "".join(
        f'    - {{stack.external.ws_url: "{known_url(port, s)}"}}\n' for s in services_ms
    )
    return (
        "name: known\n"
        "base:\n"
        "  name: known-base\n"
        "  stack:\n"
        "    driver: external\n"
        "    external:\n"
        f"      ws_url: ws://127.0.0.1:{port}/stream\n"
        f"      http_url: http://127.0.0.1:{port}\n"
        f"  workload: {{sessions: 1, fps: {FPS:g}, duration_s: 5, warmup_s: 2, "
        "late_threshold_ms: 100}\n"
        f"  report: {{enabled: {str(report).lower()}}}\n"
        "space:\n"
        "  points:\n"
        f"{points}{extra_points}"
        "load:\n"
        f"  search: {search}\n"
        "constraints:\n"
        "  - inference.latency_ms.p95 < 300\n"
        "  - errors.total == 0\n"
        "objective: {maximize: capacity}\n"
        f"budget: {budget}\n"
        "stack_start_s: 1\n"
    )
