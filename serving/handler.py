"""TorchServe handler for the SignFlow sign classifier, built for dynamic batching.

One worker receives a list of requests (a batch). Each request is parsed on its own; a bad
request gets its own 4xx answer while the valid ones of the same batch go through ONE forward
pass. The window and softmax logic come from the backend's own modules, packaged into the
archive with ``--extra-files`` (top-level there), so the two serving paths cannot drift.
TorchServe loads the ONE class defined here; request parsing lives in request_parser.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ts.metrics.dimension import Dimension
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

try:  # inside the TorchServe archive these modules sit at the top level of sys.path
    import predictions
    import request_parser
except ImportError:  # running from the repository: use the packages
    from backend_patch.app.ml import predictions
    from serving import request_parser

logger = logging.getLogger(__name__)

TOP_K = 4
# Custom metrics, declared in config/metrics.yaml so the Prometheus endpoint exports them.
BATCHES_METRIC = "SignflowBatches"  # +1 per batch, label BatchSize: the batch-size histogram
REQUESTS_METRIC = "SignflowBatchedRequests"  # +size per batch: mean = this / SignflowBatches
# Time as each request of a batch lives it: +(batch's time in us) x size per batch, so
# d(this) / d(SignflowBatchedRequests) = mean per request, comparable with TorchServe's
# per-request ts_queue_latency / ts_inference_latency counters. Counters, not gauges: a gauge
# (TorchServe's own HandlerTime / PredictionTime) only holds the last batch at a scrape.
HANDLER_US_METRIC = "SignflowHandlerMicroseconds"  # all of handle(): parse, forward, answers
MODEL_US_METRIC = "SignflowModelMicroseconds"  # the forward pass alone
THREADS_ENV = "SIGNFLOW_TORCH_THREADS"


def _default_threads(device: torch.device) -> int:
    """One intra-op thread per worker on CPU: workers, not threads, use the cores."""
    env = os.environ.get(THREADS_ENV)
    if env:
        return max(1, int(env))
    return 1 if device.type == "cpu" else max(1, torch.get_num_threads())


class SignFlowHandler(BaseHandler):  # type: ignore[misc]  # TorchServe's ts ships no types
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
        with warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.export; TorchServe still loads it best.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(  # type: ignore[no-untyped-call]
                str(model_dir / "model.pt"), map_location=self.device
            )
        self.model.eval()
        self.labels: list[str] = json.loads((model_dir / "labels.json").read_text())
        self.metadata: dict[str, Any] = json.loads((model_dir / "metadata.json").read_text())
        self.model_version = str(self.metadata.get("version", props.get("model_version", "")))
        self.temperature = float(self.metadata.get("temperature", 1.0))
        self.context = context
        self._warm_up(int(props.get("batch_size") or 1))
        self.initialized = True
        logger.warning(
            "signflow %s ready on %s, %d torch threads, %d classes",
            self.model_version,
            self.device,
            threads,
            len(self.labels),
        )

    def _warm_up(self, batch_size: int) -> None:
        """Run the first forward passes now, at batch 1 and at the configured batch size.

        A fresh TorchScript module's first calls are slow (profiling runs, allocations): 1.9 s
        and 0.6 s were measured here. Unpaid, they land on the first real requests after every
        start or reload, past the backend's 2 s deadline, and trip its circuit breaker.
        """
        with torch.inference_mode():
            for size in (1, max(1, batch_size), 1):
                self.model(
                    torch.zeros(
                        (size, request_parser.SEQ_LEN, request_parser.FEATURE_DIM),
                        dtype=torch.float32,
                        device=self.device,
                    )
                )

    def preprocess(self, data: list[dict[str, Any]]) -> request_parser.ParsedBatch:
        """Parse every request on its own; bad ones are recorded, not raised."""
        return request_parser.parse_batch(data)

    def inference(
        self, data: request_parser.ParsedBatch, *args: Any, **kwargs: Any
    ) -> np.ndarray | None:
        """ONE forward pass over all valid windows of the batch.

        The only batch-wide step: every window was validated (shape, finite), so a failure here
        is the model's, and every request of the batch gets 500 "model forward failed (Type)"
        (a ``PredictionException``). Out-of-memory errors propagate unchanged: TorchServe
        answers them 507 "Out of resources". TorchServe's own 503 stays what it means
        elsewhere: queue full or no worker.
        """
        if data.windows is None:
            return None
        try:
            with torch.inference_mode():
                logits = self.model(torch.from_numpy(data.windows).to(self.device))
            out: np.ndarray = logits.float().cpu().numpy()
            return out
        except MemoryError:
            raise
        except Exception as exc:
            if "CUDA" in str(exc):
                raise  # TorchServe maps CUDA errors to 507 itself
            logger.exception("forward pass over %d windows failed", len(data.valid))
            raise PredictionException(f"model forward failed ({type(exc).__name__})", 500) from exc

    def postprocess(
        self, data: tuple[request_parser.ParsedBatch, np.ndarray | None]
    ) -> list[bytes]:
        """One compact JSON answer per request, in request order.

        Each answer is built on its own: a failure building one (a non-finite logits row, any
        error) becomes that request's own 500 and leaves the others untouched.
        """
        batch, logits = data
        answers: list[bytes] = [b""] * batch.size
        for pos, idx in enumerate(batch.valid if logits is not None else []):
            assert logits is not None  # no valid window is enumerated without logits
            try:
                answers[idx] = self._answer(logits[pos : pos + 1], batch.size)
            except Exception as exc:  # any: one request's answer, one request's error
                if not isinstance(exc, request_parser.RequestError):
                    logger.exception("answer %d of %d could not be built", idx, batch.size)
                    exc = request_parser.RequestError(
                        500, "model", f"answer could not be built ({type(exc).__name__})"
                    )
                batch.errors[idx] = exc
        for idx, err in batch.errors.items():
            answers[idx] = json.dumps(err.to_json(batch.size), separators=(",", ":")).encode()
        return answers

    def _answer(self, row: np.ndarray, batch_size: int) -> bytes:
        """The JSON answer for one logits row ``[1, n_classes]``."""
        if not np.isfinite(row).all():  # softmax_top_k would refuse it with a vaguer message
            raise request_parser.RequestError(
                500, "model", "the model produced non-finite logits for this window"
            )
        (pred,) = predictions.softmax_top_k(row, self.labels, self.temperature, k=TOP_K)
        body = {**pred, "model_version": self.model_version, "batch_size": batch_size}
        return json.dumps(body, separators=(",", ":")).encode()

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """Run the batch; always return exactly one entry per request.

        Per-request steps (parsing, building an answer) never raise: a bad request gets its own
        4xx (a failed answer its own 500) and the rest of the batch is answered. Only the
        forward pass can fail the whole batch (see ``inference``).
        """
        start = time.perf_counter()
        self.context = context
        batch = self.preprocess(data)
        forward_start = time.perf_counter()
        logits = self.inference(batch)
        forward_s = time.perf_counter() - forward_start
        answers = self.postprocess((batch, logits))
        for idx in range(batch.size):
            context.set_response_content_type(idx, "application/json")
        for idx, err in batch.errors.items():
            context.set_response_status(err.status, err.reason_phrase(), idx)
        try:
            self._emit_metrics(context, batch.size, time.perf_counter() - start, forward_s)
        except Exception:  # metrics are for observers: never worth a batch's answers
            logger.exception("metrics of a batch of %d could not be emitted", batch.size)
        return answers

    def _emit_metrics(self, context: Any, size: int, handler_s: float, forward_s: float) -> None:
        metrics = getattr(context, "metrics", None)
        if metrics is None:
            return
        # Counters survive any scrape interval: consumers take deltas per window
        # (mean batch size = requests / batches; the per-size counts come from the label).
        # Dimensions in the order metrics.yaml declares them: the frontend maps by position.
        model = Dimension("ModelName", context.model_name)
        level = Dimension("Level", "Model")
        size_dim = Dimension("BatchSize", str(size))
        metrics.add_counter(BATCHES_METRIC, 1, None, [model, level, size_dim])
        metrics.add_counter(REQUESTS_METRIC, size, None, [model, level])
        metrics.add_counter(HANDLER_US_METRIC, round(handler_s * 1e6) * size, None, [model, level])
        metrics.add_counter(MODEL_US_METRIC, round(forward_s * 1e6) * size, None, [model, level])
        metrics.add_time("HandlerTime", round(handler_s * 1000, 3), None, "ms")
