"""Request bodies of the SignFlow TorchServe handler -> float32 [64, 469] windows.

Kept apart from handler.py because TorchServe requires the handler module to define exactly
one class. Packaged into the archive as a top-level module, like the shared ML modules.
Bodies: raw little-endian float32 bytes (primary), JSON ``{"window": [[...]]}``, or JSON
``{"frames": [...]}`` enriched here with the backend's own ``build_window``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # inside the TorchServe archive the ML modules sit at the top level of sys.path
    import feature_engineering
    import features
except ImportError:  # running from the repository: use the package
    from backend_patch.app.ml import feature_engineering, features

# The window contract is the ML core's, not a copy of it.
SEQ_LEN = feature_engineering.SEQ_LEN
FEATURE_DIM = feature_engineering.FEATURE_DIM
WINDOW_BYTES = SEQ_LEN * FEATURE_DIM * 4
# The same window as little-endian float16 (half the bytes; the model still runs in float32):
# top-1 identical and confidences within 6.3e-4 on 200 synthetic windows
# (benchmarks/results/served_body.json says what it buys).
WINDOW_BYTES_F16 = SEQ_LEN * FEATURE_DIM * 2
# Bound the work one request can ask for: a window is 64 frames, a few seconds of video at most.
MAX_FRAMES = 1024
# Windows from build_window hold normalised coordinates (|x| <= features.MAX_ABS_COORD = 10) and
# their velocities, distances and angles: below ~40 in magnitude. Far larger finite values
# (e.g. 1e38) drive the model to non-finite logits; refuse them as input, not as a model error.
MAX_ABS_VALUE = 1000.0
# An error message echoes parts of the request (keys, JSON positions): bound what goes back.
MAX_MESSAGE_CHARS = 300

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A problem with one request of a batch; answered with ``status`` for that request only."""

    def __init__(self, status: int, field_name: str, message: str) -> None:
        message = _bounded(message)
        super().__init__(message)
        self.status = status
        self.field = _bounded(field_name)
        self.message = message

    def reason_phrase(self) -> str:
        """The HTTP reason phrase: printable ASCII only (the message may echo request bytes,
        and a control character in a status line would break that request's answer)."""
        return re.sub(r"[^\x20-\x7e]", "?", self.message)[:200]

    def to_json(self, batch_size: int) -> dict[str, Any]:
        """The JSON body sent back for this request (``batch_size``: the batch it was in)."""
        error = {"code": self.status, "field": self.field, "message": self.message}
        return {"error": error, "batch_size": batch_size}


def _bounded(text: str) -> str:
    text = str(text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


@dataclass
class ParsedBatch:
    """A parsed batch: the valid windows stacked in request order, one error per bad request."""

    size: int
    valid: list[int] = field(default_factory=list)
    windows: np.ndarray | None = None  # float32 [len(valid), 64, 469]
    errors: dict[int, RequestError] = field(default_factory=dict)


def _body(request: dict[str, Any]) -> Any:
    """TorchServe hands the payload as ``data`` or ``body`` depending on the client."""
    body = request.get("data")
    if body is None:
        body = request.get("body")
    if body is None:
        raise RequestError(400, "body", "empty request: send a 64x469 float32 window")
    return body


def _check_window(arr: np.ndarray, field_name: str) -> np.ndarray:
    if arr.shape != (SEQ_LEN, FEATURE_DIM):
        raise RequestError(
            422,
            field_name,
            f"{field_name} has shape {list(arr.shape)}, expected [{SEQ_LEN}, {FEATURE_DIM}]",
        )
    if not np.isfinite(arr).all():
        row, col = np.argwhere(~np.isfinite(arr))[0]
        raise RequestError(
            422, f"{field_name}[{row}][{col}]", f"{field_name}[{row}][{col}] is NaN or infinite"
        )
    if (np.abs(arr) > MAX_ABS_VALUE).any():
        row, col = np.argwhere(np.abs(arr) > MAX_ABS_VALUE)[0]
        where = f"{field_name}[{row}][{col}]"
        raise RequestError(
            422,
            where,
            f"{where} is {arr[row, col]:.6g}, out of range (|value| <= {MAX_ABS_VALUE:g})",
        )
    return arr


def window_from_bytes(raw: bytes | bytearray) -> np.ndarray:
    """Decode a raw little-endian window of 64x469 values: float32 (WINDOW_BYTES) or float16
    (WINDOW_BYTES_F16, widened to float32), told apart by the length."""
    if len(raw) == WINDOW_BYTES_F16:
        arr = np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(SEQ_LEN, FEATURE_DIM)
        return _check_window(arr, "body")
    if len(raw) != WINDOW_BYTES:
        raise RequestError(
            400,
            "body",
            f"binary body has {len(raw)} bytes, expected {WINDOW_BYTES} "
            f"(64x469 float32 little-endian) or {WINDOW_BYTES_F16} (float16)",
        )
    arr = np.frombuffer(raw, dtype="<f4").reshape(SEQ_LEN, FEATURE_DIM)
    return _check_window(arr, "body")


def window_from_frames(frames: Any) -> np.ndarray:
    """Normalise raw landmark frames and build the window with the backend's own function."""
    if not isinstance(frames, list) or not frames:
        raise RequestError(422, "frames", "frames must be a non-empty list of landmark frames")
    if len(frames) > MAX_FRAMES:
        raise RequestError(422, "frames", f"frames has {len(frames)} entries, at most {MAX_FRAMES}")
    rows = []
    for i, frame in enumerate(frames):
        try:
            rows.append(features.normalize_landmarks(frame))
        except (ValueError, TypeError, KeyError) as exc:
            sub = getattr(exc, "field", None)
            name = f"frames[{i}].{sub}" if sub else f"frames[{i}]"
            raise RequestError(422, name, f"{name}: {getattr(exc, 'problem', exc)}") from exc
    try:
        window = feature_engineering.build_window(np.stack(rows).astype(np.float32))
    except ValueError as exc:
        raise RequestError(422, "frames", f"frames cannot form a window: {exc}") from exc
    return _check_window(np.asarray(window, dtype=np.float32), "frames")


def window_from_json(doc: Any) -> np.ndarray:
    """Accept ``{"window": [[...]]}`` (already enriched) or ``{"frames": [...]}`` (raw)."""
    if not isinstance(doc, dict):
        raise RequestError(422, "body", 'JSON body must be an object with "window" or "frames"')
    if "window" in doc:
        try:
            arr = np.asarray(doc["window"], dtype=np.float32)
        except (ValueError, TypeError) as exc:
            msg = f"window is not a 64x469 number array: {exc}"
            raise RequestError(422, "window", msg) from exc
        return _check_window(arr, "window")
    if "frames" in doc:
        return window_from_frames(doc["frames"])
    raise RequestError(422, "body", 'JSON body needs a "window" or a "frames" key')


def parse_request(request: dict[str, Any]) -> np.ndarray:
    """Turn one TorchServe request into a float32 [64, 469] window or raise RequestError."""
    body = _body(request)
    if isinstance(body, dict | list):  # TorchServe already decoded application/json
        return window_from_json(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, bytes | bytearray):
        raise RequestError(400, "body", f"unsupported body type {type(body).__name__}")
    if len(body) == WINDOW_BYTES:
        return window_from_bytes(body)
    if body[:1] in (b"{", b"["):
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(400, "body", f"invalid JSON body: {exc}") from exc
        return window_from_json(doc)
    return window_from_bytes(body)  # raises with the byte count


def unparsable(exc: BaseException) -> RequestError:
    """The 400 answer for a body that broke the parser in a way it does not name itself.

    Whatever one body does to the parser (a ``RecursionError`` from ``[`` x 100000, a
    ``MemoryError``, an ``OverflowError`` in numpy, a bug of ours) is that body's problem only:
    the others of its batch must still be answered. The exception type is named, the body never
    echoed.
    """
    if isinstance(exc, RecursionError):
        return RequestError(400, "body", "body is nested too deeply to parse")
    if isinstance(exc, MemoryError):
        return RequestError(400, "body", "body is too large to parse")
    return RequestError(400, "body", f"body could not be parsed ({type(exc).__name__})")


def parse_batch(data: list[dict[str, Any]]) -> ParsedBatch:
    """Parse every request of a batch on its own; bad ones are recorded, never raised.

    Never raises for a request's content: any ``Exception`` from one request becomes that
    request's 4xx :class:`RequestError` (``unparsable``), so one body can never fail its batch.
    """
    batch = ParsedBatch(size=len(data))
    rows: list[np.ndarray] = []
    for idx, request in enumerate(data):
        try:
            window = parse_request(request)
        except RequestError as exc:
            batch.errors[idx] = exc
            continue
        except Exception as exc:  # any: see unparsable(), one body gets one answer
            logger.warning("request %d of %d: parser raised %r", idx, len(data), type(exc))
            batch.errors[idx] = unparsable(exc)
            continue
        rows.append(window)
        batch.valid.append(idx)
    if rows:
        batch.windows = np.stack(rows)
    return batch
