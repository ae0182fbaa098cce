"""Read a dataset export (``GET /v1/datasets/curves``) into labelled curves for training.

The export's columns (docs/rest.md): ``verdict_id, ts_ms, device_id, point, rule, model,
model_version, label, ok, operator_label, note, samples`` (+ ``channels``). In CSV
``samples`` is a JSON array of numbers; in Parquet it is ``list<float64>``. A curve's
training label is its ``operator_label`` when an operator gave one, else the model's
``label``. Rows another model scored, or whose label the base model does not know
(``learning``, ``out_of_envelope`` …), are skipped and counted, never guessed.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "REQUIRED_COLUMNS",
    "Dataset",
    "DatasetError",
    "LabelledCurve",
    "download_dataset",
    "read_dataset",
]

REQUIRED_COLUMNS = ("verdict_id", "model", "label", "operator_label", "samples")
"""The columns the trainer needs; the others are carried through to the report."""
DATASET_PATH = "/v1/datasets/curves"


class DatasetError(ValueError):
    """The dataset file or download cannot be used; the message says which row or column."""


@dataclass(frozen=True)
class LabelledCurve:
    """One archived curve and the label to train it with."""

    verdict_id: str
    samples: tuple[float, ...]
    label: str
    """The operator's label when there is one, else the model's."""
    operator_labelled: bool
    model_label: str


@dataclass
class Dataset:
    """The usable curves of an export and what was skipped, by reason."""

    curves: list[LabelledCurve] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    rows: int = 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).strip()


def _samples(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: samples is not a JSON array of numbers") from exc
    if not isinstance(value, list | tuple):
        raise DatasetError(f"{where}: samples is not an array of numbers")
    out: list[float] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise DatasetError(f"{where}: samples holds {v!r}, not a finite number")
        out.append(float(v))
    return tuple(out)


def _add(
    ds: Dataset, row: dict[str, Any], where: str, *, model: str, labels: tuple[str, ...]
) -> None:
    ds.rows += 1
    if _text(row.get("model")) != model:
        ds.skipped[f"scored by another model than {model}"] += 1
        return
    operator = _text(row.get("operator_label"))
    model_label = _text(row.get("label"))
    label = operator or model_label
    if label not in labels:
        ds.skipped[f"label {label or '(none)'} is not one of the model's labels"] += 1
        return
    samples = _samples(row.get("samples"), where)
    if len(samples) < 2:
        ds.skipped["fewer than 2 samples"] += 1
        return
    ds.curves.append(
        LabelledCurve(_text(row.get("verdict_id")), samples, label, bool(operator), model_label)
    )


def _check_columns(columns: list[str], source: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DatasetError(
            f"{source}: missing column(s) {', '.join(missing)}; a dataset export "
            f"({DATASET_PATH}) has {', '.join(REQUIRED_COLUMNS)} among others"
        )


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    csv.field_size_limit(sys.maxsize)  # one curve is one (long) field
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        _check_columns(list(reader.fieldnames or []), path.name)
        for i, row in enumerate(reader, start=2):
            yield f"{path.name} line {i}", row


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path.name}: not a Parquet file ({exc})") from exc
    _check_columns(list(pf.schema_arrow.names), path.name)
    n = 0
    for batch in pf.iter_batches(batch_size=4096, columns=list(REQUIRED_COLUMNS)):
        for row in batch.to_pylist():
            n += 1
            yield f"{path.name} row {n}", row


def read_dataset(path: Path, *, model: str, labels: tuple[str, ...]) -> Dataset:
    """Read a CSV or Parquet dataset export (told apart by its first bytes).

    Raises:
        DatasetError: The file is missing, of another format, lacks a column, or a row's
            samples are not finite numbers.
    """
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    rows = _parquet_rows(path) if magic == b"PAR1" else _csv_rows(path)
    ds = Dataset()
    try:
        for where, row in rows:
            _add(ds, row, where, model=model, labels=labels)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path.name}: neither Parquet nor a readable CSV ({exc})") from exc
    return ds


def download_dataset(gateway: str, token: str, dest: Path, *, params: dict[str, str]) -> Path:
    """Stream ``GET {gateway}/v1/datasets/curves?format=parquet&labelled=true`` into ``dest``.

    The body is written as it arrives (memory stays flat whatever the export's size).

    Raises:
        DatasetError: The gateway cannot be reached or answers with an error.
    """
    query = {"format": "parquet", "labelled": "true", **params}
    url = gateway.rstrip("/") + DATASET_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.stream("GET", url, params=query, headers=headers, timeout=60.0) as resp:
            if resp.status_code != 200:
                body = resp.read().decode("utf-8", "replace")[:300]
                raise DatasetError(f"GET {url}: HTTP {resp.status_code}: {body}")
            with dest.open("wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        raise DatasetError(f"GET {url}: {exc}") from exc
    return dest
