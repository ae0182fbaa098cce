"""Streamed exports of the archive as CSV or Parquet, memory flat whatever the size.

One exporter serves the training dataset (``curves``: archived curves with their
verdicts and operator labels) and the filtered exports of ``telemetry``, ``verdicts`` and
``alarms``. Rows are read with keyset pagination (``id > last ORDER BY id LIMIT n``, so
each page is an index range scan, never an OFFSET), each page is encoded in a worker
thread (the event loop keeps serving) into bytes the caller streams on: a CSV writer per
page, or one Parquet row group per page (pyarrow ``ParquetWriter`` over a sink that hands
back what it was given). Memory is one page whatever the number of rows.

Dataset columns (``curves``), the contract of the trainer: ``verdict_id, ts_ms,
device_id, point, rule, model, model_version, label, ok, operator_label, note, samples``;
in CSV ``samples`` is a JSON array of numbers (each float32 sample in its shortest
round-trip form), in Parquet ``list<float64>`` (the float32 samples, exact).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
import sqlalchemy as sa

from linewatch.runtime.errors import InvalidArgument
from linewatch_ingest.archive_pages import unindexed, verdict_page
from linewatch_ingest.store import AlarmRow, IngestStore, TelemetryRow, VerdictRow

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = ["COLUMNS", "ExportSpec", "Kind", "export_chunks"]

Kind = Literal["curves", "telemetry", "verdicts", "alarms"]
Format = Literal["csv", "parquet"]

_t: sa.Table = TelemetryRow.__table__  # type: ignore[attr-defined]
_v: sa.Table = VerdictRow.__table__  # type: ignore[attr-defined]
_a: sa.Table = AlarmRow.__table__  # type: ignore[attr-defined]

ArrowType = Literal["int64", "string", "bool", "float64", "list<float64>"]


def _arrow_type(name: ArrowType) -> pa.DataType:
    import pyarrow as pa

    if name == "list<float64>":
        return pa.list_(pa.float64())
    return {"int64": pa.int64, "string": pa.string, "bool": pa.bool_, "float64": pa.float64}[name]()


#: Columns of each kind, in file order, with their Arrow types (by name: pyarrow, some
#: 40 MB of a process, is imported by the first Parquet export, not by every ingest).
COLUMNS: dict[Kind, tuple[tuple[str, ArrowType], ...]] = {
    "curves": (
        ("verdict_id", "int64"), ("ts_ms", "int64"), ("device_id", "string"),
        ("point", "string"), ("rule", "string"), ("model", "string"),
        ("model_version", "string"), ("label", "string"), ("ok", "bool"),
        ("operator_label", "string"), ("note", "string"),
        ("samples", "list<float64>"),
    ),
    "telemetry": (
        ("id", "int64"), ("ts_ms", "int64"), ("rule", "string"),
        ("msg_id", "string"), ("device_id", "string"), ("point", "string"),
        ("topic", "string"), ("attrs", "string"), ("samples", "list<float64>"),
    ),
    "verdicts": (
        ("id", "int64"), ("ts_ms", "int64"), ("rule", "string"),
        ("msg_id", "string"), ("device_id", "string"), ("point", "string"),
        ("model", "string"), ("model_version", "string"), ("label", "string"),
        ("ok", "bool"), ("scores", "string"), ("latency_ms", "float64"),
        ("operator_label", "string"), ("note", "string"),
    ),
    "alarms": (
        ("id", "int64"), ("rule", "string"), ("device_id", "string"),
        ("state", "string"), ("message", "string"), ("count", "int64"),
        ("raised_at_ms", "int64"), ("cleared_at_ms", "int64"), ("delivery", "string"),
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """What to export: the kind, the format and the filters (time range [start, end))."""

    kind: Kind
    format: Format = "csv"
    rule: str = ""
    device_id: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    labelled: bool = False
    label: str = ""
    page_rows: int = 2000


Pager = Callable[[int, int], sa.Select[Any]]
"""The select of the page after an id, of a size."""


def _pager(spec: ExportSpec) -> Pager:
    """How to select each page of a kind."""
    if spec.kind in ("alarms", "telemetry"):
        table, time_col = (_a, _a.c.raised_at_ms) if spec.kind == "alarms" else (_t, _t.c.ts_ms)
        stmt = sa.select(*(table.c[name] for name, _ in COLUMNS[spec.kind]))
        if spec.kind == "alarms" and spec.label:
            stmt = stmt.where(unindexed(_a.c.state) == spec.label)
        stmt = stmt.where(*_filters(spec, table, time_col))

        def plain(after: int, size: int) -> sa.Select[Any]:
            return stmt.where(table.c.id > after).order_by(table.c.id).limit(size)

        return plain
    conds = _filters(spec, _v, _v.c.ts_ms)
    if spec.label:
        conds.append(unindexed(_v.c.label) == spec.label)
    curves = spec.kind == "curves"
    names = [n for n, _ in COLUMNS[spec.kind]][: 9 if curves else 12]
    columns = ["id", *names[1:]]

    def joined(after: int, size: int) -> sa.Select[Any]:
        return verdict_page(
            columns, conds, after=after, size=size, samples=curves, labelled_only=spec.labelled
        )

    return joined


def _filters(spec: ExportSpec, table: sa.Table, time_col: Any) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if spec.rule:
        conds.append(unindexed(table.c.rule) == spec.rule)
    if spec.device_id:
        conds.append(unindexed(table.c.device_id) == spec.device_id)
    if spec.start_ms is not None:
        conds.append(unindexed(time_col) >= spec.start_ms)
    if spec.end_ms is not None:
        conds.append(unindexed(time_col) < spec.end_ms)
    return conds


def _samples(blobs: Sequence[bytes]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """All curves' samples as one float64 array and the list offsets."""
    lengths = np.fromiter((len(b) // 4 for b in blobs), dtype=np.int32, count=len(blobs))
    offsets = np.zeros(len(blobs) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float64)
    return values, offsets


class _Sink:
    """A write-only file whose bytes are taken out after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class _Encoder:
    """Turns pages of rows into bytes of one file (CSV or Parquet)."""

    def __init__(self, kind: Kind, fmt: Format) -> None:
        self.columns = COLUMNS[kind]
        self.names = [name for name, _ in self.columns]
        self.fmt = fmt
        self._schema: pa.Schema | None = None
        self._sink = _Sink()
        self._writer: pq.ParquetWriter | None = None
        self._header = True

    def page(self, rows: Sequence[Any]) -> bytes:
        data = {name: [row[i] for row in rows] for i, name in enumerate(self.names)}
        if self.fmt == "csv":
            return self._csv(data, len(rows))
        return self._parquet(data)

    def _csv(self, data: dict[str, list[Any]], n: int) -> bytes:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        if self._header:
            out.writerow(self.names)
            self._header = False
        if "samples" in data:
            data["samples"] = [
                # float32 in their shortest round-trip form: parsed back and rounded to
                # float32 they are the archived samples exactly
                orjson.dumps(
                    np.frombuffer(b, dtype="<f4"), option=orjson.OPT_SERIALIZE_NUMPY
                ).decode()
                for b in data["samples"]
            ]
        for col in ("operator_label", "note"):
            if col in data:
                data[col] = [v or "" for v in data[col]]
        if "ok" in data:
            data["ok"] = ["true" if v else "false" for v in data["ok"]]
        out.writerows(zip(*(data[name] for name in self.names), strict=True) if n else [])
        return buf.getvalue().encode()

    @property
    def schema(self) -> pa.Schema:
        if self._schema is None:
            import pyarrow as pa

            self._schema = pa.schema([pa.field(n, _arrow_type(t)) for n, t in self.columns])
        return self._schema

    def _parquet_writer(self) -> pq.ParquetWriter:
        if self._writer is None:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd")
        return self._writer

    def _parquet(self, data: dict[str, list[Any]]) -> bytes:
        import pyarrow as pa

        arrays: list[pa.Array] = []
        for (name, _), field in zip(self.columns, self.schema, strict=True):
            if name == "samples":
                values, offsets = _samples(data[name])
                arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)))
            else:
                arrays.append(pa.array(data[name], type=field.type))
        self._parquet_writer().write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        return self._sink.take()

    def finish(self) -> bytes:
        if self.fmt == "csv":
            return self._csv({n: [] for n in self.names}, 0) if self._header else b""
        self._parquet_writer().close()
        return self._sink.take()


def check(spec: ExportSpec) -> None:
    """Refuse filters that do not apply to the kind.

    Raises:
        InvalidArgument: with the reason.
    """
    if spec.kind not in COLUMNS:
        raise InvalidArgument(f"kind: one of {', '.join(COLUMNS)}")
    if spec.format not in ("csv", "parquet"):
        raise InvalidArgument("format: csv or parquet")
    if spec.labelled and spec.kind not in ("curves", "verdicts"):
        raise InvalidArgument("labelled: only for curves and verdicts")
    if spec.start_ms is not None and spec.end_ms is not None and spec.end_ms < spec.start_ms:
        raise InvalidArgument("end: must not be before start")


async def export_chunks(
    store: IngestStore,
    spec: ExportSpec,
    *,
    encode: Callable[..., Any] = asyncio.to_thread,
) -> AsyncIterator[bytes]:
    """The file's bytes, a page of rows at a time (checked first: nothing is yielded for
    a refused spec).

    Raises:
        InvalidArgument: a filter that does not apply to the kind.
    """
    check(spec)
    pager = _pager(spec)
    encoder = _Encoder(spec.kind, spec.format)
    last = 0
    size = max(1, spec.page_rows)
    while True:
        async with store.db.connect() as conn:
            rows: Sequence[Any] = (await conn.execute(pager(last, size))).all()
        if not rows:
            break
        last = int(rows[-1][0])
        full = len(rows) == size
        if spec.kind == "curves":
            rows = [r for r in rows if r[-1] is not None]  # a verdict whose curve is gone
        if rows:
            chunk = await encode(encoder.page, rows)
            if chunk:
                yield chunk
        if not full:
            break
    yield await encode(encoder.finish)
