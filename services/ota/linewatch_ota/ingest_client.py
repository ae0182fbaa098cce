"""The OTA service's calls to ingest: verdict counts per device (``QueryVerdictCounts``),
and the quality gate's alarms (``RaiseAlarm``, ``ClearAlarms``).

Ingest calls the OTA service too (alarm commands), so ingest may start after it or be
restarting: every call raises :class:`~linewatch.runtime.errors.Unavailable` when
ingest cannot answer, and the scheduler waits and asks again on a later tick — the quality
gate and idle windows never pass on a missing answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from linewatch.runtime.config import GrpcClientConfig
from linewatch.runtime.errors import Unavailable
from linewatch.runtime.grpc_auth import open_channel
from linewatch.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = ["CHUNK", "CycleCounts", "IngestCounts"]

log = logging.getLogger(__name__)

CHUNK = 2000


@dataclass(frozen=True, slots=True)
class CycleCounts:
    """(total, not ok) per range, and the newest cycle (epoch s, None: none)."""

    window: tuple[int, int] = (0, 0)
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)
    last_cycle: float | None = None


def _pair(c: ingest_pb2.VerdictCounts) -> tuple[int, int]:
    return int(c.total), int(c.not_ok)


class IngestCounts:
    """A client of ``IngestService.QueryVerdictCounts`` (``target`` "" = not configured)."""

    def __init__(self, target: str, client: GrpcClientConfig, timeout_s: float = 10.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._channel = open_channel(target, client) if target else None
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel) if self._channel else None

    @property
    def configured(self) -> bool:
        return self._stub is not None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def _ask(self, request: ingest_pb2.QueryVerdictCountsRequest) -> dict[str, CycleCounts]:
        if self._stub is None:
            raise Unavailable("ingest_addr is not configured: verdict counts cannot be asked")
        try:
            reply = await self._stub.QueryVerdictCounts(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"ingest did not answer ({exc.code().name})") from exc
        return {
            d.device_id: CycleCounts(
                window=_pair(d.window),
                before=_pair(d.before),
                after=_pair(d.after),
                last_cycle=(
                    d.last_cycle.ToNanoseconds() / 1e9 if d.HasField("last_cycle") else None
                ),
            )
            for d in reply.devices
        }

    async def window(
        self, devices: Sequence[str], start: float, end: float
    ) -> dict[str, CycleCounts]:
        """Counts of each device's verdicts in ``[start, end)``."""
        out: dict[str, CycleCounts] = {}
        ids = list(devices)
        for at in range(0, len(ids), CHUNK):
            request = ingest_pb2.QueryVerdictCountsRequest(
                devices=[ingest_pb2.VerdictCountsDevice(device_id=d) for d in ids[at : at + CHUNK]]
            )
            request.window.start.FromNanoseconds(int(start * 1e9))
            request.window.end.FromNanoseconds(int(end * 1e9))
            out.update(await self._ask(request))
        return out

    async def around(self, arounds: dict[str, float], cycles: int) -> dict[str, CycleCounts]:
        """The last and next ``cycles`` verdicts around each device's time."""
        out: dict[str, CycleCounts] = {}
        items = sorted(arounds.items())
        for at in range(0, len(items), CHUNK):
            request = ingest_pb2.QueryVerdictCountsRequest(last_cycles=cycles, next_cycles=cycles)
            for device_id, t in items[at : at + CHUNK]:
                request.devices.add(device_id=device_id).around.FromNanoseconds(int(t * 1e9))
            out.update(await self._ask(request))
        return out

    async def _call(self, method: str, request: object) -> object:
        if self._stub is None:
            raise Unavailable("ingest_addr is not configured: ingest cannot be called")
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"ingest did not answer ({exc.code().name})") from exc

    async def raise_alarm(
        self, *, kind: str, rule: str, device_id: str, severity: str, message: str, count: int
    ) -> None:
        """Raise an alarm in ingest (at most once per kind, rule and device)."""
        request = ingest_pb2.RaiseAlarmRequest(
            kind=kind,
            rule=rule,
            device_id=device_id,
            severity=severity,
            message=message[:1000],
            count=count,
        )
        await self._call("RaiseAlarm", request)

    async def clear_alarms(self, kind: str, rule: str) -> None:
        """Clear ingest's active alarms of ``kind`` under ``rule``."""
        await self._call("ClearAlarms", ingest_pb2.ClearAlarmsRequest(kind=kind, rule=rule))
