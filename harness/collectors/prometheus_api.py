"""A Prometheus server's HTTP API, read with httpx: range queries for ``harness judge``.

``GET /api/v1/query_range?query=EXPR&start=S&end=E&step=STEP`` (Prometheus HTTP API,
https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries) returns, per series,
its labels and ``[unix_time, "value"]`` pairs at ``start + k * step``: at each such instant
the newest sample within the lookback (5 min by default). A query longer than the server's
11,000 points a series is split into pieces and joined.

Errors name the URL and the query: :class:`PrometheusUnreachable` (connection refused, DNS,
timeout: nothing answered) and :class:`PrometheusError` (an HTTP error or an API error such
as a bad expression, with Prometheus's own words).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import TracebackType
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import BaseModel, Field

from harness.redact import redact_text

# Prometheus refuses a range query of more than 11,000 points a series.
MAX_POINTS = 11_000
TIMEOUT_S = 30.0


class PrometheusError(RuntimeError):
    """Prometheus answered, but not with data (HTTP error, bad query, bad response)."""


class PrometheusUnreachable(PrometheusError):
    """Nothing answered at the URL (refused, unknown host, timed out)."""


class RangeSeries(BaseModel):
    """One series of a range query: its labels and its values at the query's instants."""

    labels: dict[str, str] = Field(description="the series' labels (__name__ included if kept)")
    t: list[float] = Field(description="unix time of each value (s)")
    v: list[float] = Field(description="the values (NaN, +Inf as Prometheus writes them)")


class RangeResult(BaseModel):
    """A range query's answer: the expression, the instants asked, every series."""

    query: str
    start: float = Field(description="unix time of the first instant (s)")
    end: float = Field(description="unix time of the last instant (s)")
    step: float = Field(description="seconds between instants")
    series: list[RangeSeries] = Field(default_factory=list)


def check_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError unless it is an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--prometheus {url!r}: not an http(s) URL (http://HOST:9090)")
    return url.strip().rstrip("/")


class PrometheusAPI:
    """A client for one server (``url``: ``http://HOST:PORT``, a path prefix allowed).

    Use as a context manager, or ``close()`` it. ``queries``: every expression asked, in
    order (the judgement records them)."""

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.url = check_url(url)
        # What messages and records show: a password in the URL masked (harness/redact.py).
        self.shown_url = redact_text(self.url)
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.queries: list[str] = []

    def __enter__(self) -> PrometheusAPI:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def graph_link(self, expr: str, start: float, end: float) -> str:
        """The server's graph page for ``expr`` over [start, end] (unix s): :func:`graph_link`."""
        return graph_link(self.url, expr, start, end)

    def _get(self, path: str, params: dict[str, str], what: str) -> object:
        try:
            r = self._client.get(f"{self.url}{path}", params=params)
        except httpx.TimeoutException as exc:
            raise PrometheusUnreachable(
                f"{self.shown_url}: timed out ({what}): {redact_text(str(exc))}"
            ) from None
        except httpx.TransportError as exc:
            raise PrometheusUnreachable(
                f"{self.shown_url}: unreachable ({type(exc).__name__}: {redact_text(str(exc))}); "
                "is Prometheus running there? (stack.prometheus.enabled runs one during a "
                "harness run)"
            ) from None
        try:
            body = r.json()
        except ValueError:
            raise PrometheusError(
                f"{self.shown_url}{path}: HTTP {r.status_code}, not the Prometheus API "
                f"({redact_text(r.text[:200])!r}) ({what})"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error") if isinstance(body, dict) else None
            raise PrometheusError(
                f"{self.shown_url}{path}: HTTP {r.status_code}: {redact_text(str(err))} ({what})"
            )
        return body.get("data")

    def range_query(self, expr: str, start: float, end: float, step: float) -> RangeResult:
        """Every series of ``expr`` at ``start``, ``start + step``, ... ``<= end`` (unix s).

        Split into pieces of at most :data:`MAX_POINTS` instants, joined per label set."""
        if not step > 0:
            raise ValueError(f"step must be > 0 s, got {step}")
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        self.queries.append(expr)
        joined: dict[tuple[tuple[str, str], ...], RangeSeries] = {}
        for lo, hi in _pieces(start, end, step):
            data = self._get(
                "/api/v1/query_range",
                {"query": expr, "start": _num(lo), "end": _num(hi), "step": _num(step)},
                f"query {expr!r}",
            )
            if not isinstance(data, dict) or data.get("resultType") != "matrix":
                raise PrometheusError(f"{self.shown_url}: query {expr!r} did not return a matrix")
            for item in data.get("result") or []:
                labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
                key = tuple(sorted(labels.items()))
                s = joined.setdefault(key, RangeSeries(labels=labels, t=[], v=[]))
                for ts, value in item.get("values") or []:
                    s.t.append(float(ts))
                    s.v.append(float(value))
        return RangeResult(
            query=expr, start=start, end=end, step=step, series=list(joined.values())
        )


def graph_link(url: str, expr: str, start: float, end: float) -> str:
    """The graph page of the server at ``url`` for ``expr`` over [start, end] (unix s), for a
    page to link: ``URL/graph?g0.expr=EXPR&g0.tab=0&g0.range_input=SPANs&g0.end_input=END``
    (the span rounded up to whole seconds, at least 1 s; END in UTC). A password in ``url`` is
    masked (harness/redact.py). ValueError when ``url`` is not an http(s) URL."""
    span = max(math.ceil(end - start), 1)
    query = urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": f"{span}s",
                       "g0.end_input": _iso(end)})  # fmt: skip
    return f"{redact_text(check_url(url))}/graph?{query}"


def _pieces(start: float, end: float, step: float) -> Iterator[tuple[float, float]]:
    """[start, end] in pieces of at most MAX_POINTS instants on the same grid."""
    span = (MAX_POINTS - 1) * step
    lo = start
    while lo <= end:
        hi = min(lo + span, end)
        yield lo, hi
        lo = hi + step


def _num(x: float) -> str:
    return f"{x:.3f}"


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
