"""Helpers for tests of the inference service: tiny generated ONNX models and packages.

Not imported by the service at run time (``onnx`` is a development dependency).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "LABELS",
    "LENGTH",
    "manifest_dict",
    "onnx_bytes",
    "sha256",
    "two_channel_onnx",
    "write_package",
    "zip_package",
]

LABELS = ["ok", "bad", "worse"]
LENGTH = 16


def onnx_bytes(
    *,
    length: int = LENGTH,
    bias: Sequence[float] = (2.0, 0.0, 0.0),
    weight_scale: float = 0.0,
    input_name: str = "curve",
    output_name: str = "probabilities",
) -> bytes:
    """A tiny model: softmax(x @ W + bias); with weight 0 the top label is argmax(bias)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    classes = len(bias)
    rng = np.random.default_rng(7)
    weight = (weight_scale * rng.standard_normal((length, classes))).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [input_name, "W"], ["logits0"]),
            helper.make_node("Add", ["logits0", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [output_name], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", length])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", classes])],
        initializer=[
            numpy_helper.from_array(weight, "W"),
            numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def two_channel_onnx(*, length: int = 64, threshold: float = 3.0) -> bytes:
    """A two-channel model, input ``[batch, 2, length]``, labels ``[ok, defect]``:
    ``defect`` when the second channel's (z-scored) peak exceeds ``threshold``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.array([[0.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["curve"], ["peak"], axes=[2], keepdims=0),
            helper.make_node("MatMul", ["peak", "W"], ["logits0"]),
            helper.make_node("Add", ["logits0", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "two-channel",
        [helper.make_tensor_value_info("curve", TensorProto.FLOAT, ["batch", 2, length])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(weight, "W"),
            numpy_helper.from_array(np.array([0.0, -threshold], dtype=np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def manifest_dict(
    *,
    name: str = "tiny",
    version: str = "1",
    length: int = LENGTH,
    labels: Sequence[str] = LABELS,
    resample: str = "linear",
    normalization: str = "zscore",
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "file": "model.onnx",
        "input_name": "curve",
        "output_name": "probabilities",
        "input_length": length,
        "resample": resample,
        "normalization": normalization,
        "labels": list(labels),
        "ok_labels": [labels[0]],
    }


def write_package(root: Path, model: bytes, manifest: dict[str, Any]) -> Path:
    """A package folder ``root/<name>-<version>`` with manifest.yaml and model.onnx."""
    folder = root / f"{manifest['name']}-{manifest['version']}"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model)
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return folder


def zip_package(model: bytes, manifest: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("manifest.yaml", yaml.safe_dump(manifest))
        archive.writestr("model.onnx", model)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
