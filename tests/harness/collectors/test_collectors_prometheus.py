"""PrometheusCollector against a real HTTP server exposing prometheus_client counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from harness.clock import RunClock
from harness.collectors import CollectorSet, PrometheusCollector, parse_metrics


@dataclass
class FakeTorchServe:
    """TorchServe's metric names on a real prometheus_client registry; ``restart()`` resets."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    fail: bool = False

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A fresh registry: every counter back to 0, as after a TorchServe restart."""
        r = CollectorRegistry()
        labels = ["model_name", "model_version"]
        self.requests = Counter("ts_inference_requests", "", labels, registry=r)
        self.infer_us = Counter("ts_inference_latency_microseconds", "", labels, registry=r)
        self.queue_us = Counter("ts_queue_latency_microseconds", "", labels, registry=r)
        self.batches = Counter("SignflowBatches", "", ["ModelName", "BatchSize"], registry=r)
        self.batched = Counter("SignflowBatchedRequests", "", ["ModelName"], registry=r)
        self.handler_us = Counter("SignflowHandlerMicroseconds", "", ["ModelName"], registry=r)
        self.model_us = Counter("SignflowModelMicroseconds", "", ["ModelName"], registry=r)
        self.queue_depth = Gauge("signflow_queue_depth", "", registry=r)
        self.registry = r

    def serve(
        self,
        batch_sizes: list[int],
        e2e_ms: float,
        queue_ms: float,
        handler_ms: list[float] | None = None,
    ) -> None:
        """Account for batches of the given sizes (``handler_ms``: each batch's handle() time;
        its forward pass is taken as half of it), as TorchServe and the handler count them."""
        n = sum(batch_sizes)
        self.requests.labels("signflow", "default").inc(n)
        self.infer_us.labels("signflow", "default").inc(n * e2e_ms * 1000)
        self.queue_us.labels("signflow", "default").inc(n * queue_ms * 1000)
        for i, size in enumerate(batch_sizes):
            self.batches.labels("signflow", str(size)).inc()
            if handler_ms is not None:  # per-request sums: each request adds its batch's time
                self.handler_us.labels("signflow").inc(handler_ms[i] * 1000 * size)
                self.model_us.labels("signflow").inc(handler_ms[i] * 500 * size)
        self.batched.labels("signflow").inc(n)


@pytest.fixture
async def metrics_server() -> AsyncIterator[tuple[FakeTorchServe, str]]:
    """A real aiohttp server on a free loopback port serving the fake's /metrics."""
    fake = FakeTorchServe()

    async def handle(_: web.Request) -> web.Response:
        if fake.fail:
            return web.Response(status=500, text="boom")
        return web.Response(body=generate_latest(fake.registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield fake, f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


async def test_counter_deltas_batch_sizes_gaps_and_reset(
    metrics_server: tuple[FakeTorchServe, str],
) -> None:
    fake, url = metrics_server
    c = PrometheusCollector("torchserve", url)
    fake.serve([16, 16, 8], e2e_ms=7.0, queue_ms=40.0)  # before the run: baseline only
    await c.baseline()
    # window 0: 52 requests; handler 6 ms for the batches of 16, 2 ms for the 4
    fake.serve([16, 16, 16, 4], e2e_ms=40.0, queue_ms=30.0, handler_ms=[6.0, 6.0, 6.0, 2.0])
    await c.sample(0.0, 1.0)
    await c.sample(1.0, 1.0)  # window 1: nothing happened
    fake.fail = True
    await c.sample(2.0, 1.0)  # window 2: scrape fails -> a gap, not a zero
    fake.fail = False
    fake.restart()  # TorchServe restarted: counters start again from 0
    fake.serve([2, 2], e2e_ms=1.0, queue_ms=5.0)
    await c.sample(3.0, 1.0)
    await c.close()

    s = c.series()
    assert s["t"] == [0.0, 1.0, 2.0, 3.0]
    assert s["up"] == [True, True, False, True]
    assert s["requests"] == [52, 0, None, 4]
    assert s["requests_per_s"][0] == pytest.approx(52)
    assert s["dt"] == [1.0, 1.0, None, 2.0]  # the scrape after the gap covers two windows
    assert s["requests_per_s"][3] == pytest.approx(2.0)
    assert s["end_to_end_ms_mean"][0] == pytest.approx(40.0)
    assert s["queue_ms_mean"][0] == pytest.approx(30.0)
    # Request-weighted: 48 requests lived a 6 ms handle(), 4 a 2 ms one.
    assert s["handler_ms_mean"][0] == pytest.approx((48 * 6 + 4 * 2) / 52)
    assert s["model_ms_mean"][0] == pytest.approx((48 * 3 + 4 * 1) / 52)
    assert s["end_to_end_ms_mean"][1] is None and s["queue_ms_mean"][1] is None
    assert s["handler_ms_mean"][1] is None
    assert s["batch_size_mean"][0] == pytest.approx(13.0)
    assert s["batch_size_hist"][0] == {"16": 3, "4": 1}
    assert s["batch_size_hist"][1] is None
    # After the reset the new values ARE the deltas (never negative).
    assert s["end_to_end_ms_mean"][3] == pytest.approx(1.0)
    assert s["batch_size_hist"][3] == {"2": 2}
    assert s["errors"] == 1 and "HTTP 500" in s["last_error"]
    assert s["gauges"]["signflow_queue_depth"] == [0.0, 0.0, None, 0.0]
    key = 'ts_inference_requests_total{model_name="signflow",model_version="default"}'
    assert s["counters"][key] == [52, 0, None, 4]

    summary = c.summary()
    assert summary["requests"] == 56
    assert summary["batch_size_hist"] == {"2": 2, "4": 1, "16": 3}
    assert summary["batch_size_mean"] == pytest.approx(56 / 6)
    assert summary["end_to_end_ms_mean"] == pytest.approx((52 * 40 + 4 * 1) / 56)
    assert summary["queue_ms_mean"] == pytest.approx((52 * 30 + 4 * 5) / 56)
    # Only window 0 had handler timing (the restarted fake's batches carry none, as an older
    # handler's would): its requests alone are the divisor.
    assert summary["handler_ms_mean"] == pytest.approx((48 * 6 + 4 * 2) / 52)
    assert "inference_ms_mean" not in summary
    assert summary["scrape_errors"] == 1
    assert c.summary(t_from=3.0)["requests"] == 4


async def test_unreachable_endpoint_records_gaps_and_counts_errors() -> None:
    c = PrometheusCollector("torchserve", "http://127.0.0.1:9/metrics", timeout_s=0.3)
    await c.baseline()
    await c.sample(0.0, 1.0)
    await c.close()
    s = c.series()
    assert s["up"] == [False] and s["requests"] == [None]
    assert s["errors"] == 2


async def test_collector_set_samples_each_second_on_the_run_clock(
    metrics_server: tuple[FakeTorchServe, str],
) -> None:
    fake, url = metrics_server
    clock = RunClock()
    clock.start()
    cs = CollectorSet(clock, interval_s=0.25)
    cs.add(PrometheusCollector("torchserve", url))
    with pytest.raises(ValueError, match="duplicate"):
        cs.add(PrometheusCollector("torchserve", url))
    stop = asyncio.Event()
    task = asyncio.create_task(cs.run(stop))
    await asyncio.sleep(0.05)  # the baseline scrape
    for _ in range(4):
        fake.serve([4], e2e_ms=2.0, queue_ms=1.0)
        await asyncio.sleep(0.25)
    stop.set()
    await asyncio.wait_for(task, 5)
    s = cs.series()["torchserve"]
    assert s["t"][:4] == [0.0, 0.25, 0.5, 0.75]
    assert sum(r for r in s["requests"] if r) == 16
    assert s["errors"] == 0


def test_parse_torchserve_text_format() -> None:
    # TorchServe declares its latency counters without the _total suffix.
    text = (
        "# HELP ts_inference_latency_microseconds Cumulative inference duration\n"
        "# TYPE ts_inference_latency_microseconds counter\n"
        'ts_inference_latency_microseconds{uuid="u",model_name="signflow",'
        'model_version="default",} 1990.5\n'
        "# HELP ts_inference_requests_total Total number of inference requests.\n"
        "# TYPE ts_inference_requests_total counter\n"
        'ts_inference_requests_total{uuid="u",model_name="signflow",model_version="default",} 3.0\n'
    )
    counters, gauges, samples = parse_metrics(text)
    assert gauges == {}
    assert len(samples) == 2
    names = {name for name, _, _ in samples}
    # (the parser appends _total to counters declared without it; the collector strips it)
    assert names == {"ts_inference_latency_microseconds_total", "ts_inference_requests_total"}
    assert sum(counters.values()) == pytest.approx(1993.5)


async def test_replicas_are_summed_and_reset_or_lost_independently() -> None:
    """Two TorchServe replicas: the tier's figures are their sum; one replica restarting or
    failing a scrape neither double-counts nor loses the other's (or its own) requests."""
    fakes = [FakeTorchServe(), FakeTorchServe()]
    runners: list[web.AppRunner] = []
    urls: list[str] = []
    for fake in fakes:

        async def handle(_: web.Request, fake: FakeTorchServe = fake) -> web.Response:
            if fake.fail:
                return web.Response(status=503, text="down")
            return web.Response(body=generate_latest(fake.registry), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/metrics")
    try:
        c = PrometheusCollector("torchserve", urls)
        await c.baseline()
        fakes[0].serve([4, 4], e2e_ms=10.0, queue_ms=2.0)  # window 0: 8 + 2 requests
        fakes[1].serve([2], e2e_ms=20.0, queue_ms=4.0)
        await c.sample(0.0, 1.0)
        fakes[1].fail = True  # window 1: replica 2 unreadable; its 3 requests wait
        fakes[0].serve([1], e2e_ms=10.0, queue_ms=2.0)
        fakes[1].serve([3], e2e_ms=20.0, queue_ms=4.0)
        await c.sample(1.0, 1.0)
        fakes[1].fail = False  # window 2: replica 2 back (3 held + 1 new); replica 1 restarted
        fakes[1].serve([1], e2e_ms=20.0, queue_ms=4.0)
        fakes[0].restart()
        fakes[0].serve([2], e2e_ms=10.0, queue_ms=2.0)
        await c.sample(2.0, 1.0)
        await c.close()
    finally:
        for runner in runners:
            await runner.cleanup()

    s = c.series()
    assert s["urls"] == urls
    assert s["requests"] == [10, 1, 6]
    assert s["up"] == [True, False, True]
    assert s["end_to_end_ms_mean"][0] == pytest.approx((8 * 10 + 2 * 20) / 10)
    assert s["batch_size_hist"][0] == {"4": 2, "2": 1}
    assert s["batch_size_hist"][2] == {"3": 1, "1": 1, "2": 1}
    per_replica = [k for k in s["counters"] if k.startswith("ts_inference_requests_total")]
    assert sorted('replica="1"' in k for k in per_replica) == [False, True]
    summary = c.summary()
    assert summary["requests"] == 17 and summary["replicas"] == 2
    assert summary["scrape_errors"] == 1
