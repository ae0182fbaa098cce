"""Saved device groups: inventory filters whose membership follows the inventory.

A group stores only its filter; its members are the inventory's devices that match it
when asked (a rollout resolves its groups when it is created), so a device that changes
line, hardware or firmware joins or leaves the groups that describe it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select

from linewatch.runtime.db import Database
from linewatch.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from linewatch.v1 import ota_pb2
from linewatch_ota.inventory import DeviceState, Inventory
from linewatch_ota.plan_store import GroupRow

__all__ = ["GroupFilter", "Groups"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_VALUES = 100


@dataclass(frozen=True, slots=True)
class GroupFilter:
    """Every non-empty field must match; a list field matches any of its values."""

    hardware: tuple[str, ...] = ()
    firmware_versions: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    prefix: str = ""

    @classmethod
    def from_pb(cls, pb: ota_pb2.GroupFilter) -> GroupFilter:
        out = cls(
            hardware=tuple(pb.hardware),
            firmware_versions=tuple(pb.firmware_versions),
            lines=tuple(pb.lines),
            tags=tuple(pb.tags),
            attributes=dict(pb.attributes),
            prefix=pb.prefix,
        )
        for name in ("hardware", "firmware_versions", "lines", "tags", "attributes"):
            if len(getattr(out, name)) > _MAX_VALUES:
                raise InvalidArgument(f"filter.{name}: at most {_MAX_VALUES} values")
        return out

    def pb(self) -> ota_pb2.GroupFilter:
        return ota_pb2.GroupFilter(
            hardware=self.hardware,
            firmware_versions=self.firmware_versions,
            lines=self.lines,
            tags=self.tags,
            attributes=self.attributes,
            prefix=self.prefix,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "hardware": list(self.hardware),
                "firmware_versions": list(self.firmware_versions),
                "lines": list(self.lines),
                "tags": list(self.tags),
                "attributes": self.attributes,
                "prefix": self.prefix,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> GroupFilter:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            hardware=tuple(raw.get("hardware", ())),
            firmware_versions=tuple(raw.get("firmware_versions", ())),
            lines=tuple(raw.get("lines", ())),
            tags=tuple(raw.get("tags", ())),
            attributes=dict(raw.get("attributes", {})),
            prefix=str(raw.get("prefix", "")),
        )

    def matches(self, device: DeviceState) -> bool:
        attrs = device.attributes
        if self.prefix and not device.device_id.startswith(self.prefix):
            return False
        if self.hardware and device.hardware not in self.hardware:
            return False
        if self.firmware_versions and device.firmware_version not in self.firmware_versions:
            return False
        if self.lines and attrs.get("line", "") not in self.lines:
            return False
        if self.tags:
            have = {t.strip() for t in attrs.get("tags", "").split(",")}
            if not set(self.tags) <= have:
                return False
        return all(attrs.get(k) == v for k, v in self.attributes.items())


class Groups:
    """Group CRUD over ``ota_groups``; members from the inventory."""

    def __init__(self, db: Database, inventory: Inventory | None) -> None:
        self.db = db
        self.inventory = inventory

    def _members(self, flt: GroupFilter) -> list[str]:
        if self.inventory is None:
            raise FailedPrecondition("groups need the device inventory (devices.enabled)")
        return self.inventory.matching(flt.matches)

    async def create(self, name: str, flt: GroupFilter) -> ota_pb2.Group:
        if not _NAME.match(name):
            raise InvalidArgument(f"group name {name!r}: 1..64 letters, digits and . _ -")
        row = GroupRow(name=name, filter_json=flt.to_json(), created_at=time.time())
        async with self.db.session() as session:
            if await session.get(GroupRow, name) is not None:
                raise AlreadyExists(f"group {name!r} exists")
            session.add(row)
        return self._pb(row, members=False)

    async def _row(self, name: str) -> GroupRow:
        async with self.db.session() as session:
            row = await session.get(GroupRow, name)
        if row is None:
            raise NotFound(f"group {name!r} not found")
        return row

    async def get(self, name: str) -> ota_pb2.Group:
        return self._pb(await self._row(name), members=True)

    async def members(self, name: str) -> list[str]:
        """The group's devices in the inventory now."""
        return self._members(GroupFilter.from_json((await self._row(name)).filter_json))

    async def list_groups(self) -> list[ota_pb2.Group]:
        async with self.db.session() as session:
            rows = (await session.exec(select(GroupRow).order_by(col(GroupRow.name)))).all()
        return [self._pb(r, members=False) for r in rows]

    async def delete(self, name: str) -> None:
        async with self.db.session() as session:
            row = await session.get(GroupRow, name)
            if row is None:
                raise NotFound(f"group {name!r} not found")
            await session.delete(row)

    def _pb(self, row: GroupRow, *, members: bool) -> ota_pb2.Group:
        flt = GroupFilter.from_json(row.filter_json)
        msg = ota_pb2.Group(name=row.name, filter=flt.pb())
        if members:
            msg.members.extend(self._members(flt))
        msg.created_at.FromNanoseconds(int(row.created_at * 1e9))
        return msg
