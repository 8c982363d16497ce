"""The typed contract of a run's data: the results document, its metrics and their units.

This module is the one place that says what ``results.json`` holds (docs/RESULTS.md's metric
catalogue is generated from it, ``python -m harness.results.docs``) and what a gate may name:
:data:`METRICS` is derived from the models below, each gateable leaf annotated with a
:class:`Unit` (unit, k6-style metric type, meaning). It is a leaf module (pydantic and the
standard library only), so every layer may import the vocabulary: the scenario loader checks
gate metrics against it, the load generator builds :class:`InvalidReason` values with it.

Readers: ``Results.model_validate(doc)`` accepts version-1 documents too (fields added since
default to None; ``harness.results.writer.read_results`` upgrades their prose INVALID reasons).
Models allow extra keys so old files with renamed keys still load; a test checks that a fresh
document has none.

Units: ``ms`` milliseconds, ``s`` seconds, ``count``, ``1/s`` per second, ``share`` in [0, 1],
``%`` percent (of one core for CPU), ``MB`` mebibytes, ``bool``; slopes per hour: ``MB/h``,
``1/h`` (a count per hour), ``ms/h``. Metric types follow k6:
``trend`` (a latency distribution's statistic), ``counter`` (a count over the measured window),
``rate`` (a share), ``gauge`` (a value).
"""

from __future__ import annotations

import difflib
import enum
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Self, TypeAlias, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

SCHEMA: Final = "signflow-harness/results"
SCHEMA_VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)

# A results document (or one of its sections) as parsed JSON, the form analysis and the report
# read: version 1 or 2, possibly partial (a run that never measured, an older file), so read
# with ``.get`` and checks. ``Results.model_validate(doc)`` is its typed view.
Document: TypeAlias = Mapping[str, Any]

UnitName = Literal["ms", "s", "count", "1/s", "share", "%", "MB", "bool", "MB/h", "1/h", "ms/h"]
MetricType = Literal["trend", "counter", "rate", "gauge"]
_TYPE_OF_UNIT: dict[str, MetricType] = {"count": "counter", "share": "rate"}


@dataclass(frozen=True)
class Unit:
    """Field metadata: a gateable metric's unit, its meaning and how it exists.

    ``type``: the k6-style metric type (default from the unit: count -> counter, share -> rate,
    others gauge; latency statistics are trends). ``needs``: timeline actions the run must have
    for it to exist. ``absent_is_zero``: a data-keyed count that is 0 when its key is absent;
    ``optional``: absent when the run had nothing to measure. ``keys``: the names a data-keyed
    map holds for gating (empty: any name, ``*`` in the catalogue).
    """

    unit: UnitName
    about: str
    type: MetricType | None = None
    needs: tuple[str, ...] = ()
    absent_is_zero: bool = False
    optional: bool = False
    keys: tuple[str, ...] = ()

    @property
    def metric_type(self) -> MetricType:
        """The explicit type, else the unit's default."""
        return self.type or _TYPE_OF_UNIT.get(self.unit, "gauge")


@dataclass(frozen=True)
class Always:
    """Field metadata: a key every readable document holds, version 1 on (null or not) though
    the model gives it a default; ``harness.results.schema.TOP_KEYS`` is derived from it."""


ALWAYS: Final = Always()


class _Model(BaseModel):
    # Extra keys are kept (older files, renamed keys); a test keeps fresh documents free of them.
    # Fields are declared in the order the harness writes them: results.json is the model's
    # dump (a test checks that a fresh document's key order is the model's).
    model_config = ConfigDict(extra="allow")


class _InDataOrder(_Model):
    """A section keyed by the data: the analysis writes the tiers in the order they first
    answered in the run (``torchserve`` before ``local`` when TorchServe answered first). Its
    dump keeps the order it was given, so results.json stays what the analysis wrote."""

    _order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        if isinstance(data, Mapping):
            model._order = [str(k) for k in data]
        return model

    @model_serializer(mode="wrap")
    def _in_given_order(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if not isinstance(out, dict) or not self._order:
            return out
        rank = {k: i for i, k in enumerate(self._order)}
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))


F = float | None
I = int | None  # noqa: E741 - a type alias read like the F above


# --------------------------------------------------------------------------- summary


class LatencyStats(_Model):
    """A latency distribution's statistics, in milliseconds (``count``: replies in it)."""

    p50: Annotated[F, Unit("ms", "p50", "trend")] = None
    p90: Annotated[F, Unit("ms", "p90", "trend")] = None
    p95: Annotated[F, Unit("ms", "p95", "trend")] = None
    p99: Annotated[F, Unit("ms", "p99", "trend")] = None
    p999: Annotated[F, Unit("ms", "p999", "trend")] = None
    max: Annotated[F, Unit("ms", "max", "trend")] = None
    mean: Annotated[F, Unit("ms", "mean", "trend")] = None
    count: Annotated[I, Unit("count", "count")] = None


class WindowLatency(_Model):
    """Latency of the frames scheduled in a fault's window, ms (``count``: replies in it)."""

    p50: Annotated[F, Unit("ms", "p50", "trend")] = None
    p95: Annotated[F, Unit("ms", "p95", "trend")] = None
    p99: Annotated[F, Unit("ms", "p99", "trend")] = None
    p999: Annotated[F, Unit("ms", "p999", "trend")] = None
    max: Annotated[F, Unit("ms", "max", "trend")] = None
    count: Annotated[I, Unit("count", "count")] = None


class OverRange(_Model):
    """Replies slower than the histograms' range (``reply_timeout_s``): left out, never clamped."""

    count: Annotated[I, Unit("count", "replies slower than the latency limit")] = None
    max_ms: Annotated[F, Unit("ms", "the slowest of those")] = None
    limit_ms: Annotated[F, Unit("ms", "the run's latency limit")] = None


class FrameSummary(_Model):
    """Every answered frame (error replies included), scheduled send to reply."""

    latency_ms: Annotated[LatencyStats, Unit("ms", "frame latency, scheduled send to reply")] = (
        Field(default_factory=LatencyStats)
    )
    latency_uncorrected_ms: Annotated[
        LatencyStats, Unit("ms", "frame latency from the actual send")
    ] = Field(default_factory=LatencyStats)
    latency_over_range: OverRange | None = None


class InferenceSummary(_Model):
    """Frames whose reply has served_by set."""

    latency_ms: Annotated[LatencyStats, Unit("ms", "latency of replies with served_by set")] = (
        Field(default_factory=LatencyStats)
    )


class NonInferenceSummary(_Model):
    """Frames whose reply ran no inference."""

    latency_ms: Annotated[LatencyStats, Unit("ms", "latency of replies without inference")] = Field(
        default_factory=LatencyStats
    )


class Stall(_Model):
    """The longest waits for a reply (docs/RESULTS.md "Stall")."""

    max_ms: Annotated[F, Unit("ms", "longest wait of any session for a reply")] = None
    p50_ms: Annotated[F, Unit("ms", "median over sessions of their longest wait")] = None
    p95_ms: Annotated[F, Unit("ms", "p95 over sessions of their longest wait")] = None
    session: int | None = None
    at_s: float | None = None
    sessions: int | None = None


class Throughput(_Model):
    """Rates over the measured window."""

    frames_per_s: Annotated[F, Unit("1/s", "answered non-error frames per second")] = None
    inferences_per_s: Annotated[F, Unit("1/s", "inference replies per second")] = None


class Frames(_Model):
    """Frame counts over the measured window."""

    scheduled: Annotated[I, Unit("count", "frames scheduled")] = None
    sent: Annotated[I, Unit("count", "frames sent")] = None
    answered: Annotated[I, Unit("count", "frames answered")] = None
    late: Annotated[I, Unit("count", "frames late")] = None
    errored: Annotated[I, Unit("count", "frames errored")] = None
    lost: Annotated[I, Unit("count", "frames lost")] = None


class Errors(_Model):
    """What went wrong, counted."""

    total: Annotated[I, Unit("count", "error replies + lost frames + disconnects")] = None
    error_replies: Annotated[I, Unit("count", "error replies")] = None
    disconnects: Annotated[I, Unit("count", "session disconnects")] = None
    send_failures: Annotated[I, Unit("count", "frames that could not be sent")] = None
    by_code: Annotated[
        dict[str, int], Unit("count", "error replies of one code", absent_is_zero=True)
    ] = Field(default_factory=dict)


class AccuracyByServedBy(_InDataOrder):
    """Accuracy of the answers of each tier (absent when a tier gave none)."""

    local: Annotated[F, Unit("share", "accuracy of local answers", optional=True)] = None
    torchserve: Annotated[F, Unit("share", "accuracy of TorchServe answers", optional=True)] = None


class AccuracyDetail(_Model):
    """The counts behind ``accuracy``."""

    correct: Annotated[I, Unit("count", "correctly classified signs")] = None
    total: Annotated[I, Unit("count", "classified signs with ground truth")] = None
    by_served_by: AccuracyByServedBy = Field(default_factory=AccuracyByServedBy)


class ServedCounts(_InDataOrder):
    """Inferences per tier (0 when absent)."""

    local: Annotated[I, Unit("count", "inferences served locally", absent_is_zero=True)] = None
    torchserve: Annotated[
        I, Unit("count", "inferences served by TorchServe", absent_is_zero=True)
    ] = None


class ServedBy(_Model):
    """Who answered the inferences (``local``: the backend's own engine, for the old-pipeline
    cohort by design and for the TorchServe cohort as a fallback; ``summary.fallback`` tells
    the two apart)."""

    local: Annotated[
        F, Unit("share", "share of inferences served locally (old pipeline or fallback)")
    ] = None
    torchserve: Annotated[F, Unit("share", "share of inferences served by TorchServe")] = None
    counts: ServedCounts = Field(default_factory=ServedCounts)


# What a baseline comparison judges (harness/analysis/compare.py RULE): the names a
# ``compare.METRIC != worse`` gate may use. compare.py builds its rows from these.
JUDGED_LATENCY_FAMILIES = ("frame", "inference")
JUDGED_LATENCY_STATS = ("p50", "p90", "p95", "p99", "p999", "mean")
JUDGED_RATES = ("throughput.frames_per_s", "throughput.inferences_per_s", "errors.per_s")
JUDGED_METRICS = (
    *(f"{f}.latency_ms.{s}" for f in JUDGED_LATENCY_FAMILIES for s in JUDGED_LATENCY_STATS),
    *JUDGED_RATES,
    "accuracy",
)


def fallback_share(fallbacks: int, torchserve_cohort: int, old_pipeline: int) -> float | None:
    """THE fallback share (live rows, Prometheus gauge, ``summary.fallback.share``): the share
    of the TorchServe cohort's classifications answered by the local engine (a failed or slow
    TorchServe call). The old-pipeline cohort (rollout < 100 %, or TorchServe off) is answered
    locally by design and is never a fallback: with classifications but none from the
    TorchServe cohort, nothing fell back and the share is 0. None: no classification at all.
    """
    if torchserve_cohort > 0:
        return fallbacks / torchserve_cohort
    return 0.0 if old_pipeline > 0 else None


class Fallback(_Model):
    """TorchServe-cohort classifications answered locally (``fallback_share`` defines it)."""

    share: Annotated[
        F, Unit("share", "TorchServe cohort's classifications answered locally (fallback)")
    ] = None
    count: Annotated[I, Unit("count", "TorchServe cohort's classifications answered locally")] = (
        None
    )
    torchserve_cohort: Annotated[
        I, Unit("count", "classifications of the TorchServe cohort's sessions")
    ] = None
    old_pipeline: Annotated[
        I, Unit("count", "classifications of the old-pipeline cohort (local by design)")
    ] = None


class Gpu(_Model):
    """GPU figures (null without a GPU, ``reason`` says why)."""

    present: bool = False
    reason: str | None = None
    util_mean: Annotated[F, Unit("%", "GPU utilisation, mean")] = None
    util_p95: Annotated[F, Unit("%", "GPU utilisation, p95")] = None
    memory_used_mb_max: Annotated[F, Unit("MB", "GPU memory used, max")] = None
    name: str | None = None


class ProcessCpu(_Model):
    """One component's processes, over the measured window."""

    mean_percent: Annotated[F, Unit("%", "process mean_percent")] = None
    max_percent: Annotated[F, Unit("%", "process max_percent")] = None
    rss_mb_max: Annotated[F, Unit("MB", "process rss_mb_max")] = None


class ProcessDrift(_Model):
    """One component's resource slopes over the measured window (harness/analysis/drift.py:
    Theil-Sen, 95 % interval [_low, _high]); None with ``reason`` when too short to fit."""

    rss_mb_per_h: Annotated[F, Unit("MB/h", "RSS slope (Theil-Sen)")] = None
    rss_mb_per_h_low: Annotated[F, Unit("MB/h", "RSS slope, 95 % interval low")] = None
    rss_mb_per_h_high: Annotated[F, Unit("MB/h", "RSS slope, 95 % interval high")] = None
    fds_per_h: Annotated[F, Unit("1/h", "open file descriptors slope")] = None
    fds_per_h_low: Annotated[F, Unit("1/h", "open fds slope, 95 % interval low")] = None
    fds_per_h_high: Annotated[F, Unit("1/h", "open fds slope, 95 % interval high")] = None
    threads_per_h: Annotated[F, Unit("1/h", "threads slope")] = None
    threads_per_h_low: Annotated[F, Unit("1/h", "threads slope, 95 % interval low")] = None
    threads_per_h_high: Annotated[F, Unit("1/h", "threads slope, 95 % interval high")] = None
    rss_mb_start: float | None = Field(
        None, description="MB: the RSS fit's value at the first measured sample (report line)"
    )
    samples: int | None = Field(None, description="count: 1-s samples fitted")
    span_s: float | None = Field(None, description="s: first to last fitted sample")
    reason: str | None = Field(None, description="why a figure is None, what would settle it")


class LatencyDrift(_Model):
    """Frame latency p99 per block of the measured window and its Theil-Sen slope
    (harness/analysis/drift.py: 10-min blocks, or 3 equal blocks for shorter runs)."""

    frame_p99_ms_per_h: Annotated[F, Unit("ms/h", "frame p99 slope over blocks (Theil-Sen)")] = None
    frame_p99_ms_per_h_low: Annotated[F, Unit("ms/h", "frame p99 slope, 95 % low")] = None
    frame_p99_ms_per_h_high: Annotated[F, Unit("ms/h", "frame p99 slope, 95 % high")] = None
    block_s: float | None = Field(None, description="s: block length")
    blocks: int | None = Field(None, description="count: whole blocks fitted")
    block_p99_ms: list[float | None] = Field(
        default_factory=list, description="ms: each block's frame p99"
    )
    reason: str | None = Field(None, description="why the slope is None, what would settle it")


class TorchServeSummary(_Model):
    """TorchServe's own figures, summed over replicas (docs/RESULTS.md "TorchServe times")."""

    batch_size_mean: Annotated[F, Unit("count", "TorchServe batch size, mean", "gauge")] = None
    batch_size_hist: Annotated[
        dict[str, int] | None, Unit("count", "batches of one size", absent_is_zero=True)
    ] = None
    queue_ms_mean: Annotated[F, Unit("ms", "TorchServe queue time, mean")] = None
    handler_ms_mean: Annotated[F, Unit("ms", "TorchServe handler time per request, mean")] = None
    model_ms_mean: Annotated[F, Unit("ms", "forward pass of the request's batch, mean")] = None
    end_to_end_ms_mean: Annotated[F, Unit("ms", "arrival at TorchServe to answer, mean")] = None
    # Results written before the handler timed itself: TorchServe's "inference latency"
    # (arrival to answer, queue included; now end_to_end_ms_mean). Never written now; declared
    # here, where those files have it, so reading one keeps its order. Not a gate metric.
    inference_ms_mean: float | None = None
    requests: Annotated[I, Unit("count", "TorchServe requests")] = None
    replicas: Annotated[I, Unit("count", "TorchServe replicas", "gauge")] = None
    requests_by_replica: Annotated[
        dict[str, int] | None, Unit("count", "requests of one replica", absent_is_zero=True)
    ] = None


class Generator(_Model):
    """The load generator's self-check figures."""

    late_share: Annotated[F, Unit("share", "frames sent later than late_threshold_ms")] = None
    late_threshold_ms: Annotated[F, Unit("ms", "the generator's lateness threshold")] = None
    cpu_percent_mean: Annotated[F, Unit("%", "the generator's CPU, mean")] = None
    cpu_saturated: Annotated[bool | None, Unit("bool", "the generator's CPU saturated")] = None
    unsent: Annotated[I, Unit("count", "frames not sent: the server had stopped reading")] = None
    server_silent_from_s: Annotated[F, Unit("s", "when the server stopped answering")] = None


# --------------------------------------------------------------------------- session traffic


class LifetimeSpread(_Model):
    """Sessions' lifetimes (connected .. closed), seconds; ``count``: sessions with one."""

    p50: Annotated[F, Unit("s", "p50", "trend")] = None
    p95: Annotated[F, Unit("s", "p95", "trend")] = None
    max: Annotated[F, Unit("s", "max", "trend")] = None
    mean: Annotated[F, Unit("s", "mean", "trend")] = None
    count: Annotated[int, Unit("count", "sessions with a lifetime")] = 0


class CostSpread(_Model):
    """A handshake's cost over sessions, milliseconds; ``count``: sessions that made it."""

    p50: Annotated[F, Unit("ms", "p50", "trend")] = None
    p95: Annotated[F, Unit("ms", "p95", "trend")] = None
    max: Annotated[F, Unit("ms", "max", "trend")] = None
    mean: Annotated[F, Unit("ms", "mean", "trend")] = None
    count: Annotated[int, Unit("count", "sessions with a handshake")] = 0


class Traffic(_Model):
    """Sessions that came and went (harness/analysis/traffic.py, from ``Results.sessions``)."""

    planned: Annotated[int, Unit("count", "sessions planned by the traffic model", "gauge")] = 0
    started: Annotated[int, Unit("count", "sessions whose WebSocket opened", "gauge")] = 0
    ended: Annotated[int, Unit("count", "sessions closed by the harness")] = 0
    refused: Annotated[int, Unit("count", "sessions whose connect failed")] = 0
    disconnected: Annotated[int, Unit("count", "sessions dropped by the server")] = 0
    cohorts: Annotated[
        dict[str, int],
        Unit("count", "started sessions the backend routed to one cohort", absent_is_zero=True),
    ] = Field(default_factory=dict)
    lifetime_s: Annotated[LifetimeSpread, Unit("s", "session lifetime")] = Field(
        default_factory=LifetimeSpread
    )
    connect_ms: Annotated[CostSpread, Unit("ms", "WebSocket handshake")] = Field(
        default_factory=CostSpread
    )
    close_ms: Annotated[CostSpread, Unit("ms", "close handshake")] = Field(
        default_factory=CostSpread
    )


class Summary(_Model):
    """Whole-run figures over the measured window (warm-up excluded)."""

    duration_s: Annotated[F, Unit("s", "load duration (warm-up included)")] = None
    warmup_s: Annotated[F, Unit("s", "warm-up")] = None
    measured_s: Annotated[F, Unit("s", "measured window")] = None
    sessions: Annotated[I, Unit("count", "sessions", "gauge")] = None
    # None in documents written before session traffic was recorded.
    traffic: Traffic | None = None
    # int or float as recorded (a hand-written file says 30, a run 30.0): shown as written.
    fps: Annotated[float | int | None, Unit("1/s", "frames per second per session")] = None
    frame: FrameSummary = Field(default_factory=FrameSummary)
    inference: InferenceSummary = Field(default_factory=InferenceSummary)
    stall: Stall | None = None
    non_inference: NonInferenceSummary | None = None
    throughput: Throughput = Field(default_factory=Throughput)
    frames: Frames | None = None
    errors: Errors = Field(default_factory=Errors)
    accuracy: Annotated[F, Unit("share", "correct / classified signs with ground truth")] = None
    accuracy_detail: AccuracyDetail | None = None
    served_by: ServedBy = Field(default_factory=ServedBy)
    # None in documents written before fallbacks were told apart from the old pipeline.
    fallback: Fallback | None = None
    model_versions: Annotated[
        dict[str, int], Unit("count", "answers of one model version", absent_is_zero=True)
    ] = Field(default_factory=dict)
    gpu: Gpu | None = None
    cpu: Annotated[
        dict[str, ProcessCpu], Unit("%", "process", keys=("backend", "torchserve", "harness"))
    ] = Field(default_factory=dict)
    torchserve: TorchServeSummary | None = None
    # Leak gates (None in documents written before drift was fitted).
    memory: Annotated[
        dict[str, ProcessDrift] | None,
        Unit("MB/h", "process", keys=("backend", "torchserve", "harness")),
    ] = None
    drift: LatencyDrift | None = None
    generator: Generator | None = None


# --------------------------------------------------------------------------- faults

_KILL = ("kill_torchserve",)
_START = ("kill_torchserve", "start_torchserve")
_RELOAD = ("reload_model",)


class OutageFault(_Model):
    """A kill_torchserve and its recovery (docs/RESULTS.md "Faults"; run clock, s)."""

    kind: Literal["outage"] = "outage"
    event_index: int
    start_s: float
    end_s: float
    time_to_first_fallback_s: Annotated[
        F,
        Unit(
            "s",
            "wait of the first window answered locally after the kill (from max(kill, its send))",
            needs=_KILL,
        ),
    ] = None
    first_fallback_after_kill_s: Annotated[
        F, Unit("s", "kill to first local answer", needs=_KILL)
    ] = None
    errors_during_failover: Annotated[I, Unit("count", "kill to TorchServe again", needs=_KILL)] = (
        None
    )
    outage_latency_ms: Annotated[WindowLatency | None, Unit("ms", "outage window", needs=_KILL)] = (
        None
    )
    outage_max_stall_ms: Annotated[F, Unit("ms", "longest stall in the outage", needs=_KILL)] = None
    local_share_during_outage: Annotated[
        F, Unit("share", "TorchServe cohort's local share in outage", needs=_KILL)
    ] = None
    recovery_event_index: int | None = None
    restart_s: float | None = None
    ready_s: float | None = None
    recovered_s: float | None = None
    recovery_window_s: list[float] | None = None
    time_to_recover_s: Annotated[
        F, Unit("s", "restart to first TorchServe answer", needs=_START)
    ] = None
    time_to_recover_after_ready_s: Annotated[
        F,
        Unit(
            "s",
            "READY to first TorchServe answer (negative: answered before READY was seen)",
            needs=_START,
        ),
    ] = None
    restart_duration_s: Annotated[F, Unit("s", "how long start_torchserve took", needs=_START)] = (
        None
    )
    recovery_latency_ms: Annotated[
        WindowLatency | None, Unit("ms", "recovery window", needs=_START)
    ] = None
    recovery_max_stall_ms: Annotated[F, Unit("ms", "longest stall in recovery", needs=_START)] = (
        None
    )
    recovery_errors: Annotated[I, Unit("count", "errors in the recovery window", needs=_START)] = (
        None
    )


class ReloadFault(_Model):
    """A reload_model (docs/RESULTS.md "Faults"; run clock, s)."""

    kind: Literal["reload"] = "reload"
    event_index: int
    from_version: str | None = None
    to_version: str | None = None
    start_s: float
    end_s: float | None = None
    time_to_first_new_s: Annotated[F, Unit("s", "reload to first new answer", needs=_RELOAD)] = None
    mixed_window_s: list[float] | None = None
    mixed_window_len_s: Annotated[F, Unit("s", "both versions answering", needs=_RELOAD)] = None
    errors: Annotated[I, Unit("count", "errors in the reload window", needs=_RELOAD)] = None
    local_replies: Annotated[
        I, Unit("count", "TorchServe cohort's local answers in its window", needs=_RELOAD)
    ] = None
    local_share_before: Annotated[
        F, Unit("share", "TorchServe cohort's local share before it", needs=_RELOAD)
    ] = None
    fallbacks: Annotated[I, Unit("count", "local answers the reload caused", needs=_RELOAD)] = None
    p99_around_switch_ms: Annotated[
        F, Unit("ms", "p99 within 2 s of the switch", needs=_RELOAD)
    ] = None
    max_stall_ms: Annotated[F, Unit("ms", "longest stall in the reload window", needs=_RELOAD)] = (
        None
    )
    reload_s: Annotated[F, Unit("s", "how long reload_model took", needs=_RELOAD)] = None


Fault = Annotated[OutageFault | ReloadFault, Field(discriminator="kind")]
FAULT_MODELS: dict[str, type[_Model]] = {"outage": OutageFault, "reload": ReloadFault}


# --------------------------------------------------------------------------- verdict, reasons


class Verdict(enum.StrEnum):
    """The run's verdict: passed/failed by the gates; inconclusive (a rollout short of evidence);
    invalid (untrustworthy); error."""

    PASSED = "passed"
    FAILED = "failed"
    # A rollout step ran out of evidence with nothing failed (exit 4): an answer, not a failure.
    INCONCLUSIVE = "inconclusive"
    INVALID = "invalid"
    ERROR = "error"


class InvalidKind(enum.StrEnum):
    """Why a measurement is INVALID (what to do: :attr:`InvalidReason.hint`)."""

    FELL_BEHIND = "fell_behind"
    CPU_SATURATED = "cpu_saturated"
    SUT_STOPPED_READING = "sut_stopped_reading"
    OVER_RANGE = "over_range"
    TIMELINE_EVENT = "timeline_event"
    INTERRUPTED = "interrupted"
    WORKER_LOST = "worker_lost"  # engine locust: a load worker did not report (or stalled)
    OTHER = "other"  # a version-1 reason the reader could not place


class InvalidReason(_Model):
    """One reason the measurement cannot be trusted.

    ``message``: the sentence shown to people (``str()`` of the reason); ``measured`` and
    ``limit`` in ``unit`` where the reason is a threshold crossed; ``hint``: what to do.
    """

    kind: InvalidKind
    message: str
    measured: float | None = None
    limit: float | None = None
    unit: UnitName | None = None
    hint: str | None = None

    def __str__(self) -> str:
        return self.message


# How version-1 files began each prose reason (their kind, for the reader's upgrade).
V1_PREFIXES: dict[str, InvalidKind] = {
    "generator fell behind": InvalidKind.FELL_BEHIND,
    "generator CPU saturated": InvalidKind.CPU_SATURATED,
    "system under test stopped reading": InvalidKind.SUT_STOPPED_READING,
    "latency above the run's limit": InvalidKind.OVER_RANGE,
    "timeline event": InvalidKind.TIMELINE_EVENT,
    "run interrupted": InvalidKind.INTERRUPTED,
    "load worker lost": InvalidKind.WORKER_LOST,
}


def reason_from_v1(text: str) -> InvalidReason:
    """A version-1 prose reason as an InvalidReason (kind from its prefix, else ``other``)."""
    kind = next((k for p, k in V1_PREFIXES.items() if text.startswith(p)), InvalidKind.OTHER)
    return InvalidReason(kind=kind, message=text)


def reason_text(reason: object) -> str:
    """The sentence of an INVALID reason: a model, its JSON mapping, or version-1 text."""
    if isinstance(reason, InvalidReason):
        return reason.message
    if isinstance(reason, dict) and "message" in reason:
        return str(reason["message"])
    return str(reason)


class GateResult(_Model):
    """One evaluated gate (``threshold`` resolved against the baseline for relative gates).

    ``reason``: why a gate failed, or a note on a passed one (a compare gate passed on "too
    little data"). ``op`` is None for the gates the harness adds (``abort_on_fail: ...``,
    which always fails).
    """

    expr: str
    metric: str
    op: str | None
    threshold: float | None = None
    threshold_hi: float | None = None
    relative: bool = False
    measured: float | None = None
    passed: bool
    reason: str | None = None
    # A ``compare.METRIC != worse`` gate: ``compared`` is the verdict it names, ``verdict`` the
    # comparison's for the metric ("too little data" passes ``!= worse``, with ``reason``
    # saying so); ``measured`` is then the relative change (0.1 = +10 %).
    compared: str | None = None
    verdict: str | None = None


class EventRecord(_Model):
    """A timeline event as executed (run clock, s)."""

    at_s: float
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    started_s: float | None = None
    finished_s: float | None = None
    ok: bool | None = None
    error: str | None = None
    result: Any = None
    # "rollout": a set_rollout the rollout block made (Results.rollout.events); None: the
    # scenario's timeline.
    source: Literal["rollout"] | None = None


class Histograms(_Model):
    """HdrHistograms (``hdrhistogram`` ``.encode()``, base64), mergeable.

    ``unit`` is the unit of the recorded values (microseconds; version-1 files do not say,
    and are microseconds too); range 0 .. reply_timeout_s, 3 significant digits.
    """

    unit: Literal["us"] = "us"
    frame_latency: str | None = None
    frame_latency_uncorrected: str | None = None
    inference_latency: str | None = None
    percentile_curve: dict[str, list[list[float]]] = Field(default_factory=dict)
    windows: dict[str, list[str | None]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- rollout, abort


class CohortLatency(_Model):
    """A cohort's latency percentiles over a judgement window, ms (None: no such reply)."""

    p50: Annotated[F, Unit("ms", "p50", "trend")] = None
    p95: Annotated[F, Unit("ms", "p95", "trend")] = None
    p99: Annotated[F, Unit("ms", "p99", "trend")] = None


class CohortFigures(_Model):
    """One cohort's frames scheduled in a judgement window (harness/analysis/rollout.py)."""

    sessions: Annotated[int, Unit("count", "sessions of the cohort with frames in the window")]
    frames: Annotated[int, Unit("count", "frames scheduled in the window")]
    inferences: Annotated[int, Unit("count", "inference replies without an error")]
    frame_latency_ms: Annotated[CohortLatency, Unit("ms", "frame latency, scheduled to reply")]
    inference_latency_ms: Annotated[CohortLatency, Unit("ms", "latency of inference replies")]
    errors: Annotated[int, Unit("count", "frames errored or lost")]
    error_share: Annotated[F, Unit("share", "errors / frames")] = None
    judged_signs: Annotated[int, Unit("count", "classified frames with a truth")]
    accuracy: Annotated[F, Unit("share", "correct / judged signs")] = None
    local_share: Annotated[F, Unit("share", "inference replies answered by the local engine")] = (
        None
    )


class CohortPair(_Model):
    """Both cohorts' figures side by side."""

    torchserve: CohortFigures = Field(description="sessions routed to TorchServe")
    local: CohortFigures = Field(description="sessions on the old in-process pipeline")


class RolloutEvidence(_Model):
    """A criterion's anytime-valid evidence at one look (harness/analysis/sequential.py):
    each cohort's confidence-sequence interval, in the criterion's unit (None: unbounded yet)."""

    units: str = Field(description='what one observation is ("classifications", "frames"...)')
    n_torchserve: Annotated[int, Unit("count", "TorchServe-cohort observations")]
    n_local: Annotated[int, Unit("count", "old-pipeline-cohort observations")] = 0
    ci_torchserve: list[float | None] = Field(description="[lo, hi] of the TorchServe cohort")
    ci_local: list[float | None] | None = Field(None, description="[lo, hi] of the old cohort")
    fail_above: float | None = Field(
        None, description="the TorchServe cohort's lower bound above this fails the criterion"
    )
    pass_below: float | None = Field(
        None, description="its upper bound at or below this passes the criterion"
    )
    alpha: Annotated[float, Unit("share", "level of each bound a FAIL rests on")]
    alpha_pass: Annotated[F, Unit("share", "level of each bound a PASS rests on")] = None
    needed: int | None = Field(
        None, description="observations the TorchServe cohort still needs, at the least"
    )


class RolloutCriterion(_Model):
    """One criterion of a judgement; ``torchserve``/``local``: each cohort's figure in the
    criterion's unit (ms for latency, a share for errors, fallback and accuracy)."""

    criterion: str = Field(
        description='"frame.p95 latency"-style names, "errors", "fallback", "accuracy"'
    )
    torchserve: float | None = Field(None, description="the TorchServe cohort's figure")
    local: float | None = Field(None, description="the old-pipeline cohort's figure")
    # A mapping so this module stays a leaf (results written before the sequential judge).
    statistics: dict[str, Any] | None = Field(
        None, description="a fixed-sample comparison row (results before issue 19)"
    )
    evidence: RolloutEvidence | None = Field(None, description="the sequential evidence")
    allowance_ms: Annotated[F, Unit("ms", "how far the TorchServe cohort may be above")] = None
    status: Literal["pass", "fail", "n/a"] = Field(description="n/a: not decided yet")
    why: str = Field(description="the figures behind the status, in words")


class RolloutJudgement(_Model):
    """One judgement of a step: the look that decided it (or the last one)."""

    decision: Literal["advance", "hold", "abort", "complete", "continue", "inconclusive"] = Field(
        description="continue: not decided yet; inconclusive: the evidence budget ran out "
        "with nothing failed; complete: the last step passed or had nothing left to "
        "compare against; hold: results before issue 19"
    )
    reason: str = Field(description="why, in words")
    criteria: list[RolloutCriterion] = Field(description="one per criterion judged")
    figures: CohortPair = Field(description="both cohorts' figures over the window")
    window_s: Annotated[
        list[float] | None, Unit("s", "[t0, t1) of the frames judged, run clock")
    ] = None
    at_s: Annotated[F, Unit("s", "when it was judged, run clock")] = None
    look: int | None = Field(None, description="which look of the step (from 1)")
    settle: str | None = Field(
        None, description="what would settle an undecided step, in words (rate, time)"
    )


class RolloutLook(_Model):
    """One look at a step: when, what it said, each criterion's status."""

    at_s: Annotated[float, Unit("s", "run clock")]
    decision: Literal["advance", "abort", "complete", "continue", "inconclusive"]
    status: dict[str, Literal["pass", "fail", "n/a"]] = Field(
        default_factory=dict, description="criterion -> status at this look"
    )


class RolloutStep(_Model):
    """One rollout step as it ran."""

    step: int = Field(description="index in the rollout's steps, from 0")
    percent: Annotated[int, Unit("%", "share of new sessions sent to TorchServe")]
    set_s: Annotated[float, Unit("s", "when the step was asked for, run clock")]
    judgements: list[RolloutJudgement] = Field(
        default_factory=list, description="the deciding look's judgement (one)"
    )
    looks: list[RolloutLook] = Field(default_factory=list, description="every look, in order")
    plan: str | None = Field(None, description="the evidence plan stated at the step's start")
    decision: (
        Literal["advance", "hold", "abort", "complete", "inconclusive", "not judged"] | None
    ) = Field(None, description="the last judgement's; not judged: the load ended during the step")


class RolloutRecord(_Model):
    """The scenario's rollout block as it ran (harness/runner/controller.py)."""

    steps: list[RolloutStep] = Field(default_factory=list, description="in the order run")
    outcome: Literal["running", "completed", "aborted", "inconclusive", "incomplete"] = Field(
        description="inconclusive: a step ran out of evidence with nothing failed; "
        "incomplete: the load ended first"
    )
    reason: str | None = Field(None, description="why it ended so, in words")
    failed_step: int | None = Field(None, description="index of the aborted step")
    inconclusive_step: int | None = Field(None, description="index of the inconclusive step")
    events: list[EventRecord] = Field(
        default_factory=list, description='each set_rollout it made (source "rollout")'
    )
    rolled_back_s: Annotated[F, Unit("s", "when the rollout was set to 0, run clock")] = None
    rollback_error: str | None = Field(None, description="why setting 0 % failed, if it did")


class AbortRecord(_Model):
    """The abort_on_fail gate that stopped the run early (harness/runner/watch.py)."""

    at_s: Annotated[float, Unit("s", "when the gate was lost, run clock")]
    measured_until_s: Annotated[float, Unit("s", "the end of the figures it judged, run clock")]
    gate: str = Field(description="the lost gate's expression")
    measured: float | None = Field(None, description="its metric's value, in the metric's unit")
    reason: str | None = Field(None, description="why it was lost, in words")


# --------------------------------------------------------------------------- sessions, load


class SessionRecord(_Model):
    """One session's lifetime (harness/load/generator.py ``session_record``; run clock)."""

    session: int = Field(description="index, in start order")
    planned_start_s: Annotated[float, Unit("s", "planned start")]
    frames: Annotated[int, Unit("count", "frames planned")]
    sent: Annotated[int, Unit("count", "frames sent")]
    connected_s: Annotated[F, Unit("s", "WebSocket open (None: never connected)")] = None
    closed_s: Annotated[F, Unit("s", "WebSocket closed (None: never closed)")] = None
    lifetime_s: Annotated[F, Unit("s", "connected .. closed")] = None
    connect_ms: Annotated[F, Unit("ms", "WebSocket handshake")] = None
    close_ms: Annotated[F, Unit("ms", "close handshake")] = None
    cohort: str | None = Field(
        None, description='"torchserve" or "local": the route the backend gave it; null: unknown'
    )
    outcome: Literal["ended", "refused", "disconnected", "open", "not started"] = Field(
        description="ended: closed by the harness; refused: connect failed; disconnected: "
        "dropped by the server"
    )


class LoadWorker(_Model):
    """One load worker of engine locust (harness/load/distributed/merge.py ``_worker_doc``);
    counts over the measured window."""

    index: int = Field(description="worker index, from 0")
    name: str = Field(description="index (host pid PID)")
    host: str | None = Field(None, description="the host it ran on")
    status: Literal["done", "missing", "exited", "timeout", "failed"] = Field(
        description="done: it reported its figures; else why not (its frames count lost)"
    )
    detail: str | None = Field(None, description="what happened to a lost worker")
    session_offset: int = Field(description="its first session's index")
    sessions: Annotated[int, Unit("count", "sessions it ran")]
    frames: Annotated[int, Unit("count", "frames scheduled")]
    sent: Annotated[int, Unit("count", "frames sent")]
    answered: Annotated[int, Unit("count", "frames answered")]
    late_share: Annotated[F, Unit("share", "sent frames later than late_threshold_ms")] = None
    cpu_percent: Annotated[F, Unit("%", "its load engine's CPU, one core = 100")] = None
    locust_cpu_percent: Annotated[F, Unit("%", "its Locust runner's CPU")] = None
    messages: Annotated[int, Unit("count", "messages it sent the master")] = 0
    message_bytes: Annotated[int, Unit("count", "bytes of those messages")] = 0


class LoadMaster(_Model):
    """The Locust master (control plane only; empty when it never reported)."""

    bind: str | None = Field(None, description="host:port it listened on")
    messages: Annotated[I, Unit("count", "messages it received")] = None
    message_bytes: Annotated[I, Unit("count", "bytes of those messages")] = None
    handler_cpu_s: Annotated[F, Unit("s", "CPU time its message handlers took")] = None
    cpu_percent: Annotated[F, Unit("%", "its CPU over the run")] = None


class LoadDistribution(_Model):
    """The ``load`` section: engine locust's per-worker figures (absent for engine asyncio)."""

    engine: Literal["locust"] = Field("locust", description="the load engine")
    workers: list[LoadWorker] = Field(default_factory=list, description="by index")
    late_share: Annotated[float, Unit("share", "late frames over every worker's sent frames")]
    max_late_share: Annotated[float, Unit("share", "the limit above which the run is INVALID")]
    master: LoadMaster = Field(default_factory=LoadMaster, description="the Locust master")


class QueryRecord(_Model):
    """One Prometheus query a record links to: the expression, what it is, the server's graph
    of it over the record's interval (``harness.collectors.prometheus_api.graph_link``)."""

    expr: str
    about: str
    link: str = Field(description="the Prometheus graph page of this expression, the interval")


class PrometheusRecord(_Model):
    """The ``prometheus`` section: the Prometheus server the stack ran (``stack.prometheus``;
    absent without one), where its series are kept and the recording rules of the design's
    success metrics (monitoring/rules) with a graph link each over the measured interval. The
    server stops with the stack: the links answer only while it runs, or once its stored data
    is served again (``harness judge --run RUN_DIR`` reads it so)."""

    url: str = Field(description="its HTTP API during the run (a password in it masked)")
    data_dir: str | None = Field(
        None, description="its TSDB in the run dir (local stack); null: not kept (compose)"
    )
    start_unix_s: Annotated[float, Unit("s", "the linked interval's start, unix time")]
    end_unix_s: Annotated[float, Unit("s", "the linked interval's end, unix time")]
    queries: list[QueryRecord] = Field(default_factory=list, description="in the rules' order")


class Provenance(_Model):
    """Where and with what the run was made (no host name: a hash)."""

    git_commit: str | None = None
    git_dirty: bool | None = None
    python: str | None = None
    packages: dict[str, str | None] = Field(default_factory=dict)
    model_archives: dict[str, Any] = Field(default_factory=dict)
    configs: dict[str, Any] = Field(default_factory=dict)
    cpu_model: str | None = None
    cpu_count: int | None = None
    gpu: str | None = None
    hostname_hash: str | None = None
    os: str | None = None


class Results(_Model):
    """The whole ``results.json`` (docs/RESULTS.md).

    ``comparison`` is ``harness.analysis.compare.Comparison`` dumped to JSON; it is kept a
    mapping here so this module stays a leaf (the typed view: ``harness.RunOutcome.comparison``
    or ``Comparison.model_validate``). ``series``: the per-window series (lists of one value
    per 1-s window, keyed by series name).
    """

    schema_: Annotated[Literal["signflow-harness/results"], ALWAYS] = Field(SCHEMA, alias="schema")
    schema_version: Annotated[Literal[1, 2], ALWAYS] = SCHEMA_VERSION
    run_id: str
    name: str
    started_at: str
    finished_at: Annotated[str | None, ALWAYS] = None
    scenario: dict[str, Any]
    scenario_yaml: str
    valid: bool
    invalid_reasons: Annotated[list[InvalidReason], ALWAYS] = Field(default_factory=list)
    verdict: Verdict
    error: str | None = None
    summary: Summary
    series: dict[str, Any]
    histograms: Histograms
    events: Annotated[list[EventRecord], ALWAYS] = Field(default_factory=list)
    faults: Annotated[list[Fault], ALWAYS] = Field(default_factory=list)
    gates: Annotated[list[GateResult], ALWAYS] = Field(default_factory=list)
    comparison: Annotated[dict[str, Any] | None, ALWAYS] = None
    provenance: Annotated[Provenance, ALWAYS] = Field(default_factory=Provenance)
    rollout: RolloutRecord | None = None
    aborted: AbortRecord | None = None
    # The first MAX_SESSION_RECORDS sessions (harness.runner.execute), in start order.
    sessions: list[SessionRecord] | None = None
    sessions_truncated: bool | None = None
    run_dir: str | None = None
    load: LoadDistribution | None = None
    prometheus: PrometheusRecord | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @field_validator("invalid_reasons", mode="before")
    @classmethod
    def _prose_reasons(cls, value: object) -> object:
        """Version 1 wrote each reason as a sentence: read as its InvalidReason (kind from the
        sentence's prefix, :func:`reason_from_v1`)."""
        if isinstance(value, list):
            return [reason_from_v1(r) if isinstance(r, str) else r for r in value]
        return value


# What a partial document's absent sections read as (``results_of``): no run id, name or
# scenario, nothing measured, no verdict. ``valid`` absent is not a recorded INVALID: only a
# recorded false makes a run invalid (harness.results.verdict).
_ABSENT: dict[str, object] = {
    "run_id": "", "name": "", "started_at": "", "scenario": {}, "scenario_yaml": "",
    "valid": True, "verdict": "error", "summary": {}, "series": {}, "histograms": {},
}  # fmt: skip


def results_of(doc: Document) -> Results:
    """A parsed results document as :class:`Results`, partial ones too (a run that never
    measured, a hand-made page input, version 1 not upgraded): null or absent top-level
    sections read as absent (``model_fields_set`` tells which were given). Raises pydantic's
    ValidationError for a section of the wrong shape. ``harness.results.writer.read_results``
    is the checked reader of files."""
    given = {k: v for k, v in doc.items() if v is not None}
    return Results.model_validate({**_ABSENT, **given})


def unknown_keys(model: BaseModel, path: str = "") -> list[str]:
    """Dotted paths of every key under ``model`` that its models do not declare (they were
    kept as extras): what a writer wrote beyond this contract. Empty for a document the
    harness writes now (tests check it); an older file may have some (renamed keys)."""
    out = [f"{path}.{k}".lstrip(".") for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = list(value.values()) if isinstance(value, dict) else value
        for v in values if isinstance(values, list) else [values]:
            if isinstance(v, BaseModel):
                out += unknown_keys(v, f"{path}.{name}")
    return out


# --------------------------------------------------------------------------- metric catalogue

ANY = "*"  # a path segment whose names come from the data (error codes, model versions)


@dataclass(frozen=True)
class Metric:
    """One gateable metric: a dotted ``pattern`` (``*`` = any name), unit, type, meaning.

    See :class:`Unit` for ``needs``, ``absent_is_zero`` and ``optional``. A trailing ``*`` takes
    the rest of the path as one key (model versions contain dots).
    """

    pattern: str
    unit: UnitName
    about: str
    type: MetricType = "gauge"
    needs: tuple[str, ...] = ()
    absent_is_zero: bool = False
    optional: bool = False


def _unit_of(annotation: Any) -> tuple[Any, Unit | None]:
    """(the annotation without Annotated, its Unit metadata)."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        return base, next((m for m in meta if isinstance(m, Unit)), None)
    return annotation, None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside ``X | None`` (None when the type holds no model)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        return next((m for a in get_args(annotation) if (m := _model_in(a)) is not None), None)
    return None


def _dict_value(annotation: Any) -> Any | None:
    """V of ``dict[str, V]`` (or ``dict[str, V] | None``), else None."""
    if get_origin(annotation) is dict:
        return get_args(annotation)[1]
    if get_origin(annotation) in (Union, types.UnionType):
        return next((v for a in get_args(annotation) if (v := _dict_value(a)) is not None), None)
    return None


def _walk(model: type[BaseModel], prefix: str, parent: Unit | None) -> Iterator[Metric]:
    hints = typing.get_type_hints(model, include_extras=True)
    for name in model.model_fields:
        base, unit = _unit_of(hints[name])
        path = f"{prefix}.{name}" if prefix else name
        sub = _model_in(base)
        value = _dict_value(base)
        if sub is not None:
            yield from _walk(sub, path, unit or parent)
        elif value is not None and (vsub := _model_in(value)) is not None and unit is not None:
            for key in unit.keys or (ANY,):
                for m in _walk(vsub, f"{path}.{key}", None):
                    about = f"{key} {m.about}" if unit.keys else m.about
                    yield Metric(m.pattern, m.unit, about, m.type, m.needs)
        elif unit is not None:
            pattern = f"{path}.{ANY}" if value is not None else path
            about = f"{parent.about}: {unit.about}" if parent is not None else unit.about
            needs = unit.needs or (parent.needs if parent is not None else ())
            yield Metric(
                pattern,
                unit.unit,
                about,
                unit.metric_type,
                needs,
                unit.absent_is_zero,
                unit.optional,
            )


def _catalogue() -> tuple[Metric, ...]:
    out = list(_walk(Summary, "", None))
    for kind, model in FAULT_MODELS.items():
        out += _walk(model, f"faults.{kind}", None)
    return tuple(out)


METRICS: tuple[Metric, ...] = _catalogue()

# Names that gates used before a rename: refused, with the new name as the suggestion.
RENAMED = {
    "faults.outage.start_torchserve_s": "faults.outage.restart_duration_s",
    "torchserve.inference_ms_mean": "torchserve.end_to_end_ms_mean",
}


def split_metric(pattern: str, path: str) -> list[str] | None:
    """``path``'s keys aligned on ``pattern`` (None when it does not match)."""
    a, b = pattern.split("."), path.split(".")
    if a[-1] == ANY and len(b) > len(a):
        b = [*b[: len(a) - 1], ".".join(b[len(a) - 1 :])]
    if len(a) != len(b) or not all(x in (ANY, y) for x, y in zip(a, b, strict=True)):
        return None
    return b


def metric_spec(path: str) -> Metric | None:
    """The catalogue entry of a metric path (None when it is not a gate metric)."""
    return next((m for m in METRICS if split_metric(m.pattern, path) is not None), None)


def check_metric(path: str, actions: Iterable[str] | None = None) -> str | None:
    """Why ``path`` cannot be gated (None when it can).

    ``actions``: the timeline's actions, to refuse a fault metric the run cannot measure; None
    skips that check.
    """
    spec = metric_spec(path)
    if spec is None and path in RENAMED:
        return f"unknown metric '{path}'; did you mean '{RENAMED[path]}'? (renamed)"
    if spec is None:
        names = [m.pattern for m in METRICS if ANY not in m.pattern]
        hint = difflib.get_close_matches(path, names, n=1, cutoff=0.6)
        tip = f"; did you mean '{hint[0]}'?" if hint else ""
        head = path.split(".")[0]
        family = sorted({m.pattern for m in METRICS if m.pattern.split(".")[0] == head})
        more = ", ..." if len(family) > 6 else ""
        known = f" (known under '{head}': {', '.join(family[:6])}{more})"
        return f"unknown metric '{path}'{tip}{known if family and not hint else ''}"
    if actions is not None:
        have = set(actions)
        missing = [a for a in spec.needs if a not in have]
        if missing:
            return (
                f"'{path}' needs {' and '.join(missing)} in the timeline (this scenario has "
                f"{', '.join(sorted(have)) or 'no timeline events'}): it could never be measured"
            )
    return None
