"""``linewatch.v1.DeviceService``: commands with acknowledgement and the inventory."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from linewatch.runtime.errors import InvalidArgument, NotFound
from linewatch.v1 import devices_pb2, devices_pb2_grpc
from linewatch_ota.api import page_bounds
from linewatch_ota.command_store import CommandStore
from linewatch_ota.commands import CommandEvents, DeviceCommands
from linewatch_ota.devices_convert import COMMAND_STATE_FROM_PB, command_pb, device_pb
from linewatch_ota.inventory import DeviceState, Inventory
from linewatch_ota.rollouts import validate_device_id

__all__ = ["DeviceApi"]


def _next_token(offset: int, limit: int, got: int) -> str:
    return str(offset + got) if got == limit else ""


class DeviceApi(devices_pb2_grpc.DeviceServiceServicer):
    """The servicer; domain errors become status codes in the server's interceptor."""

    def __init__(
        self,
        *,
        commands: DeviceCommands,
        store: CommandStore,
        inventory: Inventory,
        events: CommandEvents,
    ) -> None:
        self.commands = commands
        self.store = store
        self.inventory = inventory
        self.events = events

    async def SendCommand(  # noqa: N802
        self, request: devices_pb2.SendCommandRequest, context: Any
    ) -> devices_pb2.SendCommandResponse:
        params: Any = {}
        if request.params_json:
            try:
                params = json.loads(request.params_json)
            except (RecursionError, ValueError) as exc:
                raise InvalidArgument("params_json: not JSON") from exc
            if not isinstance(params, dict):
                raise InvalidArgument("params_json: must be a JSON object")
        rows = await self.commands.submit(
            [validate_device_id(request.device_id)],
            name=request.name,
            params=params,
            timeout_s=request.timeout_s,
            expires_s=request.expires_s,
            source=request.source or "api",
        )
        return devices_pb2.SendCommandResponse(command=command_pb(rows[0]))

    async def GetCommand(  # noqa: N802
        self, request: devices_pb2.GetCommandRequest, context: Any
    ) -> devices_pb2.GetCommandResponse:
        row = await self.store.get(request.id, request.device_id or None)
        return devices_pb2.GetCommandResponse(command=command_pb(row))

    async def ListCommands(  # noqa: N802
        self, request: devices_pb2.ListCommandsRequest, context: Any
    ) -> devices_pb2.ListCommandsResponse:
        validate_device_id(request.device_id)
        offset, limit = page_bounds(request.page)
        state = COMMAND_STATE_FROM_PB.get(request.state)
        if request.state and state is None:
            raise InvalidArgument(f"state {request.state} is not a command state")
        rows = await self.store.list_for_device(
            request.device_id, state=state, offset=offset, limit=limit
        )
        return devices_pb2.ListCommandsResponse(
            commands=[command_pb(r) for r in rows],
            next_page_token=_next_token(offset, limit, len(rows)),
        )

    async def CancelCommand(  # noqa: N802
        self, request: devices_pb2.CancelCommandRequest, context: Any
    ) -> devices_pb2.CancelCommandResponse:
        row = await self.commands.cancel(request.device_id, request.id)
        return devices_pb2.CancelCommandResponse(command=command_pb(row))

    async def _devices_pb(self, states: list[DeviceState]) -> list[devices_pb2.Device]:
        now = time.time()
        pending = await self.store.pending_counts(s.device_id for s in states)
        return [
            device_pb(s, online=s.online(now), pending=pending.get(s.device_id, 0)) for s in states
        ]

    async def ListDevices(  # noqa: N802
        self, request: devices_pb2.ListDevicesRequest, context: Any
    ) -> devices_pb2.ListDevicesResponse:
        offset, limit = page_bounds(request.page)
        states = self.inventory.list(
            prefix=request.prefix, online_only=request.online_only, offset=offset, limit=limit
        )
        return devices_pb2.ListDevicesResponse(
            devices=await self._devices_pb(states),
            next_page_token=_next_token(offset, limit, len(states)),
        )

    async def GetDevice(  # noqa: N802
        self, request: devices_pb2.GetDeviceRequest, context: Any
    ) -> devices_pb2.GetDeviceResponse:
        validate_device_id(request.device_id)
        try:
            state = self.inventory.get(request.device_id)
        except NotFound:
            # a device never heard from but with commands waiting is still worth showing
            if not (await self.store.pending_counts([request.device_id])):
                raise
            state = DeviceState(request.device_id)
        (device,) = await self._devices_pb([state])
        return devices_pb2.GetDeviceResponse(device=device)

    async def StreamCommandEvents(  # noqa: N802
        self, request: devices_pb2.StreamCommandEventsRequest, context: Any
    ) -> AsyncIterator[devices_pb2.StreamCommandEventsResponse]:
        async with self.events.subscribe() as queue:
            while True:
                yield await queue.get()
