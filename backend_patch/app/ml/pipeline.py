"""The old (local) inference path: per-session sign segmentation and the shared model.

Three pieces, one job each:

- :class:`SignSegmenter` is the per-session state machine IDLE -> RECORDING -> INFERRING -> IDLE
  over normalised frames. It decides where a sign starts and ends and hands out the recorded
  frames; it never runs the model.
- :class:`SentenceBuilder` turns classified signs into a sentence buffer (confidence threshold,
  sentence complete after a longer pause).
- :class:`InferenceEngine` holds the model, loaded ONCE per process and shared by all sessions
  (the old singleton), and runs ``_infer_window`` in a bounded thread pool so the event loop is
  never blocked.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .features import DEFAULT_MOTION_THRESHOLD, hand_motion_between, hands_seen
from .predictions import softmax_top_k

__all__ = [
    "Classification",
    "FrameStep",
    "InferenceEngine",
    "ModelNotLoadedError",
    "SegmenterConfig",
    "SentenceBuilder",
    "SessionState",
    "SignSegmenter",
]


class SessionState(StrEnum):
    """Where a session's state machine stands; the value is what replies carry."""

    IDLE = "idle"
    RECORDING = "recording"
    INFERRING = "inferring"


@dataclass(frozen=True)
class SegmenterConfig:
    """Thresholds of the state machine (frames counted at the client's camera rate)."""

    motion_threshold: float = DEFAULT_MOTION_THRESHOLD
    rest_frames_to_end: int = 10
    min_sign_frames: int = 8
    max_sign_frames: int = 120

    def __post_init__(self) -> None:
        if not self.motion_threshold > 0:
            raise ValueError("motion_threshold must be > 0")
        if self.rest_frames_to_end < 1 or self.min_sign_frames < 1:
            raise ValueError("rest_frames_to_end and min_sign_frames must be >= 1")
        if self.max_sign_frames < max(2, self.min_sign_frames):
            raise ValueError("max_sign_frames must be >= max(2, min_sign_frames)")


@dataclass(frozen=True)
class FrameStep:
    """What one frame did to the state machine.

    ``sign`` holds the recorded normalised frames [T, 225] of a sign that ended on this frame
    (to classify); ``discarded`` tells that a too-short recording was dropped instead.
    """

    state: SessionState
    moving: bool
    sign: np.ndarray | None = None
    discarded: bool = False


# The steps without a sign, shared (a FrameStep is immutable): one per frame otherwise.
_IDLE_STILL = FrameStep(SessionState.IDLE, moving=False)
_RECORDING_MOVING = FrameStep(SessionState.RECORDING, moving=True)
_RECORDING_STILL = FrameStep(SessionState.RECORDING, moving=False)


class SignSegmenter:
    """Per-session state machine over normalised frames (float32 [225] each)."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        self._state = SessionState.IDLE
        self._prev: np.ndarray | None = None
        self._prev_seen = (False, False)
        self._frames: list[np.ndarray] = []
        self._rest = 0

    @property
    def state(self) -> SessionState:
        """The current state (INFERRING right after a sign ended, until the next frame)."""
        return self._state

    @property
    def recorded_frames(self) -> int:
        """Frames recorded so far in the current sign."""
        return len(self._frames)

    def push(self, frame: np.ndarray) -> FrameStep:
        """Advance the state machine by one normalised frame and say what happened."""
        prev, self._prev = self._prev, frame
        # Each frame's hands are looked at once, not once as the current and again as the
        # previous frame.
        seen = hands_seen(frame)
        prev_seen, self._prev_seen = self._prev_seen, seen
        moving = (
            prev is not None
            and hand_motion_between(prev, frame, prev_seen, seen) > self.config.motion_threshold
        )
        if self._state is SessionState.INFERRING:
            # The ended sign was handed out with the previous frame; the machine is free again.
            self._state = SessionState.IDLE
        if self._state is SessionState.IDLE:
            if not moving:
                return _IDLE_STILL
            # The frame before the first moving one is where the motion starts from.
            self._frames = [prev, frame] if prev is not None else [frame]
            self._rest = 0
            self._state = SessionState.RECORDING
            return _RECORDING_MOVING
        # RECORDING
        self._frames.append(frame)
        self._rest = 0 if moving else self._rest + 1
        if self._rest >= self.config.rest_frames_to_end:
            # The trailing rest frames are not part of the sign.
            return self._finish(self._frames[: len(self._frames) - self._rest], moving)
        if len(self._frames) >= self.config.max_sign_frames:
            return self._finish(self._frames, moving)
        return _RECORDING_MOVING if moving else _RECORDING_STILL

    def reset(self) -> None:
        """Forget everything (a new session)."""
        self.__init__(self.config)  # type: ignore[misc]

    def _finish(self, frames: list[np.ndarray], moving: bool) -> FrameStep:
        self._frames, self._rest = [], 0
        if len(frames) < self.config.min_sign_frames:
            self._state = SessionState.IDLE
            return FrameStep(SessionState.IDLE, moving=moving, discarded=True)
        self._state = SessionState.INFERRING
        return FrameStep(SessionState.INFERRING, moving=moving, sign=np.stack(frames))


class SentenceBuilder:
    """Accepted signs -> sentence buffer; a long enough pause completes the sentence."""

    def __init__(
        self, confidence_threshold: float = 0.5, pause_frames: int = 45, max_signs: int = 32
    ) -> None:
        self.confidence_threshold = confidence_threshold
        self.pause_frames = pause_frames
        self.max_signs = max_signs
        self._signs: list[str] = []
        self._pause = 0

    def update(
        self, *, resting: bool, prediction: str | None = None, confidence: float = 0.0
    ) -> tuple[list[str], bool]:
        """Account one frame (in frame order); return (sentence buffer, sentence complete).

        ``resting`` is true for frames of the IDLE state without motion; ``prediction`` is the
        sign classified on this frame, if any. On the completing frame the buffer returned is the
        finished sentence; the buffer is empty afterwards.
        """
        if prediction is not None and confidence >= self.confidence_threshold:
            self._signs.append(prediction)
            del self._signs[: -self.max_signs]
            self._pause = 0
        elif not resting:
            self._pause = 0
        elif self._signs:
            self._pause += 1
            if self._pause >= self.pause_frames:
                sentence, self._signs, self._pause = self._signs, [], 0
                return sentence, True
        return list(self._signs), False


@dataclass(frozen=True)
class Classification:
    """One classified window, whichever path served it."""

    prediction: str
    confidence: float
    alternatives: list[dict[str, Any]]
    served_by: str
    model_version: str


class ModelNotLoadedError(RuntimeError):
    """Inference was asked for before InferenceEngine.load() succeeded."""


class InferenceEngine:
    """The model loaded once per process, shared by all sessions, run in a bounded pool."""

    def __init__(self, model_dir: Path, *, workers: int = 1, torch_threads: int = 1) -> None:
        self.model_dir = Path(model_dir)
        self.workers = workers
        self.torch_threads = torch_threads
        self._loaded: Any = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def ready(self) -> bool:
        """True once the model is loaded and the worker pool is up."""
        return self._loaded is not None and self._executor is not None

    @property
    def model_version(self) -> str:
        """The loaded model's metadata version."""
        return str(self._require().metadata["version"])

    @property
    def labels(self) -> Sequence[str]:
        """Class names, index = class id."""
        labels: Sequence[str] = self._require().labels
        return labels

    @property
    def device(self) -> str:
        """The torch device the model runs on."""
        return str(self._require().device)

    def load(self) -> None:
        """Load the artifacts (once; later calls do nothing) and warm the model up.

        Raises FileNotFoundError naming MODEL_DIR when the artifacts are missing.
        """
        with self._lock:
            if self._loaded is not None:
                return
            if not (self.model_dir / "metadata.json").is_file():
                raise FileNotFoundError(
                    f"MODEL_DIR={self.model_dir}: no model artifacts there (metadata.json "
                    "missing); build them with `make setup`"
                )
            import torch  # deferred: ~1 s to import, and the state machine alone needs none

            from .model import load_artifacts

            torch.set_num_threads(self.torch_threads)
            loaded = load_artifacts(self.model_dir)
            # The first forward passes are slow (allocations, TorchScript profiling runs): pay
            # them here rather than on the first user's sign.
            self._loaded = loaded
            zeros = np.zeros((64, 469), dtype=np.float32)
            for _ in range(3):
                self._infer_window(zeros)
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="signflow-infer"
            )

    def _require(self) -> Any:
        if self._loaded is None:
            raise ModelNotLoadedError("the model is not loaded (InferenceEngine.load())")
        return self._loaded

    def _infer_window(self, window: np.ndarray) -> tuple[str, float, list[dict[str, Any]]]:
        """Classify one enriched window [64, 469] -> (prediction, confidence, alternatives).

        Synchronous: call it from the worker pool (``infer``) or from a test.
        """
        import torch

        loaded = self._require()
        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)).unsqueeze(0)
        with torch.inference_mode():
            logits = loaded.module(x.to(loaded.device)).float().cpu().numpy()
        top = softmax_top_k(logits, loaded.labels, loaded.temperature, k=4)[0]
        alternatives = [
            {"label": str(a["label"]), "confidence": float(a["confidence"])}
            for a in top["alternatives"]
        ]
        return str(top["prediction"]), float(top["confidence"]), alternatives

    async def infer(self, window: np.ndarray) -> Classification:
        """Classify one window in the worker pool without blocking the event loop."""
        if self._executor is None:
            raise ModelNotLoadedError("the model is not loaded (InferenceEngine.load())")
        loop = asyncio.get_running_loop()
        prediction, confidence, alternatives = await loop.run_in_executor(
            self._executor, self._infer_window, window
        )
        return Classification(prediction, confidence, alternatives, "local", self.model_version)

    def close(self) -> None:
        """Stop the worker pool (waits for the inference in flight)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
