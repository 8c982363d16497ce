"""Deterministic synthetic sign-language landmark streams (there is no reachable public data set).

Each sign class is a distinct pattern of hand trajectories (circles, taps, swipes, arcs,
two-hand movements at different heights, directions and speeds) and hand shapes (open, flat,
fist, point, pinch, claw ...). A *signer* varies body scale and position, speed, jitter and the
rate of dropped hand detections. Streams alternate rest periods (hands lowered and nearly still,
or not detected) with signs; every frame is the JSON frame dict of the WebSocket protocol plus
``"truth"``: the sign's label, or None at rest.

A sign is: the hands rise from rest (about 20 % of its frames), perform the core movement, and
drop back (about 15 %). Every part moves clearly more than rest does, so the backend's
motion-energy segmenter (features.hand_motion_energy vs DEFAULT_MOTION_THRESHOLD) finds it.

Command line (one JSON object per line)::

    python -m backend_patch.app.ml.synthetic --signs 5 --seed 7 --out trace.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Frame = dict[str, Any]

# --- Body model (body units: origin at the shoulder centre, shoulder width 1, y down) -------

_POSE_TEMPLATE = np.array(
    [
        [0.0, -0.75],  # 0 nose
        [0.06, -0.85], [0.10, -0.86], [0.14, -0.86],  # 1-3 left eye
        [-0.06, -0.85], [-0.10, -0.86], [-0.14, -0.86],  # 4-6 right eye
        [0.22, -0.80], [-0.22, -0.80],  # 7-8 ears
        [0.06, -0.62], [-0.06, -0.62],  # 9-10 mouth
        [0.5, 0.0], [-0.5, 0.0],  # 11-12 shoulders (the signer's left appears at +x)
        [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0],  # 13-16 elbows, wrists (computed)
        [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0],  # 17-22 hands
        [0.33, 1.35], [-0.33, 1.35],  # 23-24 hips
        [0.33, 2.30], [-0.33, 2.30],  # 25-26 knees
        [0.33, 3.20], [-0.33, 3.20],  # 27-28 ankles
        [0.33, 3.30], [-0.33, 3.30],  # 29-30 heels
        [0.40, 3.35], [-0.40, 3.35],  # 31-32 foot index
    ]
)  # fmt: skip
_UPPER_ARM, _FOREARM = 0.75, 0.70
_SHOULDER = {"left": np.array([0.5, 0.0]), "right": np.array([-0.5, 0.0])}
_REST_WRIST = {"left": np.array([0.6, 1.25]), "right": np.array([-0.6, 1.25])}
_REST_ANGLE = 90.0  # fingers pointing down

# --- Hand model --------------------------------------------------------------------------------
# Per finger (index, middle, ring, pinky): base offset across the palm, palm length, spread
# direction (rad), segment lengths. The thumb is handled on its own.
_FINGER_OFFSETS = np.array([0.09, 0.03, -0.03, -0.09])
_PALM_LENGTHS = np.array([0.24, 0.25, 0.24, 0.22])
_FINGER_SPREAD = np.array([0.14, 0.0, -0.12, -0.24])
_FINGER_SEGMENTS = np.array(
    [[0.10, 0.06, 0.05], [0.11, 0.07, 0.05], [0.10, 0.065, 0.05], [0.08, 0.05, 0.04]]
)
_THUMB_SEGMENTS = np.array([0.09, 0.07, 0.06])
_CURL_PROFILE = np.array([0.9, 1.8, 2.6])  # cumulative joint bend (rad) at curl 1

# Hand shapes: curl of (thumb, index, middle, ring, pinky) and finger spread.
SHAPES: dict[str, tuple[tuple[float, float, float, float, float], float]] = {
    "open": ((0.0, 0.0, 0.0, 0.0, 0.0), 1.0),
    "flat": ((0.25, 0.0, 0.0, 0.0, 0.0), 0.15),
    "fist": ((0.75, 1.0, 1.0, 1.0, 1.0), 0.3),
    "point": ((0.75, 0.0, 1.0, 1.0, 1.0), 0.3),
    "two": ((0.75, 0.0, 0.0, 1.0, 1.0), 0.7),
    "three": ((0.6, 0.0, 0.0, 0.0, 1.0), 0.8),
    "pinch": ((0.55, 0.6, 0.1, 0.1, 0.1), 0.8),
    "claw": ((0.4, 0.55, 0.55, 0.55, 0.55), 1.0),
    "cshape": ((0.3, 0.35, 0.35, 0.35, 0.35), 0.2),
    "yshape": ((0.0, 1.0, 1.0, 1.0, 0.0), 1.0),
    "relaxed": ((0.2, 0.3, 0.3, 0.35, 0.4), 0.3),
}


@dataclass(frozen=True)
class HandSpec:
    """One hand's part of a sign: where, how it moves (path), its shape and orientation.

    ``path`` is ``(kind, *params)`` with kind one of ``static``, ``circle`` (radius, loops,
    direction +1/-1, start angle deg), ``osc`` (dx, dy, cycles), ``tap`` (dx, dy, taps),
    ``line`` (dx, dy), ``swipe`` (dx, dy, repeats), ``arc`` (dx, dy, bulge).
    ``angle`` is the finger direction in image degrees (-90 up, 0 toward +x, 90 down), lerped
    from the first to the second value; ``shape_cycles`` > 0 alternates the two shapes.
    """

    anchor: tuple[float, float]
    path: tuple[Any, ...]
    shape: tuple[str, str]
    angle: tuple[float, float]
    shape_cycles: float = 0.0


@dataclass(frozen=True)
class SignSpec:
    """A sign class: its base length in frames at 30 fps and the right (dominant)/left hands."""

    frames: int
    right: HandSpec
    left: HandSpec | None = None


def _h(
    anchor: tuple[float, float],
    path: tuple[Any, ...],
    shape: str | tuple[str, str],
    angle: float | tuple[float, float],
    shape_cycles: float = 0.0,
) -> HandSpec:
    shapes = (shape, shape) if isinstance(shape, str) else shape
    angles = (angle, angle) if isinstance(angle, int | float) else angle
    return HandSpec(anchor, path, shapes, angles, shape_cycles)


SIGNS: dict[str, SignSpec] = {
    "hello": SignSpec(30, _h((-0.35, -0.9), ("line", -0.6, 0.05), "flat", (-100, -125))),
    "thanks": SignSpec(32, _h((-0.05, -0.55), ("arc", -0.15, 0.85, 0.15), "flat", (-90, -30))),
    "yes": SignSpec(34, _h((-0.2, 0.1), ("tap", 0.0, 0.18, 3), "fist", -90)),
    "no": SignSpec(34, _h((-0.2, 0.0), ("osc", 0.15, 0.0, 3), ("two", "pinch"), -60, 2)),
    "please": SignSpec(38, _h((-0.05, 0.35), ("circle", 0.22, 1.5, 1, 0), "flat", -150)),
    "sorry": SignSpec(38, _h((-0.05, 0.35), ("circle", 0.2, 1.5, -1, 90), "fist", -90)),
    "help": SignSpec(
        34,
        _h((0.1, 0.55), ("swipe", 0.0, -0.4, 2), "fist", -90),
        _h((0.1, 0.72), ("swipe", 0.0, -0.4, 2), "flat", 180),
    ),
    "more": SignSpec(
        36,
        _h((-0.25, 0.4), ("tap", 0.17, 0.0, 3), "pinch", -30),
        _h((0.25, 0.4), ("tap", -0.17, 0.0, 3), "pinch", -150),
    ),
    "stop": SignSpec(
        26,
        _h((0.05, -0.1), ("line", 0.0, 0.6), "flat", -90),
        _h((0.15, 0.5), ("static",), "open", 180),
    ),
    "go": SignSpec(
        28,
        _h((-0.3, 0.3), ("arc", -0.45, -0.1, 0.15), "point", (-90, 180)),
        _h((0.3, 0.3), ("arc", -0.45, -0.1, 0.15), "point", (-90, 180)),
    ),
    "eat": SignSpec(34, _h((-0.02, -0.58), ("tap", -0.05, 0.15, 4), "pinch", -60)),
    "drink": SignSpec(30, _h((-0.1, -0.3), ("swipe", 0.08, -0.3, 2), "cshape", (-90, -20))),
    "water": SignSpec(30, _h((-0.05, -0.55), ("tap", -0.12, 0.12, 3), "three", -90)),
    "home": SignSpec(38, _h((-0.05, -0.6), ("swipe", -0.25, -0.15, 2), "pinch", -80)),
    "love": SignSpec(
        36,
        _h((0.1, 0.3), ("osc", 0.12, 0.0, 2), "fist", -45),
        _h((-0.1, 0.3), ("osc", 0.12, 0.0, 2), "fist", -135),
    ),
    "friend": SignSpec(
        40,
        _h((-0.15, 0.25), ("circle", 0.12, 2, 1, 0), "point", 0),
        _h((0.15, 0.25), ("circle", 0.12, 2, 1, 180), "point", 180),
    ),
    "family": SignSpec(
        40,
        _h((-0.15, 0.1), ("circle", 0.3, 1, -1, 0), "two", -90),
        _h((0.15, 0.1), ("circle", 0.3, 1, 1, 180), "two", -90),
    ),
    "good": SignSpec(
        30,
        _h((-0.05, -0.55), ("line", 0.1, 0.8), "flat", (-90, -60)),
        _h((0.1, 0.4), ("static",), "flat", 180),
    ),
    "bad": SignSpec(30, _h((-0.05, -0.55), ("line", -0.05, 0.6), "flat", (-90, 90))),
    "want": SignSpec(
        30,
        _h((-0.4, 0.4), ("swipe", 0.25, -0.3, 2), ("open", "claw"), -80, 2),
        _h((0.4, 0.4), ("swipe", -0.25, -0.3, 2), ("open", "claw"), -100, 2),
    ),
    "where": SignSpec(30, _h((-0.35, -0.3), ("osc", 0.2, 0.0, 4), "point", -90)),
    "name": SignSpec(
        30,
        _h((-0.15, 0.2), ("tap", 0.05, -0.2, 3), "two", 0),
        _h((0.2, 0.25), ("static",), "two", 180),
    ),
    "learn": SignSpec(34, _h((-0.05, 0.3), ("line", 0.0, -1.2), ("open", "pinch"), -90)),
    "work": SignSpec(
        30,
        _h((-0.05, 0.2), ("tap", 0.0, 0.22, 2), "fist", -20),
        _h((0.1, 0.45), ("static",), "fist", -160),
    ),
    "goodbye": SignSpec(34, _h((-0.55, -0.5), ("osc", 0.05, 0.0, 3), ("open", "fist"), -90, 3)),
}

SIGN_CLASSES: tuple[str, ...] = tuple(SIGNS)
MIN_SIGN_FRAMES, MAX_SIGN_FRAMES = 20, 60


@dataclass(frozen=True)
class Signer:
    """Per-person variation: image placement and size, speed, jitter, detection drop rate."""

    scale: float = 0.26  # shoulder width in image units
    centre: tuple[float, float] = (0.5, 0.42)  # shoulder centre in the image
    tilt_deg: float = 0.0
    speed: float = 1.0  # > 1 signs faster (fewer frames)
    jitter: float = 0.0005  # landmark noise, image units
    drop_rate: float = 0.02  # chance a hand is not detected in a sign frame
    extra: dict[str, float] = field(default_factory=dict)


def random_signer(rng: np.random.Generator) -> Signer:
    """Draw a plausible signer."""
    return Signer(
        scale=float(rng.uniform(0.2, 0.32)),
        centre=(float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.36, 0.48))),
        tilt_deg=float(rng.normal(0.0, 3.0)),
        speed=float(rng.uniform(0.75, 1.3)),
        jitter=float(rng.uniform(0.0003, 0.0008)),
        drop_rate=float(rng.uniform(0.0, 0.04)),
    )


# --- Geometry ------------------------------------------------------------------------------


def _smooth(t: np.ndarray) -> np.ndarray:
    return np.asarray(t * t * (3.0 - 2.0 * t))


def _path_offsets(path: tuple[Any, ...], t: np.ndarray, amp: float) -> np.ndarray:
    kind = path[0]
    out = np.zeros((t.size, 2))
    if kind == "static":
        return out
    if kind == "circle":
        radius, loops, direction, start = path[1:]
        ang = math.radians(start) + direction * 2.0 * math.pi * loops * t
        a0 = math.radians(start)
        # Start at offset 0 so the hand arrives at the anchor, then circles around it.
        out[:, 0] = radius * amp * (np.cos(ang) - math.cos(a0))
        out[:, 1] = radius * amp * (np.sin(ang) - math.sin(a0))
        return out
    d = np.array(path[1:3], dtype=float) * amp
    if kind == "osc":
        return np.asarray(d[None, :] * np.sin(2.0 * math.pi * path[3] * t)[:, None])
    if kind == "tap":
        return np.asarray(d[None, :] * np.abs(np.sin(math.pi * path[3] * t))[:, None])
    if kind == "line":
        return np.asarray(d[None, :] * _smooth(t)[:, None])
    if kind == "swipe":
        return np.asarray(d[None, :] * (0.5 - 0.5 * np.cos(2.0 * math.pi * path[3] * t))[:, None])
    if kind == "arc":
        perp = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-9)
        bulge = 4.0 * t * (1.0 - t) * path[3] * amp
        return np.asarray(d[None, :] * t[:, None] + perp[None, :] * bulge[:, None])
    raise ValueError(f"unknown path kind {kind!r}")


def _hand_points(
    wrist: np.ndarray, angle_deg: np.ndarray, curls: np.ndarray, spread: np.ndarray, side: str
) -> np.ndarray:
    """21 hand landmarks [T, 21, 3] in body units from wrist [T, 2], finger angle, curls [T, 5]."""
    n = wrist.shape[0]
    ang = np.radians(angle_deg)
    u = np.stack([np.cos(ang), np.sin(ang)], axis=1)  # finger direction
    sign = 1.0 if side == "right" else -1.0  # the thumb sits on opposite sides for the two hands
    v = sign * np.stack([u[:, 1], -u[:, 0]], axis=1)  # toward the thumb
    pts = np.zeros((n, 21, 3))
    pts[:, 0, :2] = wrist

    def bend(
        base: np.ndarray,
        direction: np.ndarray,
        toward: np.ndarray,
        curl: np.ndarray,
        segs: np.ndarray,
    ) -> list[np.ndarray]:
        out, p = [], base
        for j in range(3):
            theta = (curl * _CURL_PROFILE[j])[:, None]
            d3 = np.cos(theta) * direction + np.sin(theta) * toward
            p = p + segs[j] * d3
            out.append(p)
        return out

    z = np.zeros((n, 1))
    depth = np.concatenate([np.zeros((n, 2)), np.ones((n, 1))], axis=1)
    for k in range(4):
        mcp = np.concatenate([wrist + _PALM_LENGTHS[k] * u + _FINGER_OFFSETS[k] * v, z], axis=1)
        phi = (_FINGER_SPREAD[k] * spread)[:, None]
        f = np.cos(phi) * u + np.sin(phi) * v
        f3 = np.concatenate([f, z], axis=1)
        base = 5 + 4 * k
        pts[:, base] = mcp
        pts[:, base + 1 : base + 4] = np.stack(
            bend(mcp, f3, depth, curls[:, k + 1], _FINGER_SEGMENTS[k]), axis=1
        )
    cmc = np.concatenate([wrist + 0.07 * u + 0.08 * v, z], axis=1)
    g = np.cos(0.7) * u + np.sin(0.7) * v
    g3 = np.concatenate([g, z], axis=1)
    toward_palm = np.concatenate([-0.7 * v, 0.7 * np.ones((n, 1))], axis=1)
    pts[:, 1] = cmc
    pts[:, 2:5] = np.stack(bend(cmc, g3, toward_palm, curls[:, 0], _THUMB_SEGMENTS), axis=1)
    return pts


def _elbows(shoulder: np.ndarray, wrist: np.ndarray, side: str) -> np.ndarray:
    """Elbow positions [T, 2] by two-link inverse kinematics, bending outward and down."""
    d = wrist - shoulder
    dist = np.clip(np.linalg.norm(d, axis=1, keepdims=True), 1e-6, _UPPER_ARM + _FOREARM - 1e-3)
    unit = d / dist
    a = (_UPPER_ARM**2 - _FOREARM**2 + dist**2) / (2.0 * dist)
    h = np.sqrt(np.clip(_UPPER_ARM**2 - a**2, 0.0, None))
    perp = np.stack([-unit[:, 1], unit[:, 0]], axis=1)
    outward = np.array([1.0 if side == "left" else -1.0, 0.3])
    perp *= np.where((perp @ outward) >= 0, 1.0, -1.0)[:, None]
    return np.asarray(shoulder + unit * a + perp * h)


@dataclass
class _HandTrack:
    wrist: np.ndarray  # [T, 2]
    angle: np.ndarray  # [T]
    curls: np.ndarray  # [T, 5]
    spread: np.ndarray  # [T]
    seen: np.ndarray  # [T] bool


def _shape_arrays(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    curls, spread = SHAPES[name]
    return np.tile(np.array(curls), (n, 1)), np.full(n, spread)


def _rest_track(side: str, n: int, rng: np.random.Generator, visible: bool) -> _HandTrack:
    sway = (
        rng.normal(0.0, 0.004, size=2)
        * np.sin(np.linspace(0, math.pi * rng.uniform(0.5, 1.5), n))[:, None]
    )
    curls, spread = _shape_arrays("relaxed", n)
    return _HandTrack(
        wrist=_REST_WRIST[side][None, :] + sway,
        angle=np.full(n, _REST_ANGLE),
        curls=curls,
        spread=spread,
        seen=np.full(n, visible),
    )


def _sign_track(spec: HandSpec, side: str, n: int, rng: np.random.Generator) -> _HandTrack:
    """Rise from rest, perform the core movement, drop back to rest: [n] frames."""
    n_in = max(3, round(n * 0.2))
    n_out = max(3, round(n * 0.15))
    n_core = n - n_in - n_out
    amp = float(rng.uniform(0.85, 1.15))
    anchor = np.array(spec.anchor) + rng.normal(0.0, 0.04, size=2)
    t = np.linspace(0.0, 1.0, n_core)
    core = anchor[None, :] + _path_offsets(spec.path, t, amp)
    rest = _REST_WRIST[side]
    s_in = _smooth(np.linspace(0.0, 1.0, n_in + 1)[1:])[:, None]
    s_out = _smooth(np.linspace(0.0, 1.0, n_out + 1)[1:])[:, None]
    wrist = np.concatenate(
        [rest + (core[0] - rest) * s_in, core, core[-1] + (rest - core[-1]) * s_out]
    )

    a0, a1 = np.array(spec.angle) + rng.normal(0.0, 6.0)
    core_angle = a0 + (a1 - a0) * t
    angle = np.concatenate(
        [
            _REST_ANGLE + (core_angle[0] - _REST_ANGLE) * s_in[:, 0],
            core_angle,
            core_angle[-1] + (_REST_ANGLE - core_angle[-1]) * s_out[:, 0],
        ]
    )
    c0, sp0 = SHAPES[spec.shape[0]]
    c1, sp1 = SHAPES[spec.shape[1]]
    if spec.shape_cycles > 0:
        mix = 0.5 - 0.5 * np.cos(2.0 * math.pi * spec.shape_cycles * t)
    else:
        mix = _smooth(t)
    core_curls = np.array(c0)[None, :] + (np.array(c1) - np.array(c0))[None, :] * mix[:, None]
    core_spread = sp0 + (sp1 - sp0) * mix
    rc, rsp = SHAPES["relaxed"]
    rc_arr = np.array(rc)[None, :]
    curls = np.concatenate(
        [
            rc_arr + (core_curls[0] - rc_arr) * s_in,
            core_curls,
            core_curls[-1] + (rc_arr - core_curls[-1]) * s_out,
        ]
    )
    spread = np.concatenate(
        [
            rsp + (core_spread[0] - rsp) * s_in[:, 0],
            core_spread,
            core_spread[-1] + (rsp - core_spread[-1]) * s_out[:, 0],
        ]
    )
    return _HandTrack(wrist, angle, curls, spread, np.ones(n, dtype=bool))


def _render(
    left: _HandTrack, right: _HandTrack, signer: Signer, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Body-unit tracks -> image landmarks: (left [T,21,3], right, pose [T,33,3], seenL, seenR)."""
    n = left.wrist.shape[0]
    hands = {}
    pose = np.zeros((n, 33, 3))
    pose[:, :, :2] = _POSE_TEMPLATE[None, :, :]
    for side, track, wrist_i, elbow_i, pinky_i, index_i, thumb_i in (
        ("left", left, 15, 13, 17, 19, 21),
        ("right", right, 16, 14, 18, 20, 22),
    ):
        pts = _hand_points(track.wrist, track.angle, track.curls, track.spread, side)
        hands[side] = pts
        pose[:, wrist_i, :2] = track.wrist
        pose[:, elbow_i, :2] = _elbows(_SHOULDER[side][None, :], track.wrist, side)
        pose[:, pinky_i] = pts[:, 17]
        pose[:, index_i] = pts[:, 5]
        pose[:, thumb_i] = pts[:, 2]
    # Body units -> image: rotate by the tilt, scale, place; z keeps the same scale.
    c, s = math.cos(math.radians(signer.tilt_deg)), math.sin(math.radians(signer.tilt_deg))
    rot = np.array([[c, -s], [s, c]])
    centre = np.array(signer.centre)

    def to_image(p: np.ndarray) -> np.ndarray:
        out = np.empty_like(p)
        out[..., :2] = centre + signer.scale * (p[..., :2] @ rot.T)
        out[..., 2] = signer.scale * p[..., 2]
        return np.asarray(
            out + rng.normal(0.0, signer.jitter, size=p.shape) * np.array([1.0, 1.0, 0.5])
        )

    return to_image(hands["left"]), to_image(hands["right"]), to_image(pose), left.seen, right.seen


def _to_frames(
    left: np.ndarray,
    right: np.ndarray,
    pose: np.ndarray,
    seen_l: np.ndarray,
    seen_r: np.ndarray,
    truth: str | None,
) -> list[Frame]:
    lq = np.round(left, 5).tolist()
    rq = np.round(right, 5).tolist()
    pq = np.round(pose, 5).tolist()
    return [
        {
            "hands": {"left": lq[i] if seen_l[i] else None, "right": rq[i] if seen_r[i] else None},
            "pose": pq[i],
            "truth": truth,
        }
        for i in range(len(pq))
    ]


def sign_length(label: str, signer: Signer, rng: np.random.Generator, fps: float = 30.0) -> int:
    """Frames of one performance of ``label`` by ``signer`` at ``fps`` (20-60 at 30 fps)."""
    base = SIGNS[label].frames * rng.uniform(0.9, 1.1) / signer.speed
    n = round(min(max(base, MIN_SIGN_FRAMES), MAX_SIGN_FRAMES) * fps / 30.0)
    return max(n, 8)


def generate_sign(
    label: str,
    rng: np.random.Generator,
    signer: Signer | None = None,
    *,
    idle_visible: bool = True,
    fps: float = 30.0,
) -> list[Frame]:
    """Frames of one performance of sign ``label`` (rise, core movement, drop), truth = label.

    ``idle_visible``: whether a hand the sign does not use is detected (lowered at rest).
    Raises KeyError for an unknown label.
    """
    if label not in SIGNS:
        raise KeyError(f"unknown sign {label!r}; known: {', '.join(SIGN_CLASSES)}")
    signer = signer or random_signer(rng)
    spec = SIGNS[label]
    n = sign_length(label, signer, rng, fps)
    right = _sign_track(spec.right, "right", n, rng)
    left = (
        _sign_track(spec.left, "left", n, rng)
        if spec.left
        else _rest_track("left", n, rng, idle_visible)
    )
    # Dropped detections: single frames where the detector loses a hand.
    for track in (left, right):
        if track.seen.any():
            track.seen = track.seen & (rng.random(n) >= signer.drop_rate)
    return _to_frames(*_render(left, right, signer, rng), truth=label)


def generate_rest(
    n: int, rng: np.random.Generator, signer: Signer | None = None, *, visible: bool = True
) -> list[Frame]:
    """``n`` rest frames: hands lowered and nearly still (or not detected), truth None."""
    signer = signer or random_signer(rng)
    if n <= 0:
        return []
    left = _rest_track("left", n, rng, visible)
    right = _rest_track("right", n, rng, visible)
    return _to_frames(*_render(left, right, signer, rng), truth=None)


def sample_segment(
    label: str,
    rng: np.random.Generator,
    signer: Signer | None = None,
    *,
    lead: tuple[int, int] = (0, 6),
    trail: tuple[int, int] = (0, 12),
    max_trim: int = 3,
) -> list[Frame]:
    """A sign as the backend's segmenter would record it: random leading/trailing rest frames
    and a small random truncation at either end (training and evaluation windows)."""
    signer = signer or random_signer(rng)
    visible = bool(rng.random() < 0.5)
    frames = generate_sign(label, rng, signer, idle_visible=visible)
    a = int(rng.integers(0, max_trim + 1))
    b = int(rng.integers(0, max_trim + 1))
    frames = frames[a : len(frames) - b]
    before = generate_rest(int(rng.integers(lead[0], lead[1] + 1)), rng, signer, visible=visible)
    after = generate_rest(int(rng.integers(trail[0], trail[1] + 1)), rng, signer, visible=visible)
    return before + frames + after


def generate_stream(
    num_signs: int,
    seed: int,
    sign_mix: Sequence[str] | None = None,
    rest_frames: tuple[int, int] = (15, 30),
    fps: float = 30.0,
) -> Iterator[Frame]:
    """Yield a stream: rest, sign, rest, ..., sign, rest, with frame_idx, timestamp and truth.

    One signer per stream. Signs are drawn uniformly from ``sign_mix`` (all classes when None;
    repeat a label to weight it). Same arguments, same stream.
    """
    if num_signs < 0:
        raise ValueError(f"num_signs: expected >= 0, got {num_signs}")
    lo, hi = rest_frames
    if not 0 <= lo <= hi:
        raise ValueError(f"rest_frames: expected 0 <= lo <= hi, got {rest_frames}")
    if fps <= 0:
        raise ValueError(f"fps: expected > 0, got {fps}")
    mix = list(sign_mix) if sign_mix else list(SIGN_CLASSES)
    unknown = [s for s in mix if s not in SIGNS]
    if unknown:
        raise ValueError(f"sign_mix: unknown sign(s) {unknown}; known: {', '.join(SIGN_CLASSES)}")
    rng = np.random.default_rng(seed)
    signer = random_signer(rng)
    idx = 0

    def stamp(frames: list[Frame]) -> Iterator[Frame]:
        nonlocal idx
        for f in frames:
            yield {"frame_idx": idx, "timestamp": round(idx / fps, 6), **f}
            idx += 1

    visible = bool(rng.random() < 0.5)
    for _ in range(num_signs):
        n_rest = round(int(rng.integers(lo, hi + 1)) * fps / 30.0)
        yield from stamp(generate_rest(n_rest, rng, signer, visible=visible))
        label = mix[int(rng.integers(len(mix)))]
        yield from stamp(generate_sign(label, rng, signer, idle_visible=visible, fps=fps))
        visible = bool(rng.random() < 0.5)
    yield from stamp(
        generate_rest(
            round(int(rng.integers(lo, hi + 1)) * fps / 30.0), rng, signer, visible=visible
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write a synthetic stream as JSONL (one frame message per line)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signs", type=int, default=5, help="number of signs in the stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sign-mix", default=None, help="comma-separated labels to draw from")
    parser.add_argument("--rest-frames", default="15,30", help="LO,HI rest frames between signs")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--out", default="-", help="output .jsonl path, '-' for stdout")
    parser.add_argument("--list", action="store_true", help="print the sign classes and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SIGN_CLASSES))
        return 0
    try:
        lo, hi = (int(x) for x in args.rest_frames.split(","))
    except ValueError:
        parser.error(f"--rest-frames: expected LO,HI integers, got {args.rest_frames!r}")
    mix = [s.strip() for s in args.sign_mix.split(",") if s.strip()] if args.sign_mix else None
    try:
        frames = generate_stream(args.signs, args.seed, mix, (lo, hi), args.fps)
        if args.out == "-":
            for f in frames:
                sys.stdout.write(json.dumps(f, separators=(",", ":")) + "\n")
        else:
            out = Path(args.out)
            tmp = out.with_name(out.name + ".tmp")
            with tmp.open("w") as fh:
                for f in frames:
                    fh.write(json.dumps(f, separators=(",", ":")) + "\n")
            tmp.replace(out)
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
