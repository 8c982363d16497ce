"""Synthetic streams: determinism, classes, truth labels, motion separation, CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend_patch.app.ml import synthetic as S
from backend_patch.app.ml.features import (
    DEFAULT_MOTION_THRESHOLD,
    hand_motion_energy,
    normalize_landmarks,
)


def test_at_least_20_distinct_english_classes() -> None:
    assert len(S.SIGN_CLASSES) >= 20
    assert len(set(S.SIGN_CLASSES)) == len(S.SIGN_CLASSES)
    assert all(c.isascii() and c.isalpha() for c in S.SIGN_CLASSES)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = list(S.generate_stream(4, seed=7))
    b = list(S.generate_stream(4, seed=7))
    c = list(S.generate_stream(4, seed=8))
    assert a == b
    assert a != c


def test_stream_structure_and_truth() -> None:
    frames = list(S.generate_stream(6, seed=3, rest_frames=(12, 14)))
    assert [f["frame_idx"] for f in frames] == list(range(len(frames)))
    assert frames[1]["timestamp"] == pytest.approx(1 / 30, abs=1e-6)
    assert frames[0]["truth"] is None and frames[-1]["truth"] is None
    signs, prev = [], None
    for f in frames:
        if f["truth"] is not None and f["truth"] != prev:
            signs.append(f["truth"])
        prev = f["truth"]
        normalize_landmarks(f)  # every frame is valid input
    assert len(signs) == 6
    assert set(signs) <= set(S.SIGN_CLASSES)


def test_sign_mix_and_lengths() -> None:
    frames = list(S.generate_stream(5, seed=1, sign_mix=["yes", "no"]))
    assert {f["truth"] for f in frames} <= {"yes", "no", None}
    rng = np.random.default_rng(0)
    for label in S.SIGN_CLASSES:
        n = len(S.generate_sign(label, rng))
        assert 20 <= n <= 60, (label, n)
    with pytest.raises(ValueError, match="sign_mix"):
        list(S.generate_stream(1, seed=1, sign_mix=["nope"]))


def test_signs_move_more_than_rest() -> None:
    frames = list(S.generate_stream(40, seed=11))
    x = [normalize_landmarks(f) for f in frames]
    energy = np.array([0.0] + [hand_motion_energy(a, b) for a, b in itertools.pairwise(x)])
    rest = np.array([f["truth"] is None for f in frames])
    assert energy[rest].max() < DEFAULT_MOTION_THRESHOLD
    # Within every sign, never 10 consecutive frames below the threshold (the segmenter's end).
    run, longest = 0, 0
    for e, r in zip(energy, rest, strict=True):
        run = 0 if r or e >= DEFAULT_MOTION_THRESHOLD else run + 1
        longest = max(longest, run)
    assert longest < 10


def test_cli_writes_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "trace.jsonl"
    cmd = [sys.executable, "-m", "backend_patch.app.ml.synthetic", "--signs", "2", "--seed", "7"]
    subprocess.run([*cmd, "--out", str(out)], check=True, timeout=60)
    lines = out.read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert objs == list(S.generate_stream(2, seed=7))
    bad = subprocess.run([*cmd, "--sign-mix", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "nope" in bad.stderr
