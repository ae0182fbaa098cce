"""The shipped two-channel example model package (models/press-cycle).

Contract for multi-channel models: the manifest names its input channels
(``channels: [pressure, force]``), the ONNX input is ``[batch, n_channels, input_length]``
float32, and each channel is resampled to ``input_length`` and z-scored on its own
(:func:`linewatch.model_input.preprocess` per channel). onnxruntime only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from linewatch_dev.curves import CURVE_KINDS, preprocess
from tools.model.families import press_cycle

PACKAGE = Path(__file__).resolve().parents[2] / "models" / "press-cycle"
SEED = 20_261_201  # not the training (0) or held-out (1000) seed


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


def _inputs(curves: list[np.ndarray], length: int) -> np.ndarray:
    """[n, channels, samples] raw cycles -> the model input, each channel on its own."""
    n, ch = len(curves), curves[0].shape[0]
    flat = preprocess([c for cycle in curves for c in cycle], length=length)
    return flat.reshape(n, ch, length)


def test_manifest(manifest: dict[str, Any]) -> None:
    assert manifest["name"] == "press-cycle"
    assert manifest["channels"] == ["pressure", "force"]
    assert manifest["input_length"] == 256
    assert manifest["resample"] == "linear"
    assert manifest["normalization"] == "zscore"
    assert manifest["labels"] == list(CURVE_KINDS)
    assert manifest["ok_labels"] == ["ok"]
    assert min(manifest["metrics"]["heldout_accuracy"].values()) >= 0.97
    data = (PACKAGE / manifest["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]


def test_graph_signature(session: Any, manifest: dict[str, Any]) -> None:
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.name == manifest["input_name"]
    assert inp.type == "tensor(float)"
    assert inp.shape[1:] == [len(manifest["channels"]), manifest["input_length"]]
    assert not isinstance(inp.shape[0], int)
    assert out.name == manifest["output_name"]
    assert out.shape[1] == len(manifest["labels"])


def test_accuracy_on_fresh_cycles(session: Any, manifest: dict[str, Any]) -> None:
    """300 new press cycles of mixed lengths, half defective (a defect on one channel)."""
    rng = np.random.default_rng(SEED)
    labels = np.where(rng.random(300) < 0.5, 0, rng.integers(1, len(CURVE_KINDS), size=300))
    cycles = [press_cycle(CURVE_KINDS[label], int(rng.integers(150, 500)), rng) for label in labels]
    x = _inputs(cycles, manifest["input_length"])
    (probs,) = session.run([manifest["output_name"]], {manifest["input_name"]: x})
    pred = probs.argmax(axis=1)
    assert float((pred == labels).mean()) >= 0.95
    assert float(((pred == 0) == (labels == 0)).mean()) >= 0.95


def test_channels_are_not_interchangeable(session: Any, manifest: dict[str, Any]) -> None:
    """The model reads the channels in the manifest's order: swapped, good cycles look wrong."""
    rng = np.random.default_rng(SEED + 1)
    cycles = [press_cycle("ok", 300, rng) for _ in range(50)]
    x = _inputs(cycles, manifest["input_length"])
    (right,) = session.run([manifest["output_name"]], {manifest["input_name"]: x})
    (swapped,) = session.run([manifest["output_name"]], {manifest["input_name"]: x[:, ::-1].copy()})
    assert float((right.argmax(axis=1) == 0).mean()) >= 0.95
    assert float((swapped.argmax(axis=1) == 0).mean()) <= 0.8
