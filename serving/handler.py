"""TorchServe handler for the SignFlow sign classifier, built for dynamic batching.

One worker receives a list of requests (a batch). Each request is parsed on its own; a bad
request gets its own 4xx answer while the valid ones of the same batch go through ONE forward
pass. The window and softmax logic come from the backend's own modules, packaged into the
archive with ``--extra-files`` (top-level there), so the two serving paths cannot drift.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ts.metrics.dimension import Dimension
from ts.torch_handler.base_handler import BaseHandler

try:  # inside the TorchServe archive the ML modules sit at the top level of sys.path
    import feature_engineering
    import features
    import predictions
except ImportError:  # running from the repository (e.g. a debugger): use the package
    from backend_patch.app.ml import feature_engineering, features, predictions

logger = logging.getLogger(__name__)

SEQ_LEN = 64
FEATURE_DIM = 469
WINDOW_BYTES = SEQ_LEN * FEATURE_DIM * 4
TOP_K = 4
# Bound the work one request can ask for: a window is 64 frames, a few seconds of video at most.
MAX_FRAMES = 1024
# Custom metrics, declared in config/metrics.yaml so the Prometheus endpoint exports them.
BATCHES_METRIC = "SignflowBatches"  # +1 per batch, label BatchSize: the batch-size histogram
REQUESTS_METRIC = "SignflowBatchedRequests"  # +size per batch: mean = this / SignflowBatches
THREADS_ENV = "SIGNFLOW_TORCH_THREADS"


class RequestError(ValueError):
    """A problem with one request of a batch; answered with ``status`` for that request only."""

    def __init__(self, status: int, field_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field_name
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The JSON body sent back for this request."""
        return {"error": {"code": self.status, "field": self.field, "message": self.message}}


@dataclass
class PreparedBatch:
    """The parsed batch: the valid windows stacked, and one error per bad request."""

    size: int
    valid: list[int] = field(default_factory=list)
    windows: torch.Tensor | None = None
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
    return arr


def window_from_bytes(raw: bytes | bytearray) -> np.ndarray:
    """Decode a raw little-endian float32 window of 64x469 values."""
    if len(raw) != WINDOW_BYTES:
        raise RequestError(
            400,
            "body",
            f"binary body has {len(raw)} bytes, expected {WINDOW_BYTES} "
            f"(64x469 float32 little-endian)",
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
            raise RequestError(422, name, f"{name}: {exc}") from exc
    window = feature_engineering.build_window(np.stack(rows).astype(np.float32))
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


def _default_threads(device: torch.device) -> int:
    """One intra-op thread per worker on CPU: workers, not threads, use the cores."""
    env = os.environ.get(THREADS_ENV)
    if env:
        return max(1, int(env))
    return 1 if device.type == "cpu" else max(1, torch.get_num_threads())


class SignFlowHandler(BaseHandler):
    """Binary/JSON/frames bodies in, one batched forward pass, top-4 JSON answers out."""

    def initialize(self, context: Any) -> None:
        """Load model.pt, labels.json and metadata.json from the extracted archive."""
        props = context.system_properties
        model_dir = Path(props.get("model_dir", "."))
        gpu_id = props.get("gpu_id")
        if torch.cuda.is_available() and gpu_id is not None:
            self.device = torch.device(f"cuda:{gpu_id}")
        else:
            self.device = torch.device("cpu")
        cfg = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        threads = int(cfg.get("torch_threads", 0)) or _default_threads(self.device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.model = torch.jit.load(str(model_dir / "model.pt"), map_location=self.device)
        self.model.eval()
        self.labels: list[str] = json.loads((model_dir / "labels.json").read_text())
        self.metadata: dict[str, Any] = json.loads((model_dir / "metadata.json").read_text())
        self.model_version = str(self.metadata.get("version", props.get("model_version", "")))
        self.temperature = float(self.metadata.get("temperature", 1.0))
        self.context = context
        self.initialized = True
        logger.warning(
            "signflow %s ready on %s, %d torch threads, %d classes",
            self.model_version,
            self.device,
            threads,
            len(self.labels),
        )

    def preprocess(self, data: list[dict[str, Any]]) -> PreparedBatch:
        """Parse every request on its own; bad ones are recorded, not raised."""
        batch = PreparedBatch(size=len(data))
        rows: list[np.ndarray] = []
        for idx, request in enumerate(data):
            try:
                rows.append(parse_request(request))
                batch.valid.append(idx)
            except RequestError as exc:
                batch.errors[idx] = exc
        if rows:
            batch.windows = torch.from_numpy(np.stack(rows)).to(self.device)
        return batch

    def inference(self, data: PreparedBatch, *args: Any, **kwargs: Any) -> np.ndarray | None:
        """ONE forward pass over all valid windows of the batch."""
        if data.windows is None:
            return None
        with torch.inference_mode():
            logits = self.model(data.windows)
        return logits.float().cpu().numpy()

    def postprocess(self, data: tuple[PreparedBatch, np.ndarray | None]) -> list[bytes]:
        """One compact JSON answer per request, in request order."""
        batch, logits = data
        answers: list[bytes] = [b""] * batch.size
        if logits is not None:
            preds = predictions.softmax_top_k(logits, self.labels, self.temperature, k=TOP_K)
            for idx, pred in zip(batch.valid, preds, strict=True):
                body = {**pred, "model_version": self.model_version, "batch_size": batch.size}
                answers[idx] = json.dumps(body, separators=(",", ":")).encode()
        for idx, err in batch.errors.items():
            answers[idx] = json.dumps(err.to_json(), separators=(",", ":")).encode()
        return answers

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """Run the batch; always return exactly one entry per request."""
        start = time.perf_counter()
        self.context = context
        batch = self.preprocess(data)
        answers = self.postprocess((batch, self.inference(batch)))
        for idx in range(batch.size):
            context.set_response_content_type(idx, "application/json")
        for idx, err in batch.errors.items():
            context.set_response_status(err.status, err.message[:200], idx)
        self._emit_metrics(context, batch.size, time.perf_counter() - start)
        return answers

    def _emit_metrics(self, context: Any, size: int, seconds: float) -> None:
        metrics = getattr(context, "metrics", None)
        if metrics is None:
            return
        # Counters survive any scrape interval: consumers take deltas per window
        # (mean batch size = requests / batches; the per-size counts come from the label).
        metrics.add_counter(BATCHES_METRIC, 1, None, [Dimension("BatchSize", str(size))])
        metrics.add_counter(REQUESTS_METRIC, size, None, [])
        metrics.add_time("HandlerTime", round(seconds * 1000, 3), None, "ms")
