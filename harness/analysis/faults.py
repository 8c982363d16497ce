"""Fault analysis: what each kill_torchserve and reload_model did to the answers (docs/RESULTS.md).

Times are on the run clock (s). An event's moment is when the harness started executing it
(``started_s``), falling back to its scheduled ``at_s``.

The windows of an outage are defined once, here (``OutageWindows``), and results, gates, charts
and report text all read them from the fault entry:

- outage window ``[start_s, end_s)``: from the kill to the start of the next start_torchserve
  (TorchServe down and nothing bringing it back), or to the end of the run when none follows.
- recovery window ``recovery_window_s = [restart_s, b)``: from start_torchserve's start (TorchServe
  starting, loading its model, the backend finding it again) to ``RECOVERY_TAIL_S`` after the
  later of READY (start_torchserve returned) and the first TorchServe answer; cut at the next
  kill and at the end of the run. Null when TorchServe was never restarted.

Stall (``stall_waits``): a frame's wait is the time from its scheduled send to its reply, or to
the end of the run when it was never answered (error replies count: the user got an answer).
A session's max stall is the largest wait among its frames: the longest a user waited for a
reply. The stall "in" a window is the largest wait whose interval [scheduled, replied) overlaps
the window, so a frame sent just before a kill and stuck across it counts for the outage.

Outage entry (kill_torchserve #i, recovered by the next start_torchserve #j, if any):
Fallback is a TorchServe-cohort figure throughout (``Columns.fallback``): the old-pipeline
cohort of a rollout below 100 % answers locally by design and never counts as a fallback.

- time_to_first_fallback_s: how long the first TorchServe-cohort window answered locally after
  the kill waited
  for that answer, from the later of the kill and its frame's scheduled send: the delay the
  failover added. Measured from the kill alone it would mostly time when the next sign happens
  to end (at 4.5 inferences/s, a 0.3 s bound would fail one run in four with no wait at all).
- first_fallback_after_kill_s: that first local answer's reply time minus the kill (the raw
  moment, for the timeline; it includes waiting for a sign to end).
- errors_during_failover: error replies + unanswered frames scheduled from the kill until
  TorchServe served again (or the end of the outage when it never did).
- outage_latency_ms / recovery_latency_ms: p50/p95/p99/p999/max (ms) and count of the answered,
  non-error frames scheduled in the window.
- outage_max_stall_ms / recovery_max_stall_ms: the longest stall in the window (above).
- recovery_errors: error replies + unanswered frames scheduled in the recovery window.
- local_share_during_outage: share of the TorchServe cohort's inference replies received during
  the outage that were served locally (fallbacks).
- restart_s, ready_s: when start_torchserve began and returned (model READY again).
- recovered_s: first reply served_by "torchserve" received at or after restart_s.
- time_to_recover_s: recovered_s - restart_s (TorchServe's own start-up included).
- time_to_recover_after_ready_s: recovered_s - ready_s. NEGATIVE when TorchServe answered the
  backend before the harness saw READY (the harness polls; the backend's probe can win): a
  value, never clamped to 0.
- restart_duration_s: how long start_torchserve took (a duration, ready_s - restart_s).

Reload entry (reload_model #i, from the version loaded before it to ``version``):
- time_to_first_new_s: first TorchServe reply of the new version after the event, minus event.
- mixed_window_s: [first new-version reply, last old-version TorchServe reply after it]
  (length 0 when no old answer followed the first new one).
- errors: error replies + unanswered frames scheduled from the event until 2 s after the
  switch (or after the event finished, whichever is later): the reload window.
- local_replies: the TorchServe cohort's replies served_by "local" among frames scheduled in
  the reload window.
- local_share_before: that cohort's local share of its inference replies in the 10 s before
  the event (hedges
  a healthy TorchServe loses; None when there were none).
- fallbacks: the local replies the reload caused: local_replies beyond local_share_before x the
  window's inference replies, with a 3-sigma binomial allowance (every local reply counts when
  none came before).
- p99_around_switch_ms: p99 of frames scheduled within +-2 s of the switch.
- max_stall_ms: the longest stall in the reload window.
- reload_s: how long reload_model took.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.hdr import percentiles_of

from .frames import Columns

AROUND_SWITCH_S = 2.0
# How long after TorchServe is back (READY and answering) the recovery window keeps watching:
# the first windows sent to a fresh TorchServe are the slow ones (worker warm-up, empty caches).
RECOVERY_TAIL_S = 5.0
WINDOW_LATENCY_KEYS = ("p50", "p95", "p99", "p999")
# The steady state a reload is judged against (its local share: hedges a healthy TorchServe loses).
BEFORE_RELOAD_S = 10.0


@dataclass(frozen=True)
class OutageWindows:
    """The one account of a kill_torchserve and its recovery (run clock, s).

    ``restart_s``/``ready_s``: start/return of the next start_torchserve (None: never
    restarted, or it did not return). ``recovered_s``: first TorchServe reply at or after
    ``restart_s``. ``bound_s``: where the next kill or the end of the run cuts the windows.
    """

    kill_s: float
    restart_s: float | None
    ready_s: float | None
    recovered_s: float | None
    bound_s: float

    @property
    def outage(self) -> tuple[float, float]:
        """[kill, restart) or [kill, bound) when TorchServe was never restarted."""
        return self.kill_s, self.restart_s if self.restart_s is not None else self.bound_s

    @property
    def recovery(self) -> tuple[float, float] | None:
        """[restart, back + RECOVERY_TAIL_S) cut at ``bound_s``; None without a restart."""
        if self.restart_s is None:
            return None
        back = [t for t in (self.ready_s, self.recovered_s) if t is not None]
        end = max(back) + RECOVERY_TAIL_S if back else self.bound_s
        return self.restart_s, max(self.restart_s, min(end, self.bound_s))


def moment(ev: Mapping[str, Any]) -> float:
    """When a timeline event took effect: ``started_s``, else its scheduled ``at_s``."""
    started = ev.get("started_s")
    return float(started if started is not None else ev["at_s"])


def run_end_of(cols: Columns, run_end_s: float) -> float:
    """The end of the run for stalls: the load's end, or the last reply if that came later."""
    last = float(np.nanmax(cols.t_reply)) if np.any(cols.answered) else run_end_s
    return max(run_end_s, last)


def stall_waits(cols: Columns, run_end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(wait_s, wait_end_s) per frame: scheduled -> reply, or -> run end when unanswered."""
    end = np.where(cols.answered, cols.t_reply, run_end_s)
    return np.maximum(end - cols.t_scheduled, 0.0), end


def max_stall_ms(
    cols: Columns, run_end_s: float, lo: float, hi: float
) -> tuple[float | None, int | None, float | None]:
    """(ms, session, scheduled_s) of the longest wait overlapping [lo, hi); Nones when none."""
    wait, end = stall_waits(cols, run_end_s)
    sel = (cols.t_scheduled < hi) & (end >= lo)
    if not np.any(sel):
        return None, None, None
    idx = np.flatnonzero(sel)
    k = idx[int(np.argmax(wait[idx]))]
    return float(wait[k]) * 1000.0, int(cols.session[k]), float(cols.t_scheduled[k])


def stall_summary(cols: Columns, run_end_s: float, lo: float) -> dict[str, Any]:
    """summary.stall: per-session max stall over frames scheduled from ``lo`` (the warm-up end).

    ``max_ms`` is the worst session's, ``p50_ms``/``p95_ms`` spread over the sessions' maxima,
    ``session``/``at_s`` name the worst stall (session index, scheduled time of its frame).
    """
    out: dict[str, Any] = dict.fromkeys(("max_ms", "p50_ms", "p95_ms", "session", "at_s"))
    out["sessions"] = 0
    wait, _ = stall_waits(cols, run_end_s)
    sel = cols.t_scheduled >= lo
    if not np.any(sel):
        return out
    sessions, inverse = np.unique(cols.session[sel], return_inverse=True)
    per = np.full(sessions.size, -1.0)
    np.maximum.at(per, inverse, wait[sel])
    idx = np.flatnonzero(sel)
    k = idx[int(np.argmax(wait[idx]))]
    out.update(
        max_ms=float(per.max()) * 1000.0,
        p50_ms=float(np.percentile(per, 50)) * 1000.0,
        p95_ms=float(np.percentile(per, 95)) * 1000.0,
        session=int(cols.session[k]),
        at_s=float(cols.t_scheduled[k]),
        sessions=int(sessions.size),
    )
    return out


def window_latency(cols: Columns, lo: float, hi: float) -> dict[str, Any]:
    """p50..p999, max (ms) and count of answered, non-error frames scheduled in [lo, hi)."""
    sel = (cols.t_scheduled >= lo) & (cols.t_scheduled < hi) & cols.answered & ~cols.errored
    lat = np.where(sel, cols.latency_s, np.nan)
    out: dict[str, Any] = percentiles_of(lat, WINDOW_LATENCY_KEYS)
    n = int(np.count_nonzero(sel))
    out["max"] = float(np.nanmax(lat)) * 1000.0 if n else None
    out["count"] = n
    return out


def _first_reply_after(cols: Columns, t: float, mask: np.ndarray) -> float | None:
    sel = mask & cols.answered & (cols.t_reply >= t)
    if not np.any(sel):
        return None
    return float(np.min(cols.t_reply[sel]))


def _first_wait_after(cols: Columns, t: float, mask: np.ndarray) -> tuple[float, float] | None:
    """(reply time, wait) of the first reply in ``mask`` received at or after ``t``.

    The wait runs from the later of ``t`` and the frame's scheduled send to its reply.
    """
    sel = np.flatnonzero(mask & cols.answered & (cols.t_reply >= t))
    if sel.size == 0:
        return None
    first = sel[np.argmin(cols.t_reply[sel])]
    reply = float(cols.t_reply[first])
    return reply, reply - max(t, float(cols.t_scheduled[first]))


def _failures(cols: Columns, lo: float, hi: float) -> int:
    in_window = (cols.t_scheduled >= lo) & (cols.t_scheduled < hi)
    return int(np.count_nonzero(in_window & (cols.errored | ~cols.answered)))


def analyze_faults(
    cols: Columns,
    events: Sequence[Mapping[str, Any]],
    initial_version: str | None,
    run_end_s: float,
) -> list[dict[str, Any]]:
    """One fault entry per kill_torchserve and reload_model event, in timeline order."""
    faults: list[dict[str, Any]] = []
    version = initial_version
    stall_end = run_end_of(cols, run_end_s)
    for i, ev in enumerate(events):
        action = ev.get("action")
        if action == "kill_torchserve":
            faults.append(_outage(cols, events, i, run_end_s, stall_end))
        elif action == "reload_model":
            to_version = (ev.get("params") or {}).get("version")
            faults.append(_reload(cols, ev, i, version, to_version, stall_end))
            if ev.get("ok", True):
                version = to_version
    return faults


def outage_windows(
    cols: Columns, events: Sequence[Mapping[str, Any]], i: int, run_end_s: float
) -> tuple[OutageWindows, int | None]:
    """The windows of kill event ``i`` and the index of its start_torchserve (None if none)."""
    kill = moment(events[i])
    recovery_index: int | None = None
    bound = run_end_s
    for j in range(i + 1, len(events)):
        action = events[j].get("action")
        if action == "start_torchserve" and recovery_index is None:
            recovery_index = j
        elif action == "kill_torchserve":
            bound = min(bound, moment(events[j]))
            break
    restart = ready = recovered = None
    if recovery_index is not None:
        ev = events[recovery_index]
        restart = moment(ev)
        finished = ev.get("finished_s")
        ready = float(finished) if finished is not None and ev.get("ok") is not False else None
        recovered = _first_reply_after(cols, restart, cols.served_by == "torchserve")
        if recovered is not None and recovered >= bound:
            recovered = None
    return OutageWindows(kill, restart, ready, recovered, bound), recovery_index


def _outage(
    cols: Columns,
    events: Sequence[Mapping[str, Any]],
    i: int,
    run_end_s: float,
    stall_end: float,
) -> dict[str, Any]:
    w, recovery_index = outage_windows(cols, events, i, run_end_s)
    # A fallback is a TorchServe-cohort session answered locally: the old-pipeline cohort
    # (rollout < 100 %) answers locally by design, before, during and after the kill.
    local = cols.fallback
    ts = cols.served_by == "torchserve"
    start, end = w.outage
    first_local = _first_wait_after(cols, start, local)
    replied_during = cols.answered & (cols.t_reply >= start) & (cols.t_reply < end)
    inf_during = replied_during & (local | ts)
    n_inf = int(np.count_nonzero(inf_during))
    rec = w.recovery
    rec_fields: dict[str, Any] = {
        "recovery_latency_ms": None,
        "recovery_max_stall_ms": None,
        "recovery_errors": None,
    }
    if rec is not None:
        rec_fields = {
            "recovery_latency_ms": window_latency(cols, *rec),
            "recovery_max_stall_ms": max_stall_ms(cols, stall_end, *rec)[0],
            "recovery_errors": _failures(cols, *rec),
        }
    return {
        "kind": "outage",
        "event_index": i,
        "start_s": start,
        "end_s": end,
        "time_to_first_fallback_s": None if first_local is None else first_local[1],
        "first_fallback_after_kill_s": None if first_local is None else first_local[0] - start,
        "errors_during_failover": _failures(
            cols, start, w.recovered_s if w.recovered_s is not None else end
        ),
        "outage_latency_ms": window_latency(cols, start, end),
        "outage_max_stall_ms": max_stall_ms(cols, stall_end, start, end)[0],
        "local_share_during_outage": (
            int(np.count_nonzero(inf_during & local)) / n_inf if n_inf else None
        ),
        "recovery_event_index": recovery_index,
        "restart_s": w.restart_s,
        "ready_s": w.ready_s,
        "recovered_s": w.recovered_s,
        "recovery_window_s": list(rec) if rec is not None else None,
        "time_to_recover_s": (
            None if w.recovered_s is None or w.restart_s is None else w.recovered_s - w.restart_s
        ),
        "time_to_recover_after_ready_s": (
            None if w.recovered_s is None or w.ready_s is None else w.recovered_s - w.ready_s
        ),
        "restart_duration_s": (
            None if w.ready_s is None or w.restart_s is None else w.ready_s - w.restart_s
        ),
        **rec_fields,
    }


def _reload_fallbacks(
    cols: Columns, start: float, in_reload: np.ndarray
) -> tuple[int, float | None, int]:
    """(local replies in the reload window, local share before it, fallbacks it caused).

    A healthy TorchServe loses some hedges too (the backend answers locally when TorchServe is
    slower than its hedge delay), so not every local reply in the window is the reload's: the
    reload caused those beyond the local share of the ``BEFORE_RELOAD_S`` before it, with a
    3-sigma binomial allowance (0 when nothing was local before: then every one counts).
    """
    inference = cols.answered & ~cols.errored & (cols.cohort == "torchserve")
    inference &= cols.served_by != None  # noqa: E711
    local = inference & cols.fallback  # the TorchServe cohort's: the old pipeline's are by design
    before = (cols.t_scheduled >= start - BEFORE_RELOAD_S) & (cols.t_scheduled < start)
    n_before = int(np.count_nonzero(before & inference))
    share = int(np.count_nonzero(before & local)) / n_before if n_before else None
    n_local = int(np.count_nonzero(in_reload & local))
    n_inf = int(np.count_nonzero(in_reload & inference))
    p = share or 0.0
    allowance = p * n_inf + 3.0 * math.sqrt(p * (1.0 - p) * n_inf)
    return n_local, share, max(0, n_local - math.floor(allowance))


def _duration(ev: Mapping[str, Any]) -> float | None:
    if ev.get("started_s") is None or ev.get("finished_s") is None:
        return None
    return float(ev["finished_s"]) - float(ev["started_s"])


def _reload(
    cols: Columns,
    ev: Mapping[str, Any],
    i: int,
    from_version: str | None,
    to_version: str | None,
    stall_end: float,
) -> dict[str, Any]:
    start = moment(ev)
    ts = cols.served_by == "torchserve"
    new = ts & (cols.model_version == to_version)
    old = ts & (cols.model_version == from_version)
    first_new = _first_reply_after(cols, start, new)
    mixed: list[float] | None = None
    mixed_len: float | None = None
    if first_new is not None:
        after = old & cols.answered & (cols.t_reply >= first_new)
        last_old = float(np.max(cols.t_reply[after])) if np.any(after) else first_new
        mixed, mixed_len = [first_new, last_old], last_old - first_new
    switch = first_new if first_new is not None else start
    finished = ev.get("finished_s")
    err_end = max(switch, float(finished) if finished is not None else start) + AROUND_SWITCH_S
    around = (cols.t_scheduled >= switch - AROUND_SWITCH_S) & (
        cols.t_scheduled < switch + AROUND_SWITCH_S
    )
    lat = np.where(around & cols.answered & ~cols.errored, cols.latency_s, np.nan)
    in_reload = (cols.t_scheduled >= start) & (cols.t_scheduled < err_end)
    local_replies, share_before, fallbacks = _reload_fallbacks(cols, start, in_reload)
    return {
        "kind": "reload",
        "event_index": i,
        "from_version": from_version,
        "to_version": to_version,
        "start_s": start,
        "end_s": err_end,
        "time_to_first_new_s": None if first_new is None else first_new - start,
        "mixed_window_s": mixed,
        "mixed_window_len_s": mixed_len,
        "errors": _failures(cols, start, err_end),
        "local_replies": local_replies,
        "local_share_before": share_before,
        "fallbacks": fallbacks,
        "p99_around_switch_ms": percentiles_of(lat, ("p99",))["p99"],
        "max_stall_ms": max_stall_ms(cols, stall_end, start, err_end)[0],
        "reload_s": _duration(ev),
    }
