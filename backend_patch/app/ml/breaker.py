"""The TorchServe client's circuit breaker: a streak of failures over time, half-open probes,
and every outcome judged in the epoch its call was sent in.

Why epochs (Polly's "overhanging calls", App-vNext/Polly#1325): a call outlives the circuit
state it was sent in. Calls sent while the circuit was closed may time out seconds later, after
the circuit opened and closed again; counting those failures in the new closed period re-opens
a circuit that its probes just proved healthy, and a late success of such a call would close a
circuit that no probe vouched for. So every state change (open, close) starts a new *epoch*,
every admitted call carries the epoch it was sent in (:class:`Call`), and an outcome is only
counted when its call's epoch is still the current one: failures, successes (fast or slow),
hedges lost and probes alike. A stale outcome only frees the probe slot it may hold.

Everything here runs on one event loop thread; nothing is locked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Call", "CircuitBreaker", "CircuitState"]

log = logging.getLogger("backend_patch.app.ml.torchserve_client")

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Call:
    """One call the breaker let through: ``epoch`` it was sent in, ``probe`` whether it holds
    the half-open probe slot (a shadow probe, or the first user call after the cool-down when
    user calls probe)."""

    epoch: int
    probe: bool = False


class CircuitBreaker:
    """Circuit breaker that judges a streak of failures over time, with half-open probes.

    It opens when a *streak* (failures with no success in between: a success ends it) holds
    ``failures`` of them and either holds a *conclusive* one (a call that failed: refused, no
    connection, deadline, 5xx, bad key or answer) or spans at least ``window_s`` (first to
    latest failure). Inconclusive failures are hedges the local engine won: TorchServe was
    slower than the hedge delay, which one slow batch explains as well as a hung server. Those
    arrive together and are one piece of evidence (windows queued behind one slow batch lose
    their hedges within a few milliseconds of each other although TorchServe answers them
    moments later), while a hung TorchServe keeps losing them for the whole window. A failed
    call needs no such wait, so a dead TorchServe (refused, or unreachable: see
    ``TorchServeClient.record_hedge_loss``) opens it as fast as before, ``failures`` in a row.

    Outcomes count in the epoch their call was sent in (module doc): ``admit()`` /
    ``admit_probe()`` hand out a :class:`Call`, and ``record_*`` take it back. Open, the
    circuit stays so for ``cooldown_s``, then turns half-open; ``probe_successes`` consecutive
    successful probes close it; one probe at a time is let through while half-open.
    ``clock`` (seconds, default ``time.monotonic``) is injectable for tests.
    Raises ValueError for a setting out of range (named as its env setting).
    """

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe_successes: int = 1,
        window_s: float = 0.0,
    ) -> None:
        if failures < 1:
            raise ValueError(f"breaker_failures must be >= 1, got {failures}")
        if cooldown_s < 0:
            raise ValueError(f"breaker_cooldown_s must be >= 0, got {cooldown_s}")
        if probe_successes < 1:
            raise ValueError(f"probe_successes must be >= 1, got {probe_successes}")
        if window_s < 0:
            raise ValueError(f"breaker_window_s must be >= 0, got {window_s}")
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._probe_successes = probe_successes
        self._window_s = window_s
        self._clock = clock
        self._epoch = 0
        self._streak = 0
        self._streak_since: float | None = None
        self._streak_conclusive = False
        self._good_probes = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self.stale_outcomes = 0  # outcomes of calls sent before the last state change

    @property
    def state(self) -> CircuitState:
        """``closed``, ``open`` (cooling down) or ``half_open`` (a probe may go / is going)."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self._cooldown_s:
            return "open"
        return "half_open"

    @property
    def epoch(self) -> int:
        """The current epoch: 0 at start, +1 at every opening and every closing."""
        return self._epoch

    @property
    def streak(self) -> int:
        """Failures in the current streak (0 after a success)."""
        return self._streak

    def now(self) -> Call:
        """Evidence observed now that belongs to no earlier call (a user call's epoch is
        unknown): counted in the current epoch, never a probe."""
        return Call(self._epoch)

    def admit(self) -> Call | None:
        """A user call may go out now (closed), or as THE probe when half-open and no probe
        is in flight (callers whose user calls probe); None: refused."""
        state = self.state
        if state == "closed":
            return Call(self._epoch)
        if state == "open" or self._probe_in_flight:
            return None
        self._probe_in_flight = True
        return Call(self._epoch, probe=True)

    def admit_probe(self) -> Call | None:
        """A shadow probe may go out now: half-open and no probe in flight; else None."""
        if self.state != "half_open" or self._probe_in_flight:
            return None
        self._probe_in_flight = True
        return Call(self._epoch, probe=True)

    def record_success(self, call: Call, *, slow: bool = False) -> None:
        """``call`` was answered. A user call ends the streak, unless ``slow`` (answered later
        than the caller's bar: alive, not healthy, so the streak goes on). A probe counts toward
        closing; a ``slow`` probe keeps the circuit half-open and starts the count again."""
        if not self._current(call):
            return
        if call.probe:
            if slow:
                self._good_probes = 0
                return
            self._good_probes += 1
            if self._good_probes >= self._probe_successes:
                log.info("torchserve circuit closed after %d good probe(s)", self._good_probes)
                self._close()
            return
        if not slow:
            self._reset_streak()

    def record_failure(self, call: Call, *, conclusive: bool = True) -> None:
        """``call`` failed: extend the streak and open when it is enough; a probe re-opens.

        ``conclusive`` False: a hedge lost, which needs a streak over ``window_s`` (class doc).
        """
        if not self._current(call):
            return
        now = self._clock()
        if call.probe:
            self._open(now, "a failed probe")
            return
        if self._opened_at is not None:
            return  # cannot happen in the call's own epoch; kept as a guard
        if self._streak_since is None:
            self._streak_since = now
        self._streak += 1
        self._streak_conclusive = self._streak_conclusive or conclusive
        span = now - self._streak_since
        if self._streak >= self._threshold and (self._streak_conclusive or span >= self._window_s):
            self._open(
                now,
                f"{self._streak} consecutive failures over {span * 1000:.0f} ms"
                + ("" if self._streak_conclusive else " (hedges lost)"),
            )

    def release(self, call: Call) -> None:
        """``call`` ended without an outcome (cancelled, or already judged): free the probe slot
        if it holds it."""
        if call.probe and call.epoch == self._epoch:
            self._probe_in_flight = False

    def _current(self, call: Call) -> bool:
        """Free ``call``'s probe slot; whether its outcome belongs to the current epoch."""
        self.release(call)
        if call.epoch != self._epoch:
            self.stale_outcomes += 1
            return False
        return True

    def _open(self, now: float, why: str) -> None:
        log.warning("torchserve circuit open for %.2fs after %s", self._cooldown_s, why)
        self._opened_at = now
        self._new_epoch()

    def _close(self) -> None:
        self._opened_at = None
        self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch += 1
        self._good_probes = 0
        self._probe_in_flight = False  # a probe of the old epoch no longer holds the slot
        self._reset_streak()

    def _reset_streak(self) -> None:
        self._streak = 0
        self._streak_since = None
        self._streak_conclusive = False
