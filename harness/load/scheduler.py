"""The send scheduler: one per process (per event loop), sending every session's due frames.

A timer and a task wake-up per frame per session (``asyncio.sleep`` until each frame's time)
made the event loop's timer jitter the generator's limit (~10,000 frames/s valid from one
process, issue 24). Here one task wakes once per tick (when the earliest frame of any session is
due) and sends every frame due, session by session, from a heap ordered by due time.

Open loop is unchanged: frame k of a session is due at ``start + k / fps`` (its scheduled time,
the latency origin), it is stamped ``t_sent`` when actually sent, and the self-check's lateness
is ``t_sent - t_scheduled`` as before: a scheduler that falls behind shows as late frames, never
as a shifted schedule. A send that may wait (data still buffered on that connection) runs in a
task of its own (:meth:`Session.send_waiting`), the session leaving the heap until it is done,
so one slow connection delays only itself.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from harness.load.session import WAIT, Session

# Sessions served between two yields to the event loop within one wake-up.
YIELD_EVERY = 64


class SendScheduler:
    """Sends the due frames of every registered session; ``now`` is the run clock (s)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._heap: list[tuple[float, int, Session]] = []
        self._seq = itertools.count()  # tie-break: sessions never compare
        self._task: asyncio.Task[None] | None = None
        self._waiting: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = float("inf")
        self._errors: dict[int, BaseException] = {}  # by session index: raised by stream()

    async def stream(self, session: Session) -> None:
        """Send ``session``'s frames on schedule; returns once it is done sending.

        Cancelled (the run cut), the session stops sending at once (``done_sending`` set).
        """
        first = session.begin_sending()
        if first is None:
            return
        self._push(first, session)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="load-send-scheduler")
        try:
            await session.done_sending.wait()
        finally:
            session.finish_sending()  # popped later, a finished session is dropped
        error = self._errors.pop(session.index, None)
        if error is not None:
            raise error  # a session's own error (a bad trace) ends the run, as before

    async def aclose(self) -> None:
        """Stop the scheduler and any waiting send (end of run)."""
        tasks = [t for t in (self._task, *self._waiting) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._heap.clear()

    def _push(self, due: float, session: Session) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), session))
        wake = self._wake
        if due < self._wake_at and wake is not None and not wake.done():
            wake.set_result(None)  # an earlier frame than the one the scheduler sleeps for

    async def _run(self) -> None:
        heap = self._heap
        now = self._now
        pop = heapq.heappop
        while True:
            t = now()
            batch = 0
            while heap and heap[0][0] <= t:
                batch += 1
                if batch % YIELD_EVERY == 0:
                    # Sends never suspend: without this, a scheduler that is behind would keep
                    # the loop from reading replies (and the connections' control frames).
                    await asyncio.sleep(0)
                _, _, s = pop(heap)
                if s.done_sending.is_set():
                    continue
                try:
                    nxt = await s.send_due(t)
                except Exception as exc:
                    self._errors[s.index] = exc
                    s.finish_sending()
                    continue
                if nxt == WAIT:
                    self._hand_off(s)
                elif nxt is not None:
                    self._push(nxt, s)
                t = now()
            await self._sleep_until(heap[0][0] if heap else None)

    async def _sleep_until(self, due: float | None) -> None:
        """Sleep until ``due`` (run clock; None: until a session is pushed), or until an
        earlier frame is pushed."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake, self._wake_at = wake, float("inf") if due is None else due
        timer = None if due is None else loop.call_later(due - self._now(), _wake_up, wake)
        try:
            await wake
        finally:
            if timer is not None:
                timer.cancel()
            self._wake, self._wake_at = None, float("inf")

    def _hand_off(self, s: Session) -> None:
        task = asyncio.create_task(self._send_waiting(s))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _send_waiting(self, s: Session) -> None:
        nxt = await s.send_waiting()
        if nxt is not None and not s.done_sending.is_set():
            self._push(nxt, s)


def _wake_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
