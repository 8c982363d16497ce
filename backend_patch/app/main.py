"""The app factory: ``create_app(settings) -> FastAPI`` with /health, /ready, /metrics, the
WebSocket route and the admin route. Everything an app shares lives on ``app.state.services``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from .api import admin, translate
from .config import Settings, get_settings
from .logging import configure_logging, get_logger
from .metrics import CONTENT_TYPE_LATEST, BackendMetrics
from .ml.features import DEFAULT_MOTION_THRESHOLD
from .ml.pipeline import InferenceEngine, SegmenterConfig
from .ml.routing import InferenceRouter
from .services import AppServices
from .shared import RolloutCell


def _segmenter_config(settings: Settings) -> SegmenterConfig:
    threshold = settings.motion_threshold
    return SegmenterConfig(
        motion_threshold=DEFAULT_MOTION_THRESHOLD if threshold is None else threshold,
        rest_frames_to_end=settings.rest_frames_to_end,
        min_sign_frames=settings.min_sign_frames,
        max_sign_frames=settings.max_sign_frames,
    )


def _make_client(settings: Settings) -> object:
    from .ml.torchserve_client import TorchServeClient

    return TorchServeClient(
        settings.torchserve_url,
        model_name=settings.torchserve_model,
        timeout_ms=settings.torchserve_timeout_ms,
        connect_timeout_ms=settings.torchserve_connect_timeout_ms,
        key_file=settings.torchserve_key_file,
        token=settings.auth_token(),
        management_url=settings.torchserve_management_url,
        key_renew_before_s=settings.torchserve_key_renew_before_s,
        max_connections=settings.torchserve_max_connections,
        breaker_failures=settings.torchserve_breaker_failures,
        breaker_cooldown_s=settings.torchserve_breaker_cooldown_s,
        breaker_window_s=settings.torchserve_breaker_window_ms / 1000.0,
        # Hedging off restores the old path entirely: the first user window after the
        # cool-down is the probe again.
        shadow_probes=settings.torchserve_hedge_enabled,
        probe_successes=settings.torchserve_probe_successes,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the backend app; the model is loaded at start-up (lifespan), once per app."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    log = get_logger("signflow.backend")
    metrics = BackendMetrics()
    engine = InferenceEngine(
        settings.model_dir, workers=settings.inference_workers, torch_threads=settings.torch_threads
    )
    router = InferenceRouter(
        engine,
        metrics,
        log,
        rollout_percent=settings.torchserve_rollout_percent,
        hedge=settings.hedge_config(),
        rollout_cell=RolloutCell.attach(),
    )
    services = AppServices(settings, engine, router, metrics, log, _segmenter_config(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            # Loaded even with the flag on: the fallback must be instant.
            await asyncio.to_thread(engine.load)
        except Exception as exc:
            log.error("model_load_failed", model_dir=str(settings.model_dir), error=str(exc))
            raise
        if settings.use_torchserve:
            router.client = _make_client(settings)  # type: ignore[assignment]
            # The hedge floor follows TorchServe's batch delay (management API, background).
            router.watch_served_model()
        # Everything alive now (the model, torch, the app) lives as long as the process: out of
        # the collector's sight, a full collection walks only what serving allocated since,
        # instead of torch's hundreds of thousands of objects every few thousand frames.
        gc.freeze()
        log.info(
            "backend_ready",
            model_version=engine.model_version,
            device=engine.device,
            use_torchserve=settings.use_torchserve,
            torchserve_url=settings.torchserve_url if settings.use_torchserve else None,
            rollout_percent=router.rollout_percent,
            inference_workers=settings.inference_workers,
        )
        try:
            yield
        finally:
            await router.aclose()  # shadow probes use the client's pool
            client, router.client = router.client, None
            if client is not None:
                await client.aclose()  # type: ignore[attr-defined]
            await asyncio.to_thread(services.window_pool.shutdown, True, cancel_futures=True)
            await asyncio.to_thread(engine.close)
            log.info("backend_stopped")

    app = FastAPI(title="SignFlow backend", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.services = services
    app.include_router(translate.router)
    app.include_router(admin.router)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness: 200 once the model is loaded, 503 otherwise."""
        if not engine.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "model_version": engine.model_version,
                "use_torchserve": settings.use_torchserve,
                "rollout_percent": router.rollout_percent,
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition of this app's signflow_* metrics."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
