"""The service scores exactly what the training code's preprocessing feeds the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from linewatch.model_input import preprocess, resample
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import LENGTH, manifest_dict, onnx_bytes, write_package
from linewatch_dev.testing import operator_channel

from .conftest import StartServer


async def test_scores_match_training_preprocessing(
    tmp_path: Path, start_server: StartServer
) -> None:
    model = onnx_bytes(weight_scale=1.0)
    models = tmp_path / "m"
    write_package(models, model, manifest_dict(name="z"))
    write_package(models, model, manifest_dict(name="raw", normalization="none"))
    rng = np.random.default_rng(9)
    curves = [
        (50.0 + 20.0 * rng.standard_normal(n)).astype(np.float32) for n in (LENGTH, 40, 9, LENGTH)
    ]
    _, port = await start_server(models)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    def expected(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(["probabilities"], {"curve": x})[0])

    batch = pb.CurveBatch(
        samples_f32=np.concatenate(curves).astype("<f4").tobytes(),
        lengths=[len(c) for c in curves],
    )
    async with operator_channel(f"127.0.0.1:{port}") as ch:
        api = pb_grpc.InferenceServiceStub(ch)
        batch.model = "z"
        z = await api.Predict(pb.PredictRequest(batch=batch))
        batch.model = "raw"
        raw = await api.Predict(pb.PredictRequest(batch=batch))
    got_z = np.array([s.probabilities for s in z.result.scores])
    got_raw = np.array([s.probabilities for s in raw.result.scores])
    want_z = expected(preprocess(curves, length=LENGTH))
    resampled = np.stack([resample(c, length=LENGTH) for c in curves]).astype(np.float32)
    want_raw = expected(resampled)
    assert np.allclose(got_z, want_z, atol=1e-5)
    assert np.allclose(got_raw, want_raw, atol=1e-5)
    assert not np.allclose(got_z, got_raw, atol=1e-3)  # the z-score mattered
