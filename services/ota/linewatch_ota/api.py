"""``linewatch.v1.OtaService``: the gRPC API over the catalog, rollouts and events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from linewatch.runtime.errors import InvalidArgument, NotFound
from linewatch.v1 import ota_pb2, ota_pb2_grpc
from linewatch_ota.catalog import Catalog
from linewatch_ota.convert import PRIORITY_FROM_PB, firmware_pb
from linewatch_ota.events import EventHub
from linewatch_ota.groups import GroupFilter, Groups
from linewatch_ota.plan_convert import gate_from_pb, schedule_from_pb, waves_from_pb
from linewatch_ota.rollouts import Rollouts, RolloutSpec

__all__ = ["OtaApi", "page_bounds"]

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def page_bounds(page: Any) -> tuple[int, int]:
    """(offset, limit) of a PageRequest; the token is the offset as decimal text."""
    size = page.page_size or DEFAULT_PAGE
    if size < 0:
        raise InvalidArgument("page_size must not be negative")
    token = page.page_token or "0"
    if not token.isdigit():
        raise InvalidArgument(f"page_token {token!r} is not one this server issued")
    return int(token), min(size, MAX_PAGE)


def _next_token(offset: int, limit: int, got: int) -> str:
    return str(offset + got) if got == limit else ""


class OtaApi(ota_pb2_grpc.OtaServiceServicer):
    """The servicer; domain errors become status codes in the server's interceptor."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        rollouts: Rollouts,
        events: EventHub,
        groups: dict[str, list[str]],
        saved_groups: Groups,
        default_timeout_s: int,
        default_max_retries: int,
    ) -> None:
        self.catalog = catalog
        self.rollouts = rollouts
        self.events = events
        self.groups = groups
        self.saved_groups = saved_groups
        self.default_timeout_s = default_timeout_s
        self.default_max_retries = default_max_retries

    async def UploadFirmware(  # noqa: N802
        self, request_iterator: AsyncIterator[ota_pb2.UploadFirmwareRequest], context: Any
    ) -> ota_pb2.UploadFirmwareResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("content") != "metadata":
            raise InvalidArgument("the first UploadFirmware message must carry the metadata")
        meta = first.metadata

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("content") != "chunk":
                    raise InvalidArgument("only the first message may carry metadata")
                yield message.chunk

        row = await self.catalog.upload(
            product=meta.product,
            version=meta.version,
            filename=meta.filename,
            chunks=chunks(),
            hardware=list(meta.hardware),
            security_counter=meta.security_counter,
            signature=meta.signature,
        )
        return ota_pb2.UploadFirmwareResponse(firmware=firmware_pb(row))

    async def ListFirmware(  # noqa: N802
        self, request: ota_pb2.ListFirmwareRequest, context: Any
    ) -> ota_pb2.ListFirmwareResponse:
        offset, limit = page_bounds(request.page)
        rows = await self.catalog.list_firmware(offset=offset, limit=limit)
        return ota_pb2.ListFirmwareResponse(
            firmware=[firmware_pb(r) for r in rows],
            next_page_token=_next_token(offset, limit, len(rows)),
        )

    async def GetFirmware(  # noqa: N802
        self, request: ota_pb2.GetFirmwareRequest, context: Any
    ) -> ota_pb2.GetFirmwareResponse:
        return ota_pb2.GetFirmwareResponse(firmware=firmware_pb(await self.catalog.get(request.id)))

    async def DeleteFirmware(  # noqa: N802
        self, request: ota_pb2.DeleteFirmwareRequest, context: Any
    ) -> ota_pb2.DeleteFirmwareResponse:
        await self.catalog.delete(request.id)
        return ota_pb2.DeleteFirmwareResponse()

    async def ReadFirmware(  # noqa: N802
        self, request: ota_pb2.ReadFirmwareRequest, context: Any
    ) -> AsyncIterator[ota_pb2.ReadFirmwareResponse]:
        chunks = await self.catalog.read(request.id, request.offset, request.length)
        async for chunk in chunks:
            yield ota_pb2.ReadFirmwareResponse(chunk=chunk)

    async def GetSigningKey(  # noqa: N802
        self, request: ota_pb2.GetSigningKeyRequest, context: Any
    ) -> ota_pb2.GetSigningKeyResponse:
        own = self.catalog.keys.own
        if own is None:
            return ota_pb2.GetSigningKeyResponse()
        return ota_pb2.GetSigningKeyResponse(public_key=own.public_key_b64, key_id=own.key_id)

    async def ListSigningKeys(  # noqa: N802
        self, request: ota_pb2.ListSigningKeysRequest, context: Any
    ) -> ota_pb2.ListSigningKeysResponse:
        return ota_pb2.ListSigningKeysResponse(
            keys=[
                ota_pb2.SigningKey(id=key_id, ed25519=key)
                for key_id, key in self.catalog.keys.published()
            ]
        )

    async def CreateRollout(  # noqa: N802
        self, request: ota_pb2.CreateRolloutRequest, context: Any
    ) -> ota_pb2.CreateRolloutResponse:
        devices = list(request.devices)
        if request.group:
            if request.group in self.groups:
                devices += self.groups[request.group]
            else:  # a saved group of that name, or NotFound
                devices += await self._saved_members(request.group)
        for name in request.groups:
            devices += await self._saved_members(name)
        if not request.firmware_id:
            raise InvalidArgument("firmware_id is required")
        spec = RolloutSpec(
            firmware_id=request.firmware_id,
            devices=devices,
            priority=PRIORITY_FROM_PB.get(request.priority, "?"),
            error_threshold=request.error_threshold,
            timeout_s=request.timeout_s or self.default_timeout_s,
            max_retries=(
                request.max_retries if request.HasField("max_retries") else self.default_max_retries
            ),
            allow_downgrade=request.allow_downgrade,
            waves=waves_from_pb(request.waves),
            gate=gate_from_pb(request.gate),
            schedule=schedule_from_pb(request.schedule),
        )
        return ota_pb2.CreateRolloutResponse(rollout=await self.rollouts.create(spec))

    async def ListRolloutUpdates(  # noqa: N802
        self, request: ota_pb2.ListRolloutUpdatesRequest, context: Any
    ) -> ota_pb2.ListRolloutUpdatesResponse:
        offset, limit = page_bounds(request.page)
        rows = await self.rollouts.rollout_updates(request.id, offset=offset, limit=limit)
        return ota_pb2.ListRolloutUpdatesResponse(
            updates=rows, next_page_token=_next_token(offset, limit, len(rows))
        )

    async def _saved_members(self, name: str) -> list[str]:
        try:
            return await self.saved_groups.members(name)
        except NotFound:
            raise NotFound(f"device group {name!r} is neither configured nor saved") from None

    async def CreateGroup(  # noqa: N802
        self, request: ota_pb2.CreateGroupRequest, context: Any
    ) -> ota_pb2.CreateGroupResponse:
        group = request.group
        created = await self.saved_groups.create(group.name, GroupFilter.from_pb(group.filter))
        return ota_pb2.CreateGroupResponse(group=created)

    async def GetGroup(  # noqa: N802
        self, request: ota_pb2.GetGroupRequest, context: Any
    ) -> ota_pb2.GetGroupResponse:
        return ota_pb2.GetGroupResponse(group=await self.saved_groups.get(request.name))

    async def ListGroups(  # noqa: N802
        self, request: ota_pb2.ListGroupsRequest, context: Any
    ) -> ota_pb2.ListGroupsResponse:
        return ota_pb2.ListGroupsResponse(groups=await self.saved_groups.list_groups())

    async def DeleteGroup(  # noqa: N802
        self, request: ota_pb2.DeleteGroupRequest, context: Any
    ) -> ota_pb2.DeleteGroupResponse:
        await self.saved_groups.delete(request.name)
        return ota_pb2.DeleteGroupResponse()

    async def GetRollout(  # noqa: N802
        self, request: ota_pb2.GetRolloutRequest, context: Any
    ) -> ota_pb2.GetRolloutResponse:
        return ota_pb2.GetRolloutResponse(rollout=await self.rollouts.get(request.id))

    async def ListRollouts(  # noqa: N802
        self, request: ota_pb2.ListRolloutsRequest, context: Any
    ) -> ota_pb2.ListRolloutsResponse:
        offset, limit = page_bounds(request.page)
        rows = await self.rollouts.list_rollouts(offset=offset, limit=limit)
        return ota_pb2.ListRolloutsResponse(
            rollouts=rows, next_page_token=_next_token(offset, limit, len(rows))
        )

    async def PauseRollout(  # noqa: N802
        self, request: ota_pb2.PauseRolloutRequest, context: Any
    ) -> ota_pb2.PauseRolloutResponse:
        return ota_pb2.PauseRolloutResponse(rollout=await self.rollouts.pause(request.id))

    async def ResumeRollout(  # noqa: N802
        self, request: ota_pb2.ResumeRolloutRequest, context: Any
    ) -> ota_pb2.ResumeRolloutResponse:
        return ota_pb2.ResumeRolloutResponse(rollout=await self.rollouts.resume(request.id))

    async def CancelRollout(  # noqa: N802
        self, request: ota_pb2.CancelRolloutRequest, context: Any
    ) -> ota_pb2.CancelRolloutResponse:
        return ota_pb2.CancelRolloutResponse(rollout=await self.rollouts.cancel(request.id))

    async def GetDeviceUpdates(  # noqa: N802
        self, request: ota_pb2.GetDeviceUpdatesRequest, context: Any
    ) -> ota_pb2.GetDeviceUpdatesResponse:
        updates = await self.rollouts.device_updates(request.device_id)
        return ota_pb2.GetDeviceUpdatesResponse(device_id=request.device_id, updates=updates)

    async def StreamOtaEvents(  # noqa: N802
        self, request: ota_pb2.StreamOtaEventsRequest, context: Any
    ) -> AsyncIterator[ota_pb2.StreamOtaEventsResponse]:
        async with self.events.subscribe() as queue:
            while True:
                yield await queue.get()
