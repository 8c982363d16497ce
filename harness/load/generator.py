"""The open-loop load generator: N WebSocket sessions streaming traces at a fixed frame rate.

Session i starts at ``base + i * spread / sessions`` (spread = ramp_up_s, at least one frame
period so sessions never fire in lock-step) and sends frame k at ``start_i + k / fps`` until
``duration_s`` on the RunClock. ``base`` is ``CONNECT_LEAD_S`` after ``run()`` is entered,
so every session can connect before its first frame is due. After the last frame the
generator waits up to ``reply_timeout_s`` for outstanding replies, then closes everything.

Whatever the server does, ``run()`` returns by ``duration_s + reply_timeout_s + END_GRACE_S``
on the RunClock: sends never wait for the server (a frame that finds its session's send buffer
full is counted unsent), connecting is bounded by the end of the sending period, and closing by
``CLOSE_TIMEOUT_S`` (then the connection is aborted).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import numpy as np
import numpy.typing as npt

from harness.clock import RunClock
from harness.load.recording import (
    FRAME_DTYPE,
    FrameArray,
    LoadResult,
    SessionOutcome,
    SessionRecord,
)
from harness.load.scheduler import SendScheduler
from harness.load.selfcheck import (
    CPU_SATURATED_PERCENT,
    CpuMeter,
    invalid_reasons,
    over_range_reason,
    sut_stopped_reason,
)
from harness.load.session import CLOSE_TIMEOUT_S, NONE_CODE, SEND_DEADLINE_S, Session
from harness.load.trace import PreparedTrace, TraceError, TraceFrame, prepare_trace
from harness.results.model import fallback_share
from harness.scenario.traffic import CONNECT_LEAD_S, PlannedSession

# A session task still running this long after duration_s (a connect or a send the server never
# completes) is cancelled; with the close bound this is the whole slack past the reply wait.
SEND_GRACE_S = SEND_DEADLINE_S
END_GRACE_S = SEND_GRACE_S + CLOSE_TIMEOUT_S + 0.5
MAX_LABELS = 32_000  # label codes are int16
T = TypeVar("T")


@dataclass
class LoadConfig:
    """What to send: ``traces(i)`` gives session i's frames (looped when shorter than needed)."""

    ws_url: str
    sessions: int
    fps: float
    duration_s: float
    warmup_s: float
    ramp_up_s: float
    traces: Callable[[int], Sequence[TraceFrame]]
    late_threshold_ms: float = 5.0
    reply_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    # One worker's share of a distributed run (harness.load.distributed): its sessions are
    # sessions ``session_offset .. session_offset + sessions - 1`` of ``total_sessions`` and
    # start where they would in a one-process run; ``start_s`` (run clock) replaces the
    # "CONNECT_LEAD_S after run() is entered" base, so every worker schedules from the same t0.
    session_offset: int = 0
    total_sessions: int | None = None
    start_s: float | None = None
    # Sessions that come and go (harness.scenario.traffic); None: ``sessions`` for the whole run.
    plan: list[PlannedSession] | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first field out of range."""
        checks = [
            (
                "ws_url",
                self.ws_url.startswith(("ws://", "wss://")),
                "must start with ws:// or wss://",
            ),
            ("sessions", self.sessions >= 1 or self.plan is not None, "must be >= 1"),
            ("plan", self.plan is None or len(self.plan) > 0, "holds no session"),
            ("fps", self.fps > 0, "must be > 0"),
            ("duration_s", self.duration_s > 0, "must be > 0"),
            ("warmup_s", 0 <= self.warmup_s < self.duration_s, "must be in [0, duration_s)"),
            ("ramp_up_s", self.ramp_up_s >= 0, "must be >= 0"),
            ("session_offset", self.session_offset >= 0, "must be >= 0"),
            (
                "total_sessions",
                self.total_sessions is None
                or self.total_sessions >= self.session_offset + self.sessions,
                "must be >= session_offset + sessions",
            ),
            (
                "start_s",
                self.start_s is None or CONNECT_LEAD_S <= self.start_s < self.duration_s,
                f"must be in [{CONNECT_LEAD_S:g}, duration_s) (sessions connect before it)",
            ),
            ("late_threshold_ms", self.late_threshold_ms > 0, "must be > 0"),
            (
                "reply_timeout_s",
                math.isfinite(self.reply_timeout_s) and self.reply_timeout_s > 0,
                "must be a finite number > 0 (it is also the latency histograms' range)",
            ),
        ]
        for name, ok, msg in checks:
            if not ok:
                raise ValueError(f"LoadConfig.{name} {msg} (got {getattr(self, name)!r})")


@dataclass
class LiveStats:
    """A snapshot for the progress display."""

    elapsed: float
    remaining: float
    frames_per_s: float
    p95_ms: float | None
    errors: int
    # Classifications answered in the last second, by cohort: ``fallbacks`` the TorchServe
    # cohort's answered locally, of ``inferences_torchserve_cohort``; the old pipeline's are
    # local by design. ``fallback_share``: harness.results.model.fallback_share of them.
    fallback_share: float | None
    sessions_connected: int = 0
    generator_cpu_percent: float | None = None
    sessions_started: int = 0
    sessions_ended: int = 0
    sessions_refused: int = 0
    cohorts: dict[str, int] | None = None  # open sessions by rollout cohort
    fallbacks: int = 0
    inferences_torchserve_cohort: int = 0
    inferences_old_pipeline: int = 0


class LoadGenerator:
    """Runs a LoadConfig on a RunClock; one process, one event loop."""

    def __init__(self, config: LoadConfig, clock: RunClock) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self._labels: list[str] = []
        self._codes: dict[str, int] = {}
        self._sessions: list[Session] = []
        self._prepared: list[PreparedTrace] | None = None
        self._finishers: list[asyncio.Task[None]] = []
        # One scheduler sends every session's frames (harness.load.scheduler), made in run().
        self._scheduler: SendScheduler | None = None
        self._cpu = CpuMeter()
        self._live_prev: tuple[float, int] | None = None
        self._running = False
        # Set when run() is cancelled (Ctrl-C): what was measured before, so nothing is lost.
        self.partial: LoadResult | None = None

    # --- labels --------------------------------------------------------------------------
    def _intern(self, label: str) -> int:
        code = self._codes.get(label)
        if code is None:
            if len(self._labels) >= MAX_LABELS:
                return self._intern("<other>") if label != "<other>" else NONE_CODE
            code = len(self._labels)
            self._codes[label] = code
            self._labels.append(label)
        return code

    # --- set-up --------------------------------------------------------------------------
    def _prepare_traces(self) -> list[PreparedTrace]:
        """Every session's trace serialised (sessions sharing a trace object share the result).

        Serialising is ~0.1 s per 1,000 frames of JSON on this machine (8 synthetic variants of
        ~1,200 frames took 1.3 s): done inside the run, it made the first seconds of every
        session late, and latency is measured from the schedule.
        """
        if self._prepared is not None:
            return self._prepared
        cfg = self.config
        cache: dict[int, tuple[Sequence[TraceFrame], PreparedTrace]] = {}
        out: list[PreparedTrace] = []
        count = len(cfg.plan) if cfg.plan is not None else cfg.sessions
        for i in range(count):
            frames = cfg.traces(i)
            # Sessions usually share one trace object: serialise it once.
            cached = cache.get(id(frames))
            if cached is None or cached[0] is not frames:
                if not frames:
                    raise TraceError(f"trace of session {i} holds no frames")
                cached = (frames, prepare_trace(frames, self._intern))
                cache[id(frames)] = cached
            out.append(cached[1])
        self._prepared = out
        return out

    def _build_sessions(self, base: float, prepared: Sequence[PreparedTrace]) -> None:
        cfg = self.config
        spread = max(cfg.ramp_up_s, 1.0 / cfg.fps)
        total = cfg.total_sessions or cfg.sessions
        for i, trace in enumerate(prepared):
            if cfg.plan is None:
                start = base + (cfg.session_offset + i) * spread / total
                end = cfg.duration_s
            else:
                start = base + cfg.plan[i].start_s
                end = min(base + cfg.plan[i].end_s, cfg.duration_s)
            n = max(math.ceil((end - start) * cfg.fps - 1e-9), 0)
            self._sessions.append(
                Session(i, start, n, cfg.fps, trace, self._intern, self.clock.now)
            )

    # --- run -----------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Serialise the traces before t0 (in a thread: the loop stays free). Optional: run()
        does it itself when it was not called, before it fixes the schedule's base."""
        await asyncio.to_thread(self._prepare_traces)

    async def run(self) -> LoadResult:
        """Stream every session, drain replies, close; returns the recorded LoadResult."""
        prepared = self._prepare_traces()  # before the base: a no-op after prepare()
        if not self.clock.started:
            self.clock.start()
        base = self.config.start_s
        if base is None:
            base = self.clock.now() + CONNECT_LEAD_S
        self._build_sessions(base, prepared)
        scheduler = self._scheduler = SendScheduler(self.clock.now)
        self._cpu.start()
        self._running = True
        receivers: list[asyncio.Task[None]] = []
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                tasks = [
                    asyncio.create_task(self._run_session(s, http, receivers))
                    for s in self._sessions
                ]
                try:
                    # Sessions end on their own by duration_s; one stuck in a connect or a send
                    # the server never completes is cut at the end of the sending period.
                    end = self.config.duration_s + SEND_GRACE_S
                    done, stuck = await asyncio.wait(tasks, timeout=max(end - self.clock.now(), 0))
                    for t in stuck:
                        t.cancel()
                    for t in done:
                        t.result()  # a session's own error (a bad trace) still ends the run
                    cpu_percent = self._cpu.stop()
                    await self._drain()
                    # Sessions that left before the end are closing on their own.
                    if self._finishers:
                        await asyncio.wait(self._finishers, timeout=CLOSE_TIMEOUT_S + 0.5)
                except asyncio.CancelledError:
                    # Snapshot now: every frame inside the cut has had reply_timeout_s to be
                    # answered, the wait a full run gives its last frames.
                    self.partial = self._partial_result(self.clock.now())
                    raise
                finally:
                    for t in tasks:
                        t.cancel()
                    await scheduler.aclose()
                    for s in self._sessions:
                        s.closing = True
                    await asyncio.gather(*(s.close() for s in self._sessions))
                    for r in receivers:
                        r.cancel()
                    for f in self._finishers:
                        f.cancel()
                    await asyncio.gather(
                        *tasks, *receivers, *self._finishers, return_exceptions=True
                    )
        finally:
            self._running = False
        return self._result(cpu_percent)

    def _partial_result(self, cancelled_at: float) -> LoadResult | None:
        """The run cut short at cancellation, judged by the same rule as a full run.

        A full run gives every frame ``reply_timeout_s`` to be answered, so the cut keeps only
        frames scheduled at least that long before the interrupt: an unanswered frame inside
        the cut is really lost, not merely in flight. None when the cut leaves nothing past the
        warm-up.
        """
        cut = min(cancelled_at - self.config.reply_timeout_s, self.config.duration_s)
        if cut <= self.config.warmup_s:
            return None
        cpu_percent = self._cpu.percent if self._cpu.percent is not None else self._cpu.stop()
        return self._result(cpu_percent, cut_s=cut)

    def partial_now(self) -> LoadResult | None:
        """What a cut at this moment would keep (the abort-on-fail check's view of the run):
        frames scheduled at least ``reply_timeout_s`` ago; None when that is not past warm-up."""
        cut = min(self.clock.now() - self.config.reply_timeout_s, self.config.duration_s)
        if cut <= self.config.warmup_s or not self._sessions:
            return None
        return self._result(self._cpu.current(), cut_s=cut)

    async def _run_session(
        self, s: Session, http: aiohttp.ClientSession, receivers: list[asyncio.Task[None]]
    ) -> None:
        if s.n == 0:
            s.done_sending.set()
            s.all_answered.set()
            return
        await self.clock.sleep_until(s.start_t - CONNECT_LEAD_S)
        # Connecting past the sending period is pointless: no frame would be due any more.
        timeout = min(
            self.config.connect_timeout_s, max(self.config.duration_s - self.clock.now(), 0.01)
        )
        try:
            ok = await asyncio.wait_for(s.connect(http, self.config.ws_url, timeout), timeout)
        except TimeoutError:
            s.connect_failed = True
            s.done_sending.set()
            s.all_answered.set()
            ok = False
        if not ok:
            return
        receivers.append(asyncio.create_task(s.receive_loop()))
        assert self._scheduler is not None  # made by run() before any session starts
        await self._scheduler.stream(s)
        if (
            self.config.plan is not None
            and s.t_scheduled[-1] + 2.0 / s.fps < self.config.duration_s
        ):
            # A session that leaves before the run ends: its last replies, then its close
            # (timed: the disconnect cost), while the others keep streaming.
            self._finishers.append(asyncio.create_task(self._finish(s)))

    async def _finish(self, s: Session) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.all_answered.wait(), self.config.reply_timeout_s)
        if s.disconnected:
            return
        await s.close()
        s.ended = not s.disconnected

    async def _drain(self) -> None:
        last = max((s.t_scheduled[-1] for s in self._sessions if s.n), default=0.0)
        deadline = max(last, self.clock.now()) + self.config.reply_timeout_s
        waits = [s.all_answered.wait() for s in self._sessions]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), max(deadline - self.clock.now(), 0))

    def _result(self, cpu_percent: float, cut_s: float | None = None) -> LoadResult:
        cfg = self.config
        total = sum(s.n for s in self._sessions)
        frames = np.empty(total, dtype=FRAME_DTYPE)
        pos = 0
        for s in self._sessions:
            sl = slice(pos, pos + s.n)
            frames["session"][sl] = s.index
            frames["frame_idx"][sl] = np.arange(s.n)
            frames["t_scheduled"][sl] = s.t_scheduled
            frames["t_sent"][sl] = s.t_sent
            frames["t_reply"][sl] = s.t_reply
            frames["served_by"][sl] = s.served_by
            frames["model_version"][sl] = s.model_version
            frames["prediction"][sl] = s.prediction
            frames["truth"][sl] = s.truth
            frames["error_code"][sl] = s.error_code
            pos += s.n
        if cut_s is not None:
            frames = frames[frames["t_scheduled"] < cut_s]
        result = LoadResult(
            frames=frames,
            labels=list(self._labels),
            fps=cfg.fps,
            duration_s=cfg.duration_s if cut_s is None else cut_s,
            warmup_s=cfg.warmup_s,
            late_threshold_ms=cfg.late_threshold_ms,
            disconnects=sum(1 for s in self._sessions if s.disconnected),
            send_failures=sum(s.send_failures for s in self._sessions),
            generator_late_share=0.0,
            generator_cpu_percent=cpu_percent,
            generator_cpu_saturated=cpu_percent >= CPU_SATURATED_PERCENT,
            connect_failures=sum(1 for s in self._sessions if s.connect_failed),
            unmatched_replies=sum(s.unmatched_replies for s in self._sessions),
            latency_limit_s=cfg.reply_timeout_s,
            unsent=sum(s.unsent for s in self._sessions),
            sessions=[self.session_record(s) for s in self._sessions],
        )
        # Late share over the measured window's sent frames (all frames if none measured).
        sent = ~np.isnan(frames["t_sent"])
        scope = sent & result.measured_mask()
        if not scope.any():
            scope = sent
        n = int(np.count_nonzero(scope))
        late = int(np.count_nonzero(result.late_mask() & scope))
        result.generator_late_share = late / n if n else 0.0
        result.invalid_reasons = invalid_reasons(
            result.generator_late_share, cfg.late_threshold_ms, cpu_percent, n
        )
        silent_from, unanswered = self._silence(frames)
        result.silent_from_s = silent_from
        over = result.over_range()
        for reason in (
            sut_stopped_reason(result.unsent, unanswered, silent_from, cfg.reply_timeout_s),
            over_range_reason(over["count"], over["max_ms"], over["limit_ms"]),
        ):
            if reason:
                result.invalid_reasons.append(reason)
        return result

    def cohort_of(self, s: Session) -> str | None:
        """Session ``s``'s rollout cohort ("torchserve", "local" or None: not known yet)."""
        return s.cohort_or_evidence(self._codes.get)

    def session_record(self, s: Session) -> SessionRecord:
        """One session's lifetime for the results (run clock, s; connect/close cost in ms)."""

        def ms(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((b - a) * 1000.0, 3)

        outcome: SessionOutcome
        if s.connect_failed:
            outcome = "refused"
        elif s.disconnected:
            outcome = "disconnected"
        elif s.ended or s.closed_at is not None:
            outcome = "ended"
        elif s.connected_at is not None:
            outcome = "open"
        else:
            outcome = "not started"
        return {
            "session": s.index,
            "planned_start_s": round(s.start_t, 4),
            "frames": s.n,
            "sent": s.sent,
            "connected_s": s.connected_at,
            "closed_s": s.closed_at,
            "lifetime_s": (
                None if s.connected_at is None or s.closed_at is None
                else round(s.closed_at - s.connected_at, 4)
            ),
            "connect_ms": ms(s.connect_started, s.connected_at),
            "close_ms": ms(s.close_started, s.closed_at),
            "cohort": self.cohort_of(s),
            "outcome": outcome,
        }  # fmt: skip

    def sessions_now(self) -> list[Session]:
        """The sessions of the run (read-only use: the rollout judge, live outputs)."""
        return self._sessions

    def label_code(self, label: str) -> int | None:
        """The code of a reply label (served_by, error code...), None when never seen."""
        return self._codes.get(label)

    def _silence(self, frames: FrameArray) -> tuple[float | None, int]:
        """(when the server went silent, frames sent since and never answered).

        Silent means: frames were still being sent more than ``reply_timeout_s`` after its last
        reply (after the first send, when it never answered) and none of those was answered. A
        server merely slower than the timeout still answers while the load runs, so it is not
        silent (its slow replies are ``OVER_RANGE``). None when it did not go silent.
        """
        sent = frames["t_sent"][~np.isnan(frames["t_sent"])]
        if not sent.size:
            return None, 0
        replies = [s.last_reply_t for s in self._sessions if s.last_reply_t is not None]
        since = max(replies) if replies else float(sent.min())
        if float(sent.max()) - since <= self.config.reply_timeout_s:
            return None, 0
        with np.errstate(invalid="ignore"):
            after = (frames["t_sent"] > since) & np.isnan(frames["t_reply"])
        return since, int(np.count_nonzero(after))

    # --- live ----------------------------------------------------------------------------
    def latencies_between(self, lo_s: float, hi_s: float) -> npt.NDArray[np.float64]:
        """Corrected latencies (s) of the answered frames scheduled in [lo_s, hi_s) on the run
        clock, so far (a distributed worker's per-second live histogram)."""
        out: list[npt.NDArray[np.float64]] = []
        for s in self._sessions:
            lo, hi = np.searchsorted(s.t_scheduled, (lo_s, hi_s))
            if hi > lo:
                lat = s.t_reply[lo:hi] - s.t_scheduled[lo:hi]
                out.append(lat[~np.isnan(lat)])
        return np.concatenate(out) if out else np.empty(0, dtype=np.float64)

    def live(self) -> LiveStats:
        """Progress snapshot: rates since the previous call, p95 over the last ~2 s."""
        cfg = self.config
        try:
            now = self.clock.now()
        except RuntimeError:
            now = 0.0
        answered = sum(s.answered for s in self._sessions)
        prev = self._live_prev
        wall = time.perf_counter()
        fps = (answered - prev[1]) / (wall - prev[0]) if prev and wall > prev[0] else 0.0
        self._live_prev = (wall, answered)
        lat: list[npt.NDArray[np.float64]] = []
        ts_inf = old_inf = fallbacks = 0
        local_code = self._codes.get("local", -2)
        for s in self._sessions:
            # Classifications by the time their reply ARRIVED in the last second, so a
            # fallback shows on the first tick after it happened (the latency window below
            # waits for replies of frames scheduled up to 0.5 s ago).
            lo, hi = np.searchsorted(s.t_scheduled, (now - cfg.reply_timeout_s - 1.0, now))
            if hi > lo:
                rep = s.t_reply[lo:hi]
                with np.errstate(invalid="ignore"):
                    recent = (rep >= now - 1.0) & (rep < now)
                served = s.served_by[lo:hi][recent]
                n = int(np.count_nonzero(served >= 0))
                if n and self.cohort_of(s) == "torchserve":
                    ts_inf += n
                    fallbacks += int(np.count_nonzero(served == local_code))
                else:
                    old_inf += n
            lo, hi = np.searchsorted(s.t_scheduled, (now - 2.5, now - 0.5))
            if hi <= lo:
                continue
            rep = s.t_reply[lo:hi]
            ok = ~np.isnan(rep)
            lat.append((rep - s.t_scheduled[lo:hi])[ok])
        joined = np.concatenate(lat) if lat else np.empty(0)
        errors = sum(
            int(np.count_nonzero(s.error_code[: s.sent] >= 0))
            + s.send_failures
            + int(s.disconnected)
            + int(s.connect_failed)
            for s in self._sessions
        )
        cohorts: dict[str, int] = {}
        started = ended = refused = 0
        for s in self._sessions:
            if s.connect_failed:
                refused += 1
            if s.connected_at is None:
                continue
            started += 1
            if s.closed_at is not None or s.disconnected:
                ended += 1
                continue
            key = s.cohort or "unknown"
            cohorts[key] = cohorts.get(key, 0) + 1
        return LiveStats(
            sessions_started=started,
            sessions_ended=ended,
            sessions_refused=refused,
            cohorts=cohorts,
            elapsed=now,
            remaining=max(cfg.duration_s - now, 0.0),
            frames_per_s=fps,
            p95_ms=float(np.percentile(joined, 95) * 1000) if joined.size else None,
            errors=errors,
            fallback_share=fallback_share(fallbacks, ts_inf, old_inf),
            fallbacks=fallbacks,
            inferences_torchserve_cohort=ts_inf,
            inferences_old_pipeline=old_inf,
            sessions_connected=sum(cohorts.values()),  # open now: connected, not yet closed
            generator_cpu_percent=self._cpu.current() if self._running else self._cpu.percent,
        )


def run_with_best_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when installed (about 1.5x less generator CPU per frame measured
    in benchmarks/ws_client_candidates.py), else on the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
