"""Fault analysis: what each kill_torchserve and reload_model did to the answers (docs/RESULTS.md).

Times are on the run clock. An event's moment is when the harness started executing it
(``started_s``), falling back to its scheduled ``at_s``.

Outage (kill_torchserve #i, ended by the next start_torchserve #j or by the end of the run):
- time_to_first_fallback_s: first reply served_by "local" received after the kill, minus kill.
- errors_during_failover: error replies + unanswered frames scheduled from the kill until
  TorchServe served again (or the end of the outage when it never did).
- outage_latency_ms: p50/p95/p99 of frames scheduled during the outage (kill .. start).
- local_share_during_outage: share of inference replies received during the outage that were
  served locally.
- time_to_recover_s: first reply served_by "torchserve" received after start_torchserve began,
  minus that moment (so it includes TorchServe's own start-up).
- time_to_recover_after_ready_s: the same reply minus the moment start_torchserve returned
  (the model READY again): how long the backend takes to notice, i.e. its circuit breaker.

Reload (reload_model #i, from the version loaded before it to ``version``):
- time_to_first_new_s: first TorchServe reply of the new version after the event, minus event.
- mixed_window_s: [first new-version reply, last old-version TorchServe reply after it]
  (length 0 when no old answer followed the first new one).
- errors: error replies + unanswered frames scheduled from the event until 2 s after the
  switch (or after the event finished, whichever is later).
- p99_around_switch_ms: p99 of frames scheduled within +-2 s of the switch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .frames import Columns, percentiles_of

AROUND_SWITCH_S = 2.0


def _moment(ev: Mapping[str, Any]) -> float:
    started = ev.get("started_s")
    return float(started if started is not None else ev["at_s"])


def _first_reply_after(cols: Columns, t: float, mask: np.ndarray) -> float | None:
    sel = mask & cols.answered & (cols.t_reply >= t)
    if not np.any(sel):
        return None
    return float(np.min(cols.t_reply[sel]))


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
    local = cols.served_by == "local"
    ts = cols.served_by == "torchserve"
    for i, ev in enumerate(events):
        action = ev.get("action")
        if action == "kill_torchserve":
            faults.append(_outage(cols, events, i, run_end_s, local, ts))
        elif action == "reload_model":
            to_version = (ev.get("params") or {}).get("version")
            faults.append(_reload(cols, ev, i, version, to_version, ts))
            if ev.get("ok", True):
                version = to_version
    return faults


def _outage(
    cols: Columns,
    events: Sequence[Mapping[str, Any]],
    i: int,
    run_end_s: float,
    local: np.ndarray,
    ts: np.ndarray,
) -> dict[str, Any]:
    start = _moment(events[i])
    recovery_index = next(
        (j for j in range(i + 1, len(events)) if events[j].get("action") == "start_torchserve"),
        None,
    )
    end = _moment(events[recovery_index]) if recovery_index is not None else run_end_s
    first_local = _first_reply_after(cols, start, local)
    recovered_at = _first_reply_after(cols, end, ts) if recovery_index is not None else None
    during = (cols.t_scheduled >= start) & (cols.t_scheduled < end)
    replied_during = cols.answered & (cols.t_reply >= start) & (cols.t_reply < end)
    inf_during = replied_during & (local | ts)
    n_inf = int(np.count_nonzero(inf_during))
    lat = np.where(during & cols.answered & ~cols.errored, cols.latency_s, np.nan)
    return {
        "kind": "outage",
        "event_index": i,
        "start_s": start,
        "end_s": end,
        "time_to_first_fallback_s": None if first_local is None else first_local - start,
        "errors_during_failover": _failures(
            cols, start, recovered_at if recovered_at is not None else end
        ),
        "outage_latency_ms": percentiles_of(lat),
        "local_share_during_outage": (
            int(np.count_nonzero(inf_during & local)) / n_inf if n_inf else None
        ),
        "recovery_event_index": recovery_index,
        "time_to_recover_s": None if recovered_at is None else recovered_at - end,
        "time_to_recover_after_ready_s": _after_ready(events, recovery_index, recovered_at),
        "start_torchserve_s": (
            _duration(events[recovery_index]) if recovery_index is not None else None
        ),
    }


def _after_ready(
    events: Sequence[Mapping[str, Any]], recovery_index: int | None, recovered_at: float | None
) -> float | None:
    if recovery_index is None or recovered_at is None:
        return None
    ready = events[recovery_index].get("finished_s")
    return None if ready is None else max(0.0, recovered_at - float(ready))


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
    ts: np.ndarray,
) -> dict[str, Any]:
    start = _moment(ev)
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
    return {
        "kind": "reload",
        "event_index": i,
        "from_version": from_version,
        "to_version": to_version,
        "start_s": start,
        "time_to_first_new_s": None if first_new is None else first_new - start,
        "mixed_window_s": mixed,
        "mixed_window_len_s": mixed_len,
        "errors": _failures(cols, start, err_end),
        "p99_around_switch_ms": percentiles_of(lat, ("p99",))["p99"],
        "reload_s": _duration(ev),
    }
