"""Probes, metrics and the dashboard page."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from linewatch_gateway.clients import Backends
from linewatch_gateway.errors import ERROR_RESPONSES
from linewatch_gateway.sse import StreamHub

router = APIRouter(tags=["operations"])


class Alive(BaseModel):
    """The process is up."""

    status: str


class Ready(BaseModel):
    """Each backend's health."""

    status: str
    backends: dict[str, str]
    streams: dict[str, bool]


@router.get("/healthz", response_model=Alive)
async def healthz() -> Any:
    """Alive (does not look at the backends)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Ready,
    responses={
        503: {
            "description": "A backend is down; the message names it.",
            "content": ERROR_RESPONSES[503]["content"],
        }
    },
)
async def readyz(request: Request) -> Any:
    """Ready when every backend's grpc.health.v1 says SERVING.

    ``streams`` tells which live upstream subscriptions are open (informational: a
    stream reconnects by itself and does not make the gateway unready).
    """
    backends: Backends = request.app.state.backends
    states = await backends.health()
    hubs: dict[str, StreamHub] = request.app.state.hubs
    streams = {kind: hub.connected for kind, hub in hubs.items()}
    down = [name for name, state in states.items() if state != "serving"]
    if down:
        message = "not ready: " + ", ".join(f"{n} ({states[n]})" for n in down)
        return JSONResponse(
            {
                "error": {"code": "unavailable", "message": message},
                "backends": states,
                "streams": streams,
            },
            status_code=503,
        )
    return {"status": "ready", "backends": states, "streams": streams}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics() -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def dashboard_html() -> str:
    """The dashboard page."""
    return resources.files("linewatch_gateway").joinpath("static/dashboard.html").read_text("utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The live dashboard."""
    return HTMLResponse(dashboard_html(), headers={"Cache-Control": "no-cache"})
