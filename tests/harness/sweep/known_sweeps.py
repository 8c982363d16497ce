"""Helpers of the sweep tests: the known-capacity server's URLs and sweep files for it.

A plain module (not conftest.py): another test folder's conftest.py would shadow the name
``conftest`` when both folders run in one session.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FPS = 5.0

# Service times whose limit sits 0.9 session above an integer n: n sessions load the queue to
# at most 87 % (a start-up backlog drains within the 2 s warm-up), n + 2 sessions overload it by
# 1.1 sessions and the backlog grows by >= 160 ms per second, which the 300 ms constraint sees
# within the 5 s run. n + 1 (2 % over) may pass either way: the target is the knee within one
# session.
SLOW_MS, FAST_MS = 1000 / (5 * 4.9), 1000 / (5 * 6.9)  # capacity 4 and 6 at 5 fps
KNEES = (4, 6)


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
    duration_s: float = 5,
    warmup_s: float = 2,
) -> str:
    """A sweep over the known server: one configuration per service time (its own queue).

    Constraint ``inference.latency_ms.p95 < 300``: below capacity a reply waits about one
    service time (sessions are not phase-aligned); above it the backlog grows by
    ``sessions * fps * service - 1`` seconds per second, past 300 ms within the 5 s run. The
    generator may be up to 100 ms late (``late_threshold_ms``) before a run is INVALID: the
    tests share two cores with other jobs, and a late send only adds to a latency far below
    the constraint. The 5 s runs after a 2 s warm-up are what the knee needs; a test that checks
    the search's bookkeeping rather than where the knee lies may pass shorter ones.
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
        f"  workload: {{sessions: 1, fps: {FPS:g}, duration_s: {duration_s:g}, "
        f"warmup_s: {warmup_s:g}, "
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
