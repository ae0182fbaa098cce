"""OTA rollout plans (waves, quality gate, schedule), saved groups, a rollout's updates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from linewatch.v1 import ota_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import message_to_dict, model_for
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

router = APIRouter(responses=ERRORS, tags=["ota"])

B = Annotated[Backends, Depends(backends)]
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
GroupName = Annotated[str, Path(pattern=GROUP_PATTERN, description="The group name.")]
RolloutId = Annotated[str, Path(pattern=NAME_PATTERN, description="The rollout id.")]
GroupOut = model_for(ota_pb2.Group.DESCRIPTOR)
_Str = Annotated[str, Field(max_length=256)]


class WaveBody(BaseModel):
    """One wave: ``count`` devices, else ``percent`` of all, else (last wave) the rest."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(0, ge=0, le=100_000)
    percent: float = Field(0.0, ge=0.0, le=100.0)
    error_threshold: float | None = Field(None, ge=0.0, le=1.0, description="Unset: the rollout's.")
    soak_s: int = Field(
        0, ge=0, le=30 * 86400, description="Seconds before the gate and next wave."
    )


class GateBody(BaseModel):
    """After each wave's soak: each device's not-ok rate over the next N cycles against the
    N before its update; a significant rise pauses the rollout."""

    model_config = ConfigDict(extra="forbid")
    cycles: int = Field(0, ge=0, le=100_000, description="N (0: no gate).")
    confidence: float = Field(0.95, ge=0.5, le=0.9999)
    method: Literal["z_test", "beta_binomial"] = "z_test"
    max_wait_s: int = Field(600, ge=0, le=7 * 86400)


class WindowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(default_factory=list, max_length=7)
    start_minute: int = Field(ge=0, le=1440)
    end_minute: int = Field(ge=0, le=1440)


class ScheduleBody(BaseModel):
    """When installs may start (the plant's time zone for the windows)."""

    model_config = ConfigDict(extra="forbid")
    start_at: datetime | None = None
    time_zone: str = Field("", max_length=64)
    windows: list[WindowBody] = Field(default_factory=list, max_length=50)
    idle_s: int = Field(0, ge=0, le=7 * 86400, description="Install only after no cycle this long.")
    line_idle: bool = Field(False, description="Judge idleness by the device's whole line.")


_METHOD = {"z_test": ota_pb2.GATE_METHOD_Z_TEST, "beta_binomial": ota_pb2.GATE_METHOD_BETA_BINOMIAL}


def plan_fields(
    waves: list[WaveBody], gate: GateBody | None, schedule: ScheduleBody | None
) -> dict[str, Any]:
    """The CreateRolloutRequest fields of a plan."""
    out: dict[str, Any] = {"waves": []}
    for w in waves:
        spec = ota_pb2.WaveSpec(count=w.count, percent=w.percent, soak_s=w.soak_s)
        if w.error_threshold is not None:
            spec.error_threshold = w.error_threshold
        out["waves"].append(spec)
    if gate is not None:
        out["gate"] = ota_pb2.QualityGate(
            cycles=gate.cycles,
            confidence=gate.confidence,
            method=_METHOD[gate.method],
            max_wait_s=gate.max_wait_s,
        )
    if schedule is not None:
        sched = ota_pb2.Schedule(
            time_zone=schedule.time_zone, idle_s=schedule.idle_s, line_idle=schedule.line_idle
        )
        if schedule.start_at is not None:
            sched.start_at.FromDatetime(schedule.start_at)
        for win in schedule.windows:
            sched.windows.add(
                weekdays=win.weekdays, start_minute=win.start_minute, end_minute=win.end_minute
            )
        out["schedule"] = sched
    return out


class GroupBody(BaseModel):
    """A saved group: inventory devices matching every given field (lists: any value)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "line-a", "lines": ["A"], "hardware": ["rev-b"]}]},
    )
    name: str = Field(pattern=GROUP_PATTERN)
    hardware: list[_Str] = Field(default_factory=list, max_length=100)
    firmware_versions: list[_Str] = Field(default_factory=list, max_length=100)
    lines: list[_Str] = Field(default_factory=list, max_length=100)
    tags: list[_Str] = Field(default_factory=list, max_length=100)
    attributes: dict[str, _Str] = Field(default_factory=dict, max_length=100)
    prefix: str = Field("", max_length=128)


@router.post("/v1/ota/groups", dependencies=Write, status_code=201, response_model=GroupOut)
async def create_group(b: B, body: GroupBody) -> Any:
    """Save a group (its members follow the inventory)."""
    flt = ota_pb2.GroupFilter(
        hardware=body.hardware,
        firmware_versions=body.firmware_versions,
        lines=body.lines,
        tags=body.tags,
        attributes=body.attributes,
        prefix=body.prefix,
    )
    req = ota_pb2.CreateGroupRequest(group=ota_pb2.Group(name=body.name, filter=flt))
    resp = await b.call("ota", b.ota.CreateGroup, req)
    return message_to_dict(resp.group)


@router.get("/v1/ota/groups", dependencies=Read, response_model=list[GroupOut])  # type: ignore[valid-type]
async def list_groups(b: B) -> Any:
    """Saved groups (filters only)."""
    resp = await b.call("ota", b.ota.ListGroups, ota_pb2.ListGroupsRequest())
    return [message_to_dict(g) for g in resp.groups]


@router.get("/v1/ota/groups/{name}", dependencies=Read, response_model=GroupOut)
async def get_group(b: B, name: GroupName) -> Any:
    """A group with its members in the inventory now."""
    resp = await b.call("ota", b.ota.GetGroup, ota_pb2.GetGroupRequest(name=name))
    return message_to_dict(resp.group)


@router.delete("/v1/ota/groups/{name}", dependencies=Write, status_code=204)
async def delete_group(b: B, name: GroupName) -> None:
    """Delete a group (rollouts made from it keep their devices)."""
    await b.call("ota", b.ota.DeleteGroup, ota_pb2.DeleteGroupRequest(name=name))


@router.get(
    "/v1/ota/rollouts/{rollout_id}/updates",
    dependencies=Read,
    response_model=page_model(ota_pb2.DeviceUpdate.DESCRIPTOR),
)
async def rollout_updates(b: B, rollout_id: RolloutId, page: PageParams) -> Any:
    """A rollout's device updates in wave, then device order."""
    req = ota_pb2.ListRolloutUpdatesRequest(id=rollout_id, page=page_request(page))
    resp = await b.call("ota", b.ota.ListRolloutUpdates, req)
    return page_body(list(resp.updates), resp.next_page_token)
