"""OTA: rollouts and each device's update state."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from linewatch.v1 import ota_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import enum_value, message_to_dict, model_for
from linewatch_gateway.routes.common import (
    ERRORS,
    NAME_PATTERN,
    PageParams,
    Read,
    Write,
    backends,
    page_body,
    page_model,
    page_request,
)
from linewatch_gateway.routes.ota_plans import (
    GROUP_PATTERN,
    GateBody,
    ScheduleBody,
    WaveBody,
    plan_fields,
)

router = APIRouter(responses=ERRORS, tags=["ota"])

B = Annotated[Backends, Depends(backends)]
RolloutId = Annotated[str, Path(pattern=NAME_PATTERN, description="The rollout id.")]
DeviceId = Annotated[str, Path(pattern=NAME_PATTERN, description="The device id.")]
RolloutOut = model_for(ota_pb2.Rollout.DESCRIPTOR)
DeviceUpdatesOut = model_for(ota_pb2.GetDeviceUpdatesResponse.DESCRIPTOR)


class RolloutBody(BaseModel):
    """A rollout of one firmware image to devices (a list, a group, or both)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "firmware_id": "fw-1",
                    "devices": ["press-07", "press-08"],
                    "priority": "normal",
                    "error_threshold": 0.2,
                }
            ]
        },
    )
    firmware_id: str = Field(pattern=NAME_PATTERN)
    devices: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list, max_length=100_000
    )
    group: str = Field("", max_length=128)
    priority: Literal["normal", "security"] = "normal"
    error_threshold: float = Field(0.2, ge=0.0, le=1.0)
    timeout_s: int = Field(0, ge=0, le=86_400 * 7, description="0: the service default.")
    max_retries: int | None = Field(
        None, ge=0, le=100, description="Retries per device; unset: the service default."
    )
    allow_downgrade: bool = Field(
        False, description="Offer the image also to devices that report a newer version."
    )
    groups: list[Annotated[str, Field(pattern=GROUP_PATTERN)]] = Field(
        default_factory=list, max_length=50, description="Saved groups (their members now)."
    )
    waves: list[WaveBody] = Field(default_factory=list, max_length=20)
    gate: GateBody | None = None
    schedule: ScheduleBody | None = None

    @model_validator(mode="after")
    def _targets(self) -> RolloutBody:
        if not self.devices and not self.group and not self.groups:
            raise ValueError("devices, group or groups is required")
        return self


@router.post("/v1/ota/rollouts", dependencies=Write, status_code=201, response_model=RolloutOut)
async def create_rollout(b: B, body: RolloutBody) -> Any:
    """Start a rollout."""
    req = ota_pb2.CreateRolloutRequest(
        firmware_id=body.firmware_id,
        devices=body.devices,
        group=body.group,
        priority=enum_value(ota_pb2.Priority.DESCRIPTOR, body.priority),  # type: ignore[arg-type]
        error_threshold=body.error_threshold,
        timeout_s=body.timeout_s,
        allow_downgrade=body.allow_downgrade,
        groups=body.groups,
        **plan_fields(body.waves, body.gate, body.schedule),
    )
    if body.max_retries is not None:
        req.max_retries = body.max_retries
    resp = await b.call("ota", b.ota.CreateRollout, req)
    return message_to_dict(resp.rollout)


@router.get(
    "/v1/ota/rollouts", dependencies=Read, response_model=page_model(ota_pb2.Rollout.DESCRIPTOR)
)
async def list_rollouts(b: B, page: PageParams) -> Any:
    """Rollouts, newest first."""
    resp = await b.call(
        "ota", b.ota.ListRollouts, ota_pb2.ListRolloutsRequest(page=page_request(page))
    )
    return page_body(list(resp.rollouts), resp.next_page_token)


@router.get("/v1/ota/rollouts/{rollout_id}", dependencies=Read, response_model=RolloutOut)
async def get_rollout(b: B, rollout_id: RolloutId) -> Any:
    """One rollout with its device counts per state."""
    resp = await b.call("ota", b.ota.GetRollout, ota_pb2.GetRolloutRequest(id=rollout_id))
    return message_to_dict(resp.rollout)


@router.post("/v1/ota/rollouts/{rollout_id}/pause", dependencies=Write, response_model=RolloutOut)
async def pause_rollout(b: B, rollout_id: RolloutId) -> Any:
    """Pause: no new device is notified."""
    resp = await b.call("ota", b.ota.PauseRollout, ota_pb2.PauseRolloutRequest(id=rollout_id))
    return message_to_dict(resp.rollout)


@router.post("/v1/ota/rollouts/{rollout_id}/resume", dependencies=Write, response_model=RolloutOut)
async def resume_rollout(b: B, rollout_id: RolloutId) -> Any:
    """Resume a paused rollout."""
    resp = await b.call("ota", b.ota.ResumeRollout, ota_pb2.ResumeRolloutRequest(id=rollout_id))
    return message_to_dict(resp.rollout)


@router.post("/v1/ota/rollouts/{rollout_id}/cancel", dependencies=Write, response_model=RolloutOut)
async def cancel_rollout(b: B, rollout_id: RolloutId) -> Any:
    """Cancel: queued updates are cancelled."""
    resp = await b.call("ota", b.ota.CancelRollout, ota_pb2.CancelRolloutRequest(id=rollout_id))
    return message_to_dict(resp.rollout)


@router.get("/v1/ota/devices/{device_id}", dependencies=Read, response_model=DeviceUpdatesOut)
async def device_updates(b: B, device_id: DeviceId) -> Any:
    """A device's active or latest update first, then queued ones and history."""
    req = ota_pb2.GetDeviceUpdatesRequest(device_id=device_id)
    resp = await b.call("ota", b.ota.GetDeviceUpdates, req)
    return message_to_dict(resp)
