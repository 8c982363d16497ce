"""The state machine, the sentence buffer and the local engine, at unit level."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from backend_patch.app.ml.feature_engineering import build_window
from backend_patch.app.ml.features import HAND_DIM, RAW_DIM
from backend_patch.app.ml.pipeline import (
    InferenceEngine,
    ModelNotLoadedError,
    SegmenterConfig,
    SentenceBuilder,
    SessionState,
    SignSegmenter,
)

CFG = SegmenterConfig(
    motion_threshold=0.025, rest_frames_to_end=3, min_sign_frames=4, max_sign_frames=12
)


def _frame(x: float) -> np.ndarray:
    """A normalised frame with both hands present, shifted by ``x`` along the x axis."""
    v = np.zeros(RAW_DIM, dtype=np.float32)
    hands = v[: 2 * HAND_DIM].reshape(2, 21, 3)
    hands[:] = 0.5
    hands[..., 0] += x
    return v


class _Stream:
    """Feeds frames: ``rest(n)`` keeps the hands still, ``move(n)`` moves them 0.1 per frame."""

    def __init__(self, seg: SignSegmenter) -> None:
        self.seg, self.x, self.steps = seg, 0.0, []

    def rest(self, n: int) -> list:
        return [self._push() for _ in range(n)]

    def move(self, n: int, step: float = 0.1) -> list:
        out = []
        for _ in range(n):
            self.x += step
            out.append(self._push())
        return out

    def _push(self):
        step = self.seg.push(_frame(self.x))
        self.steps.append(step)
        return step


def test_idle_stays_idle_at_rest() -> None:
    s = _Stream(SignSegmenter(CFG))
    steps = s.rest(20)
    assert {st.state for st in steps} == {SessionState.IDLE}
    assert not any(st.moving or st.sign is not None or st.discarded for st in steps)


def test_motion_below_threshold_is_rest() -> None:
    s = _Stream(SignSegmenter(CFG))
    s.rest(1)
    steps = s.move(10, step=0.02)  # energy 0.02 < 0.025
    assert {st.state for st in steps} == {SessionState.IDLE}


def test_idle_to_recording_on_motion() -> None:
    seg = SignSegmenter(CFG)
    s = _Stream(seg)
    s.rest(2)
    (step,) = s.move(1)
    assert step.state is SessionState.RECORDING and step.moving
    assert seg.state is SessionState.RECORDING
    assert seg.recorded_frames == 2  # the frame the motion started from + the moving one


def test_recording_to_inferring_after_rest_frames_then_idle() -> None:
    seg = SignSegmenter(CFG)
    s = _Stream(seg)
    s.rest(2)
    moving = s.move(6)
    assert all(st.state is SessionState.RECORDING for st in moving)
    rest = s.rest(3)
    assert [st.state for st in rest[:2]] == [SessionState.RECORDING] * 2
    assert rest[2].state is SessionState.INFERRING
    assert seg.state is SessionState.INFERRING
    # The sign = onset frame + 6 moving frames; the 3 trailing rest frames are cut off.
    assert rest[2].sign is not None and rest[2].sign.shape == (7, RAW_DIM)
    np.testing.assert_allclose(rest[2].sign[-1], _frame(s.x))
    (after,) = s.rest(1)
    assert after.state is SessionState.IDLE and seg.state is SessionState.IDLE


def test_short_pause_does_not_end_the_sign() -> None:
    s = _Stream(SignSegmenter(CFG))
    s.rest(1)
    s.move(3)
    pause = s.rest(2)  # rest_frames_to_end is 3
    again = s.move(1)
    assert all(st.state is SessionState.RECORDING for st in [*pause, *again])


def test_max_length_ends_the_sign() -> None:
    seg = SignSegmenter(CFG)
    s = _Stream(seg)
    s.rest(1)
    steps = s.move(11)  # onset + 11 moving = 12 = max_sign_frames
    assert steps[-1].state is SessionState.INFERRING
    assert steps[-1].sign is not None and len(steps[-1].sign) == 12
    # Still moving: the next frame starts a new recording from INFERRING -> IDLE -> RECORDING.
    (nxt,) = s.move(1)
    assert nxt.state is SessionState.RECORDING


def test_too_short_recording_is_discarded() -> None:
    seg = SignSegmenter(CFG)
    s = _Stream(seg)
    s.rest(1)
    s.move(1)  # onset + 1 = 2 frames < min_sign_frames 4
    rest = s.rest(3)
    assert rest[-1].state is SessionState.IDLE and rest[-1].discarded
    assert rest[-1].sign is None and seg.state is SessionState.IDLE


def test_hand_appearing_is_not_motion() -> None:
    seg = SignSegmenter(CFG)
    empty = np.zeros(RAW_DIM, dtype=np.float32)
    assert seg.push(empty).state is SessionState.IDLE
    assert seg.push(_frame(3.0)).state is SessionState.IDLE


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_sign_frames"):
        SegmenterConfig(min_sign_frames=10, max_sign_frames=5)
    with pytest.raises(ValueError, match="motion_threshold"):
        SegmenterConfig(motion_threshold=0)


def test_sentence_accepts_confident_signs_and_completes_after_pause() -> None:
    sb = SentenceBuilder(confidence_threshold=0.6, pause_frames=3)
    assert sb.update(resting=False, prediction="hello", confidence=0.9) == (["hello"], False)
    assert sb.update(resting=False, prediction="noise", confidence=0.3) == (["hello"], False)
    assert sb.update(resting=True) == (["hello"], False)
    assert sb.update(resting=False) == (["hello"], False)  # motion resets the pause
    assert sb.update(resting=False, prediction="world", confidence=0.7) == (
        ["hello", "world"],
        False,
    )
    assert sb.update(resting=True) == (["hello", "world"], False)
    assert sb.update(resting=True) == (["hello", "world"], False)
    assert sb.update(resting=True) == (["hello", "world"], True)
    assert sb.update(resting=True) == ([], False)


def test_sentence_is_bounded() -> None:
    sb = SentenceBuilder(confidence_threshold=0.0, pause_frames=3, max_signs=2)
    for word in ("a", "b", "c"):
        buf, _ = sb.update(resting=False, prediction=word, confidence=1.0)
    assert buf == ["b", "c"]


def test_engine_refuses_before_load(tmp_path) -> None:
    engine = InferenceEngine(tmp_path)
    assert not engine.ready
    with pytest.raises(ModelNotLoadedError):
        engine._infer_window(np.zeros((64, 469), np.float32))
    with pytest.raises(FileNotFoundError, match="MODEL_DIR="):
        engine.load()


def test_engine_classifies_in_its_worker_thread(model_dir) -> None:
    engine = InferenceEngine(model_dir, workers=1, torch_threads=1)
    engine.load()
    engine.load()  # once only
    try:
        assert engine.ready and engine.model_version == "1.0"
        window = np.zeros((64, 469), np.float32)
        pred, conf, alts = engine._infer_window(window)
        assert pred in engine.labels and 0.0 <= conf <= 1.0
        assert len(alts) == 4 and alts[0]["label"] == pred

        seen: list[str] = []
        original = engine._infer_window

        def spy(w):
            seen.append(threading.current_thread().name)
            return original(w)

        engine._infer_window = spy  # type: ignore[method-assign]
        result = asyncio.run(engine.infer(window))
        assert result.served_by == "local" and result.model_version == "1.0"
        assert result.prediction == pred
        assert seen and seen[0].startswith("signflow-infer")
    finally:
        engine.close()
    assert not engine.ready


def test_engine_labels_synthetic_signs(model_dir) -> None:
    from backend_patch.app.ml import synthetic
    from backend_patch.app.ml.features import normalize_landmarks

    engine = InferenceEngine(model_dir)
    engine.load()
    try:
        hits = total = 0
        for frames in _synthetic_signs(synthetic, seed=11, signs=10):
            truth = frames[len(frames) // 2]["truth"]
            seq = np.stack([normalize_landmarks(f) for f in frames if f["truth"] == truth])
            pred, _, _ = engine._infer_window(build_window(seq))
            hits += pred == truth
            total += 1
        assert hits >= total - 1, f"{hits}/{total}"
    finally:
        engine.close()


def _synthetic_signs(synthetic, seed: int, signs: int) -> list[list[dict]]:
    """Group a synthetic stream's frames by the sign (truth run) they belong to."""
    stream = list(synthetic_stream(synthetic, seed, signs))
    groups: list[list[dict]] = []
    current: list[dict] = []
    for frame in stream:
        if frame.get("truth") is None:
            if current:
                groups.append(current)
                current = []
        else:
            current.append(frame)
    if current:
        groups.append(current)
    return groups


def synthetic_stream(synthetic, seed: int, signs: int):
    """The frames of a synthetic stream."""
    return synthetic.generate_stream(num_signs=signs, seed=seed)
