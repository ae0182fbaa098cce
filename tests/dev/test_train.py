"""``linewatch train``: a small dataset export (CSV and Parquet) → a valid model package.

The torch half runs in the trainer's venv (``make train-venv``); the tests that train skip,
saying so, where no interpreter with torch is found. Training is a few seconds: a few dozen
plant curves, a few hundred generated ones, two epochs.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from linewatch_inference.package import parse_manifest

from linewatch.model_input import preprocess
from linewatch_dev.cli import main
from linewatch_dev.curves import CURVE_KINDS, make_curve
from linewatch_dev.train import command
from linewatch_dev.train.dataset import DatasetError, read_dataset
from linewatch_dev.train.package import next_version

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "models" / "curve-quality"
COLUMNS = [
    "verdict_id",
    "ts_ms",
    "device_id",
    "point",
    "rule",
    "model",
    "model_version",
    "label",
    "ok",
    "operator_label",
    "note",
    "samples",
]
TRAINER = command.trainer_python(None)
needs_torch = pytest.mark.skipif(
    TRAINER is None,
    reason="no interpreter with torch: run `make train-venv` (creates .venv-model)",
)
FAST = ["--epochs", "2", "--synthetic-per-class", "30", "--generator-heldout-per-class", "20"]


def export_rows(n: int = 60, seed: int = 3) -> list[dict[str, Any]]:
    """Rows as ``GET /v1/datasets/curves`` exports them: two thirds labelled by an
    operator, some where the model was wrong, one row of another model."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = CURVE_KINDS[i % len(CURVE_KINDS)]
        said = "ok" if i % 4 == 0 else kind  # the model missed some defects
        rows.append(
            {
                "verdict_id": f"v-{i}",
                "ts_ms": 1763800000000 + i * 1000,
                "device_id": f"press-{i % 3}",
                "point": "pressure",
                "rule": "line",
                "model": "curve-quality",
                "model_version": "1",
                "label": said,
                "ok": said == "ok",
                "operator_label": kind if i % 3 else None,
                "note": "checked" if i % 3 else None,
                "samples": [round(v, 6) for v in make_curve(kind, length=180 + i, rng=rng)],
            }
        )
    rows.append({**rows[0], "verdict_id": "v-other", "model": "press-cycle"})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow(
                {
                    **row,
                    "samples": json.dumps(row["samples"]),
                    "operator_label": row["operator_label"] or "",
                    "note": row["note"] or "",
                    "ok": "true" if row["ok"] else "false",
                }
            )
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    schema = pa.schema(
        [
            ("verdict_id", pa.string()),
            ("ts_ms", pa.int64()),
            ("device_id", pa.string()),
            ("point", pa.string()),
            ("rule", pa.string()),
            ("model", pa.string()),
            ("model_version", pa.string()),
            ("label", pa.string()),
            ("ok", pa.bool_()),
            ("operator_label", pa.string()),
            ("note", pa.string()),
            ("samples", pa.list_(pa.float64())),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=16)
    return path


def test_csv_and_parquet_read_alike(tmp_path: Path) -> None:
    rows = export_rows()
    a = read_dataset(write_csv(tmp_path / "d.csv", rows), model="curve-quality", labels=CURVE_KINDS)
    b = read_dataset(
        write_parquet(tmp_path / "d.parquet", rows), model="curve-quality", labels=CURVE_KINDS
    )
    assert a.curves == b.curves
    assert a.rows == b.rows == 61
    assert len(a.curves) == 60
    assert a.skipped == {"scored by another model than curve-quality": 1}
    # operator_label wins over the model's label; without one, the model's label is kept
    by_id = {c.verdict_id: c for c in a.curves}
    assert by_id["v-4"].label == "step"
    assert by_id["v-4"].operator_labelled
    assert by_id["v-4"].model_label == "ok"
    assert by_id["v-12"].label == "ok"  # a drift the model called ok, not relabelled
    assert not by_id["v-12"].operator_labelled


def test_a_bad_export_is_refused_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("verdict_id,label\nv1,ok\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="missing column"):
        read_dataset(bad, model="curve-quality", labels=CURVE_KINDS)
    rows = export_rows(n=2)
    path = write_csv(tmp_path / "nan.csv", rows)
    path.write_text(path.read_text(encoding="utf-8").replace("[", "[true, ", 1), encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2: samples holds True"):
        read_dataset(path, model="curve-quality", labels=CURVE_KINDS)
    rows[1]["operator_label"] = "wobble"
    ds = read_dataset(
        write_csv(tmp_path / "w.csv", rows), model="curve-quality", labels=CURVE_KINDS
    )
    assert ds.skipped["label wobble is not one of the model's labels"] == 1


def test_next_version() -> None:
    assert next_version("1") == "2"
    assert next_version("9") == "10"
    assert next_version("3-plant") == "4-plant"
    assert next_version("beta") == "beta.2"


def test_missing_torch_is_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is importable in this interpreter")
    monkeypatch.delenv("LINEWATCH_TRAIN_PYTHON", raising=False)
    monkeypatch.setattr(command, "MODEL_VENV_PYTHON", tmp_path / "no-venv" / "bin" / "python")
    csv_path = write_csv(tmp_path / "d.csv", export_rows(n=5))
    assert main(["train", str(csv_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "torch is not installed" in err
    assert "make train-venv" in err
    assert not (tmp_path / "out").exists()


def _train(tmp_path: Path, dataset: Path, name: str) -> dict[str, Any]:
    out = tmp_path / name
    rc = main(["train", str(dataset), "--base", str(BASE), "--out", str(out), "--quiet", *FAST])
    assert rc == 0
    return {"out": out, "manifest": (out / "manifest.yaml").read_text(encoding="utf-8")}


@needs_torch
def test_trains_a_valid_package_with_its_report(tmp_path: Path) -> None:
    rows = export_rows()
    from_csv = _train(tmp_path, write_csv(tmp_path / "d.csv", rows), "csv")
    from_parquet = _train(tmp_path, write_parquet(tmp_path / "d.parquet", rows), "parquet")
    out = from_csv["out"]
    manifest = parse_manifest(from_csv["manifest"], source="trained")
    assert manifest.name == "curve-quality"
    assert manifest.version == "2"
    assert manifest.labels == list(CURVE_KINDS)
    assert manifest.sha256 == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    # a fixed seed: the same rows give the same model whatever the file format
    assert from_parquet["manifest"] == from_csv["manifest"]
    with zipfile.ZipFile(out / "curve-quality-2.zip") as zf:
        assert sorted(zf.namelist()) == ["manifest.yaml", "model.onnx"]
        assert zf.read("model.onnx") == (out / "model.onnx").read_bytes()

    ev = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert ev["version"] == "2"
    assert ev["base_version"] == "1"
    assert ev["dataset"]["usable"] == 60
    assert ev["dataset"]["operator_labelled"] == 40
    held = ev["dataset"]["heldout"]
    assert held == 10  # a quarter of each label's operator-labelled curves
    assert ev["dataset"]["train"] == 50
    for key in ("plant_heldout", "generator"):
        for who in ("base", "candidate"):
            m = np.array(ev[key][who]["confusion"])
            assert m.shape == (5, 5)
            assert int(m.sum()) == (held if key == "plant_heldout" else 20 * 6)
            assert 0.0 <= ev[key][who]["accuracy"] <= 1.0
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "# curve-quality version 2: evaluation" in report
    assert "| true \\ predicted | ok | spike | drift | noise | step |" in report

    # The package serves: onnxruntime scores curves with it like the server does.
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    x = preprocess([make_curve(k, length=256, rng=rng) for k in CURVE_KINDS], length=256)
    (probs,) = session.run(["probabilities"], {"curve": x})
    assert probs.shape == (5, 5)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
