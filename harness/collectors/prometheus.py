"""PrometheusCollector: scrape a /metrics endpoint each window, turn counters into deltas.

TorchServe exports cumulative counters only (no histograms), so every figure is a per-window
mean from deltas, request-weighted. What each TorchServe figure covers, for one request:

- ``queue_ms_mean``: d(``ts_queue_latency_microseconds``) / d(``ts_inference_requests_total``):
  arrival at the frontend until a worker took the request off the model's queue.
- ``handler_ms_mean``: d(``SignflowHandlerMicroseconds``) / d(``SignflowBatchedRequests``): the
  handler's own ``handle()`` time of the batch the request was in (parse, forward, answers),
  timed by serving/handler.py; ``model_ms_mean`` the same for the forward pass alone.
- ``end_to_end_ms_mean``: d(``ts_inference_latency_microseconds``) / d(requests): arrival at the
  frontend until the answer, i.e. queue + batch assembly (up to max_batch_delay) + handler +
  frontend<->worker transfer. TorchServe calls it "inference latency"; it is not model time.
  (Results before this split called it ``inference_ms_mean``.)

The handler's ``SignflowBatches{BatchSize=..}`` (+1 per batch) and ``SignflowBatchedRequests``
(+size per batch) counters give the batch-size histogram and mean. Every other counter (e.g.
the backend's ``signflow_*``) is kept as per-window deltas.

A counter lower than at the previous scrape was reset (TorchServe restarted): its delta is
its new value. A failed scrape records None for that window and a counted error; the next
successful scrape's deltas cover the whole gap.

Several URLs (TorchServe replicas) are scraped together each window. Their series get a
``replica`` label, deltas are taken per replica (a restart of one resets only its own counters)
and the derived figures are summed over replicas: requests/s is the whole tier's, the means are
request-weighted over all replicas. A replica that cannot be read leaves its counters where they
were, so its next good scrape neither double-counts nor loses requests; the window is marked
not fully up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from harness.redact import redact_text

TS_REQUESTS = "ts_inference_requests_total"
TS_INFERENCE_US = "ts_inference_latency_microseconds"
TS_QUEUE_US = "ts_queue_latency_microseconds"
BATCHES = "SignflowBatches"
BATCHED_REQUESTS = "SignflowBatchedRequests"
HANDLER_US = "SignflowHandlerMicroseconds"
MODEL_US = "SignflowModelMicroseconds"
BATCH_SIZE_LABEL = "BatchSize"

Sample = tuple[str, dict[str, str], float]
# (counters by series key, gauges by series key, counter samples) of one scrape
Parsed = tuple[dict[str, float], dict[str, float], list[Sample]]


def parse_metrics(text: str, extra_labels: dict[str, str] | None = None) -> Parsed:
    """Prometheus text -> (counters by series key, gauges by series key, counter samples).

    Histogram/summary ``_sum``/``_count`` count as counters; ``_created`` and buckets are
    dropped. A series key is ``name{label="v",...}`` with labels sorted. ``extra_labels`` are
    added to every sample (the replica a scrape came from).
    """
    counters: dict[str, float] = {}
    gauges: dict[str, float] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created") or s.name.endswith("_bucket"):
                continue
            labels = {**s.labels, **extra_labels} if extra_labels else dict(s.labels)
            key = series_key(s.name, labels)
            is_counter = family.type == "counter" or (
                family.type in ("histogram", "summary") and s.name.endswith(("_sum", "_count"))
            )
            if is_counter:
                counters[key] = float(s.value)
                samples.append((s.name, labels, float(s.value)))
            elif family.type in ("gauge", "untyped", "unknown"):
                gauges[key] = float(s.value)
    return counters, gauges, samples


def series_key(name: str, labels: dict[str, str]) -> str:
    """``name{a="1",b="2"}`` (sorted labels), or ``name`` without labels."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _mean_ms(total_us: float | None, count: float | None) -> float | None:
    """Mean in ms of a microsecond sum over ``count`` requests; None when nothing was counted.

    A zero sum over counted requests is a real 0.0 (a queue nobody waited in), not missing.
    """
    return total_us / count / 1000 if count and total_us is not None else None


def _base_name(name: str) -> str:
    return name[:-6] if name.endswith("_total") else name


class PrometheusCollector:
    """One endpoint (TorchServe's :8082/metrics or the backend's /metrics), or one per replica."""

    def __init__(
        self,
        name: str,
        url: str | Sequence[str] | Callable[[], Sequence[str]],
        headers: dict[str, str] | None = None,
        timeout_s: float = 0.8,
    ) -> None:
        self.name = name
        # A callable is asked again before every scrape: a restarted container (compose) gets
        # new host ports, and the stack's endpoints follow it (see Stack.endpoints).
        self._resolve: Callable[[], Sequence[str]] | None = url if callable(url) else None
        if callable(url):
            self.urls = list(url())
        else:
            self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError(f"{name}: no metrics URL")
        self.url = self.urls[0]
        self._headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None
        # Per replica: its counters at the last good scrape (None = never read yet).
        self._prev: list[dict[str, float] | None] = [None] * len(self.urls)
        self._pending_s = 0.0  # window time since the last successful scrape
        self.errors = 0
        self.last_error: str | None = None
        self._t: list[float] = []
        self._dt: list[float | None] = []
        self._up: list[bool] = []
        self._counters: dict[str, list[float | None]] = {}
        self._gauges: dict[str, list[float | None]] = {}
        self._derived: dict[str, list[Any]] = {
            k: []
            for k in (
                "requests",
                "requests_per_s",
                "queue_ms_mean",
                "handler_ms_mean",
                "model_ms_mean",
                "end_to_end_ms_mean",
                "batch_size_mean",
                "batch_size_hist",
                "_end_to_end_us",
                "_queue_us",
                "_handler_us",
                "_model_us",
                "_batched_requests",
                "_batches",
            )
        }

    async def _scrape(self, url: str) -> str:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        async with self._http.get(url, headers=self._headers) as resp:
            if resp.status != 200:
                # The body may echo request details; the status alone is enough and safe.
                raise RuntimeError(f"HTTP {resp.status} from {redact_text(url)}")
            return await resp.text()

    async def _read(self, index: int) -> Parsed | None:
        extra = {"replica": str(index + 1)} if len(self.urls) > 1 else None
        try:
            return parse_metrics(await self._scrape(self.urls[index]), extra)
        except Exception as exc:  # down, timeout, garbage: a gap, never a crash
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            return None

    def _follow_endpoints(self) -> None:
        """Take the stack's current URLs; a replica whose URL changed is a new process, so its
        counters restart from zero (treated as a reset, like a restart on the same port)."""
        if self._resolve is None:
            return
        try:
            urls = list(self._resolve())
        except Exception as exc:  # the stack is between states: keep the last URLs
            self.last_error = f"endpoints: {type(exc).__name__}: {exc}"[:300]
            return
        if len(urls) != len(self.urls):
            return  # replicas are fixed for a run; a partial answer is not a new layout
        for i, (old, new) in enumerate(zip(self.urls, urls, strict=True)):
            if old != new and self._prev[i] is not None:
                self._prev[i] = {}
        self.urls, self.url = urls, urls[0]

    async def _read_all(self) -> list[Parsed | None]:
        self._follow_endpoints()
        return list(await asyncio.gather(*(self._read(i) for i in range(len(self.urls)))))

    async def baseline(self) -> None:
        """First scrape: the reference for the first window's deltas."""
        for i, got in enumerate(await self._read_all()):
            if got is not None:
                self._prev[i] = got[0]

    async def sample(self, t: float, dt: float) -> None:
        """Scrape and record the window starting at ``t``."""
        idx = len(self._t)
        self._t.append(t)
        self._pending_s += dt
        reads = await self._read_all()
        if all(got is None for got in reads):
            self._up.append(False)
            self._dt.append(None)
            self._pad(idx)
            return
        counters: dict[str, float] = {}
        gauges: dict[str, float] = {}
        samples: list[Sample] = []
        deltas: dict[str, float] = {}
        measured = False  # some replica had a previous scrape to take deltas against
        for i, got in enumerate(reads):
            if got is None:
                continue  # keeps its last counters: its next good scrape covers the gap
            replica_counters, replica_gauges, replica_samples = got
            prev = self._prev[i]
            if prev is not None:
                measured = True
                samples.extend(replica_samples)
                for key, value in replica_counters.items():
                    before = prev.get(key)
                    # New series since the last scrape started at 0; a drop means a reset.
                    deltas[key] = value if before is None or value < before else value - before
            counters.update(replica_counters)
            gauges.update(replica_gauges)
            self._prev[i] = replica_counters
        # After a gap the deltas cover every window since the last good scrape.
        span = self._pending_s if measured else None
        self._pending_s = 0.0
        self._up.append(all(got is not None for got in reads))
        self._dt.append(span)
        for key in counters:
            self._counters.setdefault(key, [None] * idx).append(deltas.get(key))
        for key, value in gauges.items():
            self._gauges.setdefault(key, [None] * idx).append(value)
        self._derive(samples, deltas if measured else None, span)
        self._pad(idx)

    def _derive(
        self, samples: list[Sample], deltas: dict[str, float] | None, span: float | None
    ) -> None:
        d = self._derived
        if deltas is None:
            for values in d.values():
                values.append(None)
            return
        sums: dict[str, float] = {}
        hist: dict[str, float] = {}
        for name, labels, _ in samples:
            base = _base_name(name)
            delta = deltas.get(series_key(name, labels), 0.0)
            sums[base] = sums.get(base, 0.0) + delta
            if base == BATCHES and BATCH_SIZE_LABEL in labels and delta:
                size = labels[BATCH_SIZE_LABEL]
                hist[size] = hist.get(size, 0.0) + delta
        requests = sums.get(_base_name(TS_REQUESTS))
        e2e_us = sums.get(TS_INFERENCE_US)
        queue_us = sums.get(TS_QUEUE_US)
        handler_us, model_us = sums.get(HANDLER_US), sums.get(MODEL_US)
        batches = sums.get(BATCHES)
        batched = sums.get(BATCHED_REQUESTS)
        d["requests"].append(requests)
        d["requests_per_s"].append(requests / span if requests is not None and span else None)
        d["queue_ms_mean"].append(_mean_ms(queue_us, requests))
        d["handler_ms_mean"].append(_mean_ms(handler_us, batched))
        d["model_ms_mean"].append(_mean_ms(model_us, batched))
        d["end_to_end_ms_mean"].append(_mean_ms(e2e_us, requests))
        d["batch_size_mean"].append(batched / batches if batches and batched is not None else None)
        d["batch_size_hist"].append({k: int(v) for k, v in hist.items()} if hist else None)
        d["_end_to_end_us"].append(e2e_us)
        d["_queue_us"].append(queue_us)
        d["_handler_us"].append(handler_us)
        d["_model_us"].append(model_us)
        d["_batched_requests"].append(batched)
        d["_batches"].append(batches)

    def _pad(self, idx: int) -> None:
        stores = [*self._counters.values(), *self._gauges.values(), *self._derived.values()]
        for values in stores:
            if len(values) <= idx:
                values.append(None)

    def series(self) -> dict[str, Any]:
        """``{"t", "dt", "up", "requests", "requests_per_s", "queue_ms_mean",
        "handler_ms_mean", "model_ms_mean", "end_to_end_ms_mean", "batch_size_mean",
        "batch_size_hist", "counters": {key: [delta]}, "gauges": {key: [value]}, "errors",
        "last_error", "url"}``; None = not measured (module doc: what each mean covers).
        """
        out: dict[str, Any] = {"t": list(self._t), "dt": list(self._dt), "up": list(self._up)}
        out.update({k: list(v) for k, v in self._derived.items() if not k.startswith("_")})
        out["counters"] = {k: list(v) for k, v in self._counters.items()}
        out["gauges"] = {k: list(v) for k, v in self._gauges.items()}
        out["errors"] = self.errors
        out["last_error"] = self.last_error
        out["url"] = self.url
        out["urls"] = list(self.urls)
        return out

    def summary(self, t_from: float = 0.0, t_to: float = float("inf")) -> dict[str, Any]:
        """TorchServe figures over windows in [t_from, t_to): requests, request-weighted
        queue / handler / model / end-to-end means in ms (module doc), batch size mean and
        histogram (None where not measured)."""
        d = self._derived
        keep = [i for i, t in enumerate(self._t) if t_from <= t < t_to]

        def total(key: str) -> float | None:
            vals = [d[key][i] for i in keep if d[key][i] is not None]
            return sum(vals) if vals else None

        def mean_ms(us_key: str, count_key: str) -> float | None:
            # Only windows that have both: an archive without the handler's timing counters
            # (older handler) must not dilute the mean with its requests.
            both = [i for i in keep if d[us_key][i] is not None and d[count_key][i] is not None]
            return _mean_ms(
                sum(d[us_key][i] for i in both) if both else None,
                sum(d[count_key][i] for i in both),
            )

        requests = total("requests")
        batches, batched = total("_batches"), total("_batched_requests")
        hist: dict[str, int] = {}
        for i in keep:
            for k, v in (d["batch_size_hist"][i] or {}).items():
                hist[k] = hist.get(k, 0) + v
        return {
            "requests": int(requests) if requests is not None else None,
            "queue_ms_mean": mean_ms("_queue_us", "requests"),
            "handler_ms_mean": mean_ms("_handler_us", "_batched_requests"),
            "model_ms_mean": mean_ms("_model_us", "_batched_requests"),
            "end_to_end_ms_mean": mean_ms("_end_to_end_us", "requests"),
            "batch_size_mean": batched / batches if batches and batched is not None else None,
            "batch_size_hist": dict(sorted(hist.items(), key=lambda kv: (len(kv[0]), kv[0])))
            if hist
            else None,
            "scrape_errors": self.errors,
            "replicas": len(self.urls),
            "requests_by_replica": self._requests_by_replica(keep),
        }

    def _requests_by_replica(self, keep: list[int]) -> dict[str, int] | None:
        """Requests each replica served in the kept windows (how evenly the load spread)."""
        if len(self.urls) < 2:
            return None
        out = {str(i + 1): 0 for i in range(len(self.urls))}
        for key, values in self._counters.items():
            if not key.startswith(TS_REQUESTS):
                continue
            for replica in out:
                if f'replica="{replica}"' in key:
                    out[replica] += int(sum(values[i] or 0 for i in keep if i < len(values)))
        return out

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()
            self._http = None
