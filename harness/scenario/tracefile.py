"""A workload's trace source: recorded files (JSONL), parsed and checked when the scenario is
validated, and the seeded synthetic trace.

The format belongs to the scenario (``workload.trace.file``): ``harness validate`` parses the
whole file, so a bad line is an exit-2 validation error naming ``file:line``, never a traceback
after the stack has started. Synthetic traces come from the backend's own generator (the one the
model is trained on), imported here only. :mod:`harness.load.trace` re-exports these names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

TRUTH_KEY = "truth"


def _no_constant(name: str) -> float:
    # json accepts NaN/Infinity, which no peer can read back: refuse them where they appear.
    raise ValueError(f"{name} is not a number JSON allows")


class TraceError(ValueError):
    """A trace could not be loaded; the message names the file, the line and the field."""


def load_trace_file(path: Path) -> list[dict[str, Any]]:
    """Load a JSONL trace (one frame object per line, blank lines skipped).

    Raises TraceError naming ``file:line`` and the field for invalid JSON, NaN/Infinity, a line
    that is not an object, a ``truth`` that is not a string or null, or ``hands``/``pose`` of
    the wrong type.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    frames: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: invalid JSON at column {exc.colno}: {exc.msg}") from exc
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise TraceError(f"{where}: invalid frame: {reason}") from exc
        if not isinstance(obj, dict):
            raise TraceError(f"{where}: a frame must be a JSON object, got {type(obj).__name__}")
        _check_frame(obj, where)
        frames.append(obj)
    if not frames:
        raise TraceError(f"{path}: trace file holds no frames")
    return frames


def _check_frame(obj: dict[str, Any], where: str) -> None:
    truth = obj.get(TRUTH_KEY)
    if truth is not None and not isinstance(truth, str):
        raise TraceError(
            f"{where}: field 'truth' must be a label string or null, got {type(truth).__name__}"
        )
    hands = obj.get("hands")
    if hands is not None and not isinstance(hands, dict):
        raise TraceError(f"{where}: field 'hands' must be an object, got {type(hands).__name__}")
    pose = obj.get("pose")
    if pose is not None and not isinstance(pose, list):
        raise TraceError(f"{where}: field 'pose' must be a list, got {type(pose).__name__}")


def synthetic_trace(
    seed: int, signs: int, sign_mix: list[str] | None, rest_frames: tuple[int, int]
) -> list[dict[str, Any]]:
    """A seeded synthetic trace of ``signs`` signs separated by rest frames, each frame carrying
    its ``truth`` (``backend_patch.app.ml.synthetic.generate_stream``). TraceError when empty;
    ValueError for an unknown sign in ``sign_mix`` or bad ``rest_frames``."""
    from backend_patch.app.ml.synthetic import generate_stream

    # Any length reaches generate_stream, whose ValueError names a bad one.
    frames = list(generate_stream(signs, seed, sign_mix or None, cast(Any, tuple(rest_frames))))
    if not frames:
        raise TraceError("synthetic trace is empty (signs must be >= 1)")
    return frames
