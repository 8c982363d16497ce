"""Simulated rollout cohorts for the judge's tests and benchmarks/rollout_judge.py.

A cohort is ``sessions`` sessions streaming 30 fps over [t0, t1): frame latency lognormal around
``frame_ms``; every 60th frame of a session ends a sign and carries an inference taking
``inference_ms`` (lognormal), and - as the backend replies in order - the next frames of that
session wait for it too (``queue_frames``). ``error_share`` of frames get an error reply;
``accuracy`` of the classified frames are right; ``local_share`` of the classifications were
answered by the local engine (a fallback, or a hedge that won). Frames are thinned to one per
0.1 s for the sequential tests, as harness/runner/controller.py's ``cohort_frames`` does.
"""

from __future__ import annotations

import numpy as np

from harness.analysis.rollout import CohortFrames


def simulate(
    rng: np.random.Generator,
    sessions: int,
    t0: float = 0.0,
    t1: float = 20.0,
    frame_ms: float = 2.0,
    inference_ms: float = 6.0,
    error_share: float = 0.0,
    accuracy: float = 1.0,
    queue_frames: int = 3,
    local_share: float = 0.0,
) -> CohortFrames:
    parts = []
    for index in range(sessions):
        start = t0 + rng.uniform(0, 1 / 30)
        t = np.arange(start, t1, 1 / 30)
        n = t.size
        lat = rng.lognormal(np.log(frame_ms / 1000), 0.5, n)
        inference = np.zeros(n, dtype=bool)
        inference[rng.integers(0, 60) :: 60] = True
        inf_lat = rng.lognormal(np.log(inference_ms / 1000), 0.3, n)
        for k in np.flatnonzero(inference):
            lat[k] = inf_lat[k]
            # in-order replies: the frames right after a sign's end wait for its inference
            for j in range(1, queue_frames + 1):
                if k + j < n:
                    lat[k + j] = max(lat[k + j], inf_lat[k] - j / 30)
        errored = rng.random(n) < error_share
        judged = inference.copy()
        correct = judged & (rng.random(n) < accuracy)
        parts.append(
            CohortFrames(
                sessions=1,
                t_scheduled=t,
                latency_s=lat,
                inference=inference,
                errored=errored,
                lost=np.zeros(n, dtype=bool),
                judged=judged,
                correct=correct,
                served_local=inference & (rng.random(n) < local_share),
                # one frame per 0.1 s (harness/runner/controller.py cohort_frames thins alike)
                unit=np.arange(n) % 3 == 0,
                session=np.full(n, index, dtype=np.int64),
            )
        )
    return CohortFrames.join(parts)
