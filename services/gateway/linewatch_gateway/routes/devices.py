"""Devices: the inventory, and commands with acknowledgement (served by the OTA service)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from linewatch.v1 import common_pb2, devices_pb2, ingest_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import enum_value, message_to_dict
from linewatch_gateway.errors import ApiError
from linewatch_gateway.routes.common import ERRORS, NAME_PATTERN, PageParams, Read, Write, backends

__all__ = ["command_dict", "router"]

router = APIRouter(responses=ERRORS, tags=["devices"])

B = Annotated[Backends, Depends(backends)]
DeviceId = Annotated[str, Path(pattern=NAME_PATTERN, description="The device id.")]
CommandId = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,32}$", description="The command id.")]
CommandStateName = Literal[
    "queued", "sent", "succeeded", "failed", "timed_out", "expired", "cancelled"
]


class CommandBody(BaseModel):
    """A command for one device."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "power_on", "params": {}, "timeout_s": 30, "expires_s": 3600}]
        },
    )
    name: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: int = Field(0, ge=0, le=86_400, description="0: the service default (30 s).")
    expires_s: int = Field(0, ge=0, le=86_400 * 30, description="0: the service default (3600 s).")


class CommandOut(BaseModel):
    """One command and where it is."""

    id: str
    device_id: str
    name: str
    params: dict[str, Any]
    state: CommandStateName
    timeout_s: int
    expires_at: str | None
    created_at: str | None
    sent_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: str
    source: str
    attempts: int


class CommandPage(BaseModel):
    items: list[CommandOut]
    next_page_token: str = ""


class DeviceOut(BaseModel):
    """What the inventory knows of a device."""

    device_id: str
    online: bool
    status: str
    last_seen: str | None
    firmware_version: str
    hardware: str
    points: list[str]
    attributes: dict[str, str]
    pending_commands: int


class DeviceDetailOut(DeviceOut):
    """A device with its open alarms (from ingest; null while ingest does not answer)."""

    open_alarms: list[dict[str, Any]] | None = None


class DevicePage(BaseModel):
    items: list[DeviceOut]
    next_page_token: str = ""


def command_dict(cmd: devices_pb2.Command) -> dict[str, Any]:
    """The JSON view of a command (params and result as objects)."""
    out = message_to_dict(cmd)
    out["params"] = json.loads(out.pop("params_json") or "{}")
    result_json = out.pop("result_json")
    out["result"] = json.loads(result_json) if result_json else None
    return out


@router.post(
    "/v1/devices/{device_id}/commands",
    dependencies=Write,
    status_code=202,
    response_model=CommandOut,
)
async def send_command(b: B, device_id: DeviceId, body: CommandBody) -> Any:
    """Queue a command: delivered while the device is online, in order; answer later."""
    req = devices_pb2.SendCommandRequest(
        device_id=device_id,
        name=body.name,
        params_json=json.dumps(body.params, separators=(",", ":")),
        timeout_s=body.timeout_s,
        expires_s=body.expires_s,
        source="api",
    )
    resp = await b.call("ota", b.devices.SendCommand, req)
    return command_dict(resp.command)


@router.get("/v1/devices/{device_id}/commands", dependencies=Read, response_model=CommandPage)
async def list_commands(
    b: B,
    device_id: DeviceId,
    page: PageParams,
    state: Annotated[CommandStateName | None, Query(description="Only this state.")] = None,
) -> Any:
    """A device's commands, newest first."""
    req = devices_pb2.ListCommandsRequest(
        device_id=device_id,
        page=common_pb2.PageRequest(page_size=page.page_size, page_token=page.page_token),
    )
    if state is not None:
        req.state = enum_value(devices_pb2.CommandState.DESCRIPTOR, state)  # type: ignore[assignment]
    resp = await b.call("ota", b.devices.ListCommands, req)
    return {
        "items": [command_dict(c) for c in resp.commands],
        "next_page_token": resp.next_page_token,
    }


@router.get(
    "/v1/devices/{device_id}/commands/{command_id}", dependencies=Read, response_model=CommandOut
)
async def get_command(b: B, device_id: DeviceId, command_id: CommandId) -> Any:
    """One command."""
    req = devices_pb2.GetCommandRequest(device_id=device_id, id=command_id)
    resp = await b.call("ota", b.devices.GetCommand, req)
    return command_dict(resp.command)


@router.post(
    "/v1/devices/{device_id}/commands/{command_id}/cancel",
    dependencies=Write,
    response_model=CommandOut,
)
async def cancel_command(b: B, device_id: DeviceId, command_id: CommandId) -> Any:
    """Cancel a queued or sent command (409 once it has finished)."""
    req = devices_pb2.CancelCommandRequest(device_id=device_id, id=command_id)
    resp = await b.call("ota", b.devices.CancelCommand, req)
    return command_dict(resp.command)


@router.get("/v1/devices", dependencies=Read, response_model=DevicePage)
async def list_devices(
    b: B,
    page: PageParams,
    prefix: Annotated[str, Query(max_length=128, description="Ids starting with this.")] = "",
    online: Annotated[bool, Query(description="Only devices online now.")] = False,
) -> Any:
    """The inventory, by device id."""
    req = devices_pb2.ListDevicesRequest(
        page=common_pb2.PageRequest(page_size=page.page_size, page_token=page.page_token),
        prefix=prefix,
        online_only=online,
    )
    resp = await b.call("ota", b.devices.ListDevices, req)
    return {
        "items": [message_to_dict(d) for d in resp.devices],
        "next_page_token": resp.next_page_token,
    }


@router.get("/v1/devices/{device_id}", dependencies=Read, response_model=DeviceDetailOut)
async def get_device(b: B, device_id: DeviceId) -> Any:
    """One device: presence, firmware and hardware, points, attributes, pending commands,
    open alarms."""
    resp = await b.call(
        "ota", b.devices.GetDevice, devices_pb2.GetDeviceRequest(device_id=device_id)
    )
    if not resp.HasField("device"):
        raise ApiError(404, "not_found", f"device {device_id!r} not known")
    out = message_to_dict(resp.device)
    alarms = ingest_pb2.QueryAlarmsRequest(
        filter=ingest_pb2.ArchiveFilter(
            device_id=device_id, page=common_pb2.PageRequest(page_size=100)
        ),
        state=ingest_pb2.ALARM_STATE_ACTIVE,
    )
    try:
        found = await b.call("ingest", b.ingest.QueryAlarms, alarms)
    except ApiError:
        out["open_alarms"] = None  # the inventory still answers while ingest is away
    else:
        out["open_alarms"] = [message_to_dict(a) for a in found.records]
    return out
