"""Issue 10 item 8: a restarted compose TorchServe gets new host ports; the collector asks the
stack for its URLs at each scrape and follows, counting the new process from zero.

Two real HTTP servers on loopback stand for the container before and after its restart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest

from harness.collectors import PrometheusCollector
from harness.stack import StackEndpoints


class _Server:
    """One TorchServe metrics endpoint: a real registry with its request counter."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ts_inference_requests", "", ["model_name", "model_version"], registry=self.registry
        )
        self.url = ""

    def serve(self, n: int) -> None:
        self.requests.labels("signflow", "default").inc(n)


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[_Server, _Server]]:
    servers = (_Server(), _Server())
    runners = []
    for server in servers:

        async def handle(_: web.Request, s: _Server = server) -> web.Response:
            return web.Response(body=generate_latest(s.registry), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
        runners.append(runner)
    try:
        yield servers
    finally:
        for runner in runners:
            await runner.cleanup()


def _endpoints(metrics_url: str) -> StackEndpoints:
    return StackEndpoints(
        ws_url="ws://127.0.0.1:1/ws",
        http_url="http://127.0.0.1:1",
        backend_metrics_url="http://127.0.0.1:1/metrics",
        torchserve_metrics_url=metrics_url,
        torchserve_metrics_urls=(metrics_url,),
    )


async def test_collector_follows_the_stack_endpoints_after_a_restart(
    two_servers: tuple[_Server, _Server],
) -> None:
    before, after = two_servers
    current = {"endpoints": _endpoints(before.url)}  # what the stack's property returns now
    collector = PrometheusCollector(
        "torchserve", lambda: current["endpoints"].all_torchserve_metrics_urls()
    )
    before.serve(100)
    await collector.baseline()
    before.serve(10)
    await collector.sample(0.0, 1.0)
    # Restart: the new container listens on another host port; the stack re-resolves.
    current["endpoints"] = _endpoints(after.url)
    after.serve(500)  # more than the old process's 110: no drop that would look like a reset
    await collector.sample(1.0, 1.0)
    after.serve(7)
    await collector.sample(2.0, 1.0)
    await collector.close()

    series = collector.series()
    assert series["up"] == [True, True, True]
    # The new process counted from zero (500), not 500 - 110, and the next window as usual.
    assert series["requests"] == [10, 500, 7]
    assert collector.urls == [after.url]
