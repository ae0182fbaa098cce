"""Triton's own client (tritonclient[grpc]) against the service: the Done-when check."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linewatch_dev.curves import CURVE_KINDS, make_batch
from linewatch_dev.inference_testing import LENGTH
from linewatch_dev.testing import TEST_TOKEN

from .conftest import StartServer

REPO_MODELS = Path(__file__).resolve().parents[3] / "models"
PROBE = Path(__file__).with_name("triton_probe.py")


async def run_probe(
    port: int, model: str, curves: np.ndarray[Any, Any], tmp_path: Path, *extra: str
) -> dict[str, Any]:
    """Run Triton's client in a child process (it cannot share our protobuf pool)."""
    path = tmp_path / "curves.npy"
    np.save(path, curves)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        str(port),
        model,
        str(path),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LINEWATCH_PROBE_TOKEN": TEST_TOKEN},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_liveness_metadata_and_infer(
    model_dir: Path, start_server: StartServer, tmp_path: Path
) -> None:
    _, port = await start_server(model_dir)
    curves = np.random.default_rng(1).standard_normal((4, LENGTH)).astype(np.float32)
    seen = await run_probe(port, "tiny", curves, tmp_path)
    assert seen["live"] is True
    assert seen["ready"] is True
    assert seen["server"]["name"] == "linewatch-inference"
    assert "model_repository" in seen["server"]["extensions"]
    assert seen["model_ready"] is True
    assert seen["model_ready_v9"] is False
    model = seen["model"]
    assert model["versions"] == ["1"]
    assert model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "curve", "datatype": "FP32", "shape": ["-1", str(LENGTH)]}]
    assert model["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "3"]}]
    assert seen["index"]["models"] == [{"name": "tiny", "version": "1", "state": "READY"}]
    probabilities = np.asarray(seen["probabilities"])
    assert probabilities.shape == (4, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == 0).all()
    assert seen["model_version"] == "1"
    assert seen["id"] == "r1"


async def test_unload_and_reload_from_model_dir(
    model_dir: Path, start_server: StartServer, tmp_path: Path
) -> None:
    _, port = await start_server(model_dir)
    curves = np.ones((1, LENGTH), dtype=np.float32)
    seen = await run_probe(port, "tiny", curves, tmp_path, "--unload-reload")
    assert seen["ready_after_unload"] is False
    assert seen["infer_after_unload"].startswith("StatusCode.NOT_FOUND")
    assert seen["ready_after_load"] is True


@pytest.mark.skipif(
    not (REPO_MODELS / "curve-quality" / "manifest.yaml").exists(),
    reason="the shipped model is not built yet (make model)",
)
async def test_shipped_model_through_triton_client(
    start_server: StartServer, tmp_path: Path
) -> None:
    _, port = await start_server(REPO_MODELS)
    curves, labels = make_batch(100, length=256, rng=np.random.default_rng(11))
    seen = await run_probe(port, "curve-quality", curves, tmp_path)
    assert seen["model"]["inputs"][0]["shape"] == ["-1", "256"]
    assert seen["model"]["outputs"][0]["shape"] == ["-1", str(len(CURVE_KINDS))]
    probabilities = np.asarray(seen["probabilities"])
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    assert accuracy >= 0.95
