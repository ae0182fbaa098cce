"""The shipped curve-quality model package (models/curve-quality) loads and scores well.

Needs numpy, onnxruntime and pyyaml only: the same as the inference service.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from linewatch_dev.curves import CURVE_KINDS, make_curve, preprocess

PACKAGE = Path(__file__).resolve().parents[2] / "models" / "curve-quality"
MANIFEST_KEYS = {
    "name",
    "version",
    "file",
    "sha256",
    "input_name",
    "output_name",
    "input_length",
    "resample",
    "normalization",
    "labels",
    "ok_labels",
    "description",
    "metrics",
}
SEED = 20_260_917  # not the training (0) or held-out (1000) seed


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data = yaml.safe_load((PACKAGE / "manifest.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def session(manifest: dict[str, Any]) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        str(PACKAGE / manifest["file"]), options, providers=["CPUExecutionProvider"]
    )


def test_manifest(manifest: dict[str, Any]) -> None:
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["name"] == "curve-quality"
    assert manifest["version"] == "1"
    assert manifest["file"] == "model.onnx"
    assert manifest["input_name"] == "curve"
    assert manifest["output_name"] == "probabilities"
    assert manifest["input_length"] == 256
    assert manifest["resample"] == "linear"
    assert manifest["normalization"] == "zscore"
    # The generator and the model agree on the label order.
    assert manifest["labels"] == list(CURVE_KINDS)
    assert manifest["ok_labels"] == ["ok"]
    assert isinstance(manifest["description"], str)
    assert manifest["description"]
    metrics = manifest["metrics"]
    assert set(metrics["heldout_accuracy"]) == set(CURVE_KINDS)
    assert min(metrics["heldout_accuracy"].values()) >= 0.97
    # Overall held-out accuracy (two good curves per defective curve of each kind) >= 98 %.
    acc = metrics["heldout_accuracy"]
    overall = (2 * acc["ok"] + sum(v for k, v in acc.items() if k != "ok")) / (len(acc) + 1)
    assert overall >= 0.98, acc
    assert metrics["heldout_samples"] > 0


def test_sha256_matches_file(manifest: dict[str, Any]) -> None:
    data = (PACKAGE / manifest["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert len(data) < 1_000_000


def test_graph_signature(session: Any, manifest: dict[str, Any]) -> None:
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.name == manifest["input_name"]
    assert inp.type == "tensor(float)"
    assert inp.shape[1] == manifest["input_length"]
    assert not isinstance(inp.shape[0], int)  # dynamic batch axis
    assert out.name == manifest["output_name"]
    assert out.shape[1] == len(manifest["labels"])


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_probabilities_for_any_batch_size(
    session: Any, manifest: dict[str, Any], batch: int
) -> None:
    rng = np.random.default_rng(SEED + batch)
    x = preprocess([make_curve("ok", length=300, rng=rng) for _ in range(batch)], length=256)
    (probs,) = session.run([manifest["output_name"]], {manifest["input_name"]: x})
    assert probs.shape == (batch, len(manifest["labels"]))
    assert probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_accuracy_on_fresh_curves(session: Any, manifest: dict[str, Any]) -> None:
    """500 new curves of mixed lengths (200..400, as the simulator sends), half defective."""
    rng = np.random.default_rng(SEED)
    labels = np.where(rng.random(500) < 0.5, 0, rng.integers(1, len(CURVE_KINDS), size=500)).astype(
        np.int64
    )
    curves = [
        make_curve(CURVE_KINDS[label], length=int(rng.integers(200, 401)), rng=rng)
        for label in labels
    ]
    x = preprocess(curves, length=manifest["input_length"])
    (probs,) = session.run([manifest["output_name"]], {manifest["input_name"]: x})
    pred = probs.argmax(axis=1)
    accuracy = float((pred == labels).mean())
    per_class = {kind: float((pred[labels == i] == i).mean()) for i, kind in enumerate(CURVE_KINDS)}
    assert accuracy >= 0.95, per_class
    assert min(per_class.values()) >= 0.85, per_class
    # ok vs defect, the decision the services act on.
    is_ok = np.isin(pred, [manifest["labels"].index(k) for k in manifest["ok_labels"]])
    assert float((is_ok == (labels == 0)).mean()) >= 0.95


PREVIOUS_MODEL_MACS = 333_824
"""Conv multiply-accumulates per curve of the machine-cycle-only model this one replaced
(channels 16, 24, 32, 32, 32; 12,613 parameters): ingest's throughput rests on the
inference service's CPU per curve, so a retrained model may not cost more."""


def conv_macs(model: Any, length: int) -> int:
    """Multiply-accumulates of a chain of 1-D Conv nodes for one curve of ``length``."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        c_out, c_in, k = weights[node.input[1]]
        (stride,) = next(a.ints for a in node.attribute if a.name == "strides")
        length = (length + stride - 1) // stride
        total += c_out * c_in * k * length
    return total


def test_no_more_work_per_curve_than_the_previous_model(manifest: dict[str, Any]) -> None:
    model = onnx.load(str(PACKAGE / manifest["file"]))
    assert conv_macs(model, manifest["input_length"]) <= PREVIOUS_MODEL_MACS
