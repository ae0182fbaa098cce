"""Per-device verdict counts for other services (the OTA quality gate and idle windows).

``QueryVerdictCounts`` answers, for each asked device, either the counts (total, not ok)
of its verdicts in a time window, or those of its last N verdicts before a time and its
next N from it; plus the time of its newest verdict. Each device is one or two indexed
range reads (``ix_ingest_verdict_device_ts``), never a scan of the archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from linewatch.runtime.db import Database
from linewatch.runtime.errors import InvalidArgument
from linewatch.v1 import ingest_pb2
from linewatch_ingest.convert import timestamp_ms
from linewatch_ingest.store import VerdictRow

__all__ = ["MAX_CYCLES", "MAX_DEVICES", "Counts", "VerdictCounter"]

MAX_DEVICES = 10_000
MAX_CYCLES = 100_000


@dataclass(frozen=True, slots=True)
class Counts:
    """Verdicts and how many of them were not ok."""

    total: int = 0
    not_ok: int = 0

    def pb(self) -> ingest_pb2.VerdictCounts:
        return ingest_pb2.VerdictCounts(total=self.total, not_ok=self.not_ok)


def _validate(request: ingest_pb2.QueryVerdictCountsRequest) -> None:
    if not request.devices:
        raise InvalidArgument("devices: at least one device")
    if len(request.devices) > MAX_DEVICES:
        raise InvalidArgument(f"devices: at most {MAX_DEVICES}")
    if any(not d.device_id for d in request.devices):
        raise InvalidArgument("devices: every device needs a device_id")
    cycles = request.last_cycles or request.next_cycles
    if request.HasField("window") == bool(cycles):
        raise InvalidArgument("give either window or last_cycles / next_cycles")
    if cycles:
        if request.last_cycles > MAX_CYCLES or request.next_cycles > MAX_CYCLES:
            raise InvalidArgument(f"last_cycles and next_cycles: at most {MAX_CYCLES}")
        if any(not d.HasField("around") for d in request.devices):
            raise InvalidArgument("cycle mode: every device needs `around`")
    else:
        w = request.window
        if not (w.HasField("start") and w.HasField("end")):
            raise InvalidArgument("window: both start and end are required")
        if timestamp_ms(w.end) < timestamp_ms(w.start):
            raise InvalidArgument("window: end before start")


class VerdictCounter:
    """Counts over the verdict archive."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def query(
        self, request: ingest_pb2.QueryVerdictCountsRequest
    ) -> ingest_pb2.QueryVerdictCountsResponse:
        """The answer to one request.

        Raises:
            InvalidArgument: neither or both modes, no devices, bounds out of range.
        """
        _validate(request)
        out = ingest_pb2.QueryVerdictCountsResponse()
        async with self.db.connect() as conn:
            for device in request.devices:
                item = out.devices.add(device_id=device.device_id)
                if request.HasField("window"):
                    start = timestamp_ms(request.window.start)
                    end = timestamp_ms(request.window.end)
                    item.window.CopyFrom((await _window(conn, device.device_id, start, end)).pb())
                else:
                    around = timestamp_ms(device.around)
                    if request.last_cycles:
                        before = await _cycles(
                            conn, device.device_id, around, request.last_cycles, after=False
                        )
                        item.before.CopyFrom(before.pb())
                    if request.next_cycles:
                        after = await _cycles(
                            conn, device.device_id, around, request.next_cycles, after=True
                        )
                        item.after.CopyFrom(after.pb())
                last = await _last(conn, device.device_id)
                if last is not None:
                    item.last_cycle.FromMilliseconds(last)
        return out


_V = VerdictRow.__table__  # type: ignore[attr-defined]
_NOT_OK = sa.func.sum(sa.case((_V.c.ok.is_(False), 1), else_=0))


def _counts(row: Any) -> Counts:
    if row is None:
        return Counts()
    return Counts(total=int(row[0] or 0), not_ok=int(row[1] or 0))


async def _window(conn: AsyncConnection, device: str, start: int, end: int) -> Counts:
    result = await conn.execute(
        sa.select(sa.func.count(), _NOT_OK).where(
            _V.c.device_id == device, _V.c.ts_ms >= start, _V.c.ts_ms < end
        )
    )
    return _counts(result.first())


async def _cycles(
    conn: AsyncConnection, device: str, around: int, n: int, *, after: bool
) -> Counts:
    ts = _V.c.ts_ms
    inner = (
        sa.select(_V.c.ok)
        .where(_V.c.device_id == device, ts >= around if after else ts < around)
        .order_by(ts.asc() if after else ts.desc(), _V.c.id.asc() if after else _V.c.id.desc())
        .limit(n)
        .subquery()
    )
    result = await conn.execute(
        sa.select(sa.func.count(), sa.func.sum(sa.case((inner.c.ok.is_(False), 1), else_=0)))
    )
    return _counts(result.first())


async def _last(conn: AsyncConnection, device: str) -> int | None:
    result = await conn.execute(
        sa.select(sa.func.max(col(VerdictRow.ts_ms))).where(col(VerdictRow.device_id) == device)
    )
    value = result.scalar()
    return int(value) if value is not None else None
