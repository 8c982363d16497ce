"""``/admin/rollout``: read or change TORCHSERVE_ROLLOUT_PERCENT at run time.

Enabled only when ADMIN_TOKEN is set (404 otherwise, as if it did not exist); every call needs
``Authorization: Bearer <ADMIN_TOKEN>`` (401 otherwise). A new percent applies to NEW sessions;
open sessions keep their route (sticky).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from ..services import AppServices

router = APIRouter(prefix="/admin")


class RolloutBody(BaseModel):
    """Body of PUT /admin/rollout."""

    percent: int = Field(ge=0, le=100, strict=True)


def _authorize(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    token = services.settings.admin_token
    if token is None:
        raise HTTPException(status_code=404, detail="Not Found")
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong admin token (Authorization: Bearer <ADMIN_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return services


def _state(services: AppServices) -> dict[str, object]:
    return {
        "percent": services.router.rollout_percent,
        "use_torchserve": services.settings.use_torchserve,
    }


@router.get("/rollout")
async def get_rollout(request: Request) -> dict[str, object]:
    """The current rollout percent and whether the flag is on."""
    return _state(_authorize(request))


@router.put("/rollout")
async def put_rollout(body: RolloutBody, request: Request) -> dict[str, object]:
    """Set the share of NEW sessions sent to TorchServe."""
    services = _authorize(request)
    old = services.router.rollout_percent
    services.router.rollout_percent = body.percent
    services.log.info("rollout_changed", old_percent=old, new_percent=body.percent)
    return _state(services)
