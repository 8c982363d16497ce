"""``/admin/rollout``: read or change TORCHSERVE_ROLLOUT_PERCENT at run time.

Enabled only when ADMIN_TOKEN is set to a non-blank value (404 otherwise, as if it did not
exist); every call needs ``Authorization: Bearer <ADMIN_TOKEN>`` (401 otherwise). Both checks
run in the route class of this router, before the method check and before FastAPI reads or
validates anything the caller sent (it parses a JSON body even before it solves dependencies):
an unauthenticated caller gets 404/401, never a 405 or a 422 describing the body. A new percent
applies to NEW sessions; open sessions keep their route (sticky).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from ..config import reveal
from ..services import AppServices


def authorize(request: Request) -> AppServices:
    """404 when the admin API is off, 401 without the right bearer token; else the services."""
    services: AppServices = request.app.state.services
    expected = reveal(services.settings.admin_token)
    if expected is None:
        raise HTTPException(status_code=404, detail="Not Found")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), expected.encode()
    ):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong admin token (Authorization: Bearer <ADMIN_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return services


class AdminRoute(APIRoute):
    """A route that authorizes the caller before anything else, even the method check.

    ``handle`` is where Starlette sends a request whose path matches (405 for a wrong method is
    raised there too), so an unset token answers 404 for every method and body.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            authorize(Request(scope, receive))
        except HTTPException as exc:
            refusal = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
            await refusal(scope, receive, send)
            return
        await super().handle(scope, receive, send)


# Every route on this router is guarded, whatever parameters it declares.
router = APIRouter(prefix="/admin", route_class=AdminRoute)


class RolloutBody(BaseModel):
    """Body of PUT /admin/rollout."""

    percent: int = Field(ge=0, le=100, strict=True)


def _state(services: AppServices) -> dict[str, object]:
    return {
        "percent": services.router.rollout_percent,
        "use_torchserve": services.settings.use_torchserve,
    }


@router.get("/rollout")
async def get_rollout(request: Request) -> dict[str, object]:
    """The current rollout percent and whether the flag is on."""
    return _state(request.app.state.services)


@router.put("/rollout")
async def put_rollout(body: RolloutBody, request: Request) -> dict[str, object]:
    """Set the share of NEW sessions sent to TorchServe."""
    services: AppServices = request.app.state.services
    old = services.router.rollout_percent
    services.router.rollout_percent = body.percent
    services.log.info("rollout_changed", old_percent=old, new_percent=body.percent)
    return _state(services)
