"""Multi-channel models: manifests naming channels, scored over linewatch.v1 and OIP."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import manifest_dict, two_channel_onnx, write_package
from linewatch_dev.testing import operator_channel

from .conftest import StartServer

LENGTH = 64


def _package(root: Path) -> Path:
    manifest = manifest_dict(name="press2", length=LENGTH, labels=["ok", "defect"])
    manifest["channels"] = ["pressure", "force"]
    write_package(root, two_channel_onnx(length=LENGTH), manifest)
    return root


def _curves(n: int, *, spike: bool) -> np.ndarray:
    t = np.linspace(0, 1, n)
    y = (100 * np.sin(np.pi * t)).astype(np.float32)
    if spike:
        y[n // 2 - n // 40 : n // 2 + n // 40] += 2000  # survives resampling
    return y


def _batch(channels: dict[str, np.ndarray]) -> pb.CurveBatch:
    return pb.CurveBatch(
        model="press2",
        samples_f32=np.concatenate(list(channels.values())).astype("<f4").tobytes(),
        lengths=[len(v) for v in channels.values()],
        channels=list(channels),
    )


async def test_two_channel_model_scores_channels_in_the_manifest_order(
    tmp_path: Path, start_server: StartServer
) -> None:
    _, port = await start_server(_package(tmp_path / "models"))
    async with operator_channel(f"127.0.0.1:{port}") as channel:
        api = pb_grpc.InferenceServiceStub(channel)
        model = await api.GetModel(pb.GetModelRequest(name="press2"))
        assert list(model.model.versions[0].channels) == ["pressure", "force"]
        # force spiky, listed first: the model reads force as its second channel
        spiky_force = _batch(
            {"force": _curves(300, spike=True), "pressure": _curves(250, spike=False)}
        )
        spiky_pressure = _batch(
            {"pressure": _curves(300, spike=True), "force": _curves(90, spike=False)}
        )
        for batch, label in ((spiky_force, "defect"), (spiky_pressure, "ok")):
            got = await api.Predict(pb.PredictRequest(batch=batch))
            assert [s.label for s in got.result.scores] == [label]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.Predict(
                pb.PredictRequest(batch=_batch({"pressure": _curves(64, spike=False)}))
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "lacks ['force']" in (err.value.details() or "")
        single = pb.CurveBatch(
            model="press2", samples_f32=_curves(64, spike=False).tobytes(), lengths=[64]
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.Predict(pb.PredictRequest(batch=single))
        assert "takes channels" in (err.value.details() or "")
        bad = _batch({"force": _curves(64, spike=False), "force2": _curves(64, spike=False)})
        bad.lengths.append(3)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.Predict(pb.PredictRequest(batch=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # the Open Inference Protocol takes [batch, channels, samples] in the manifest order
        meta = await oip_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
            oip.ModelMetadataRequest(name="press2")
        )
        assert list(meta.inputs[0].shape) == [-1, 2, LENGTH]
        x = np.stack([
            np.stack([_curves(LENGTH, spike=False), _curves(LENGTH, spike=True)]),
            np.stack([_curves(LENGTH, spike=True), _curves(LENGTH, spike=False)]),
        ]).astype("<f4")  # fmt: skip
        answer = await oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            oip.ModelInferRequest(
                model_name="press2",
                inputs=[
                    oip.ModelInferRequest.InferInputTensor(
                        name="curve", datatype="FP32", shape=list(x.shape)
                    )
                ],
                raw_input_contents=[x.tobytes()],
            )
        )
        probs = np.frombuffer(answer.raw_output_contents[0], dtype="<f4").reshape(2, 2)
        assert probs.argmax(axis=1).tolist() == [1, 0]


def test_manifest_channels_are_validated() -> None:
    from linewatch_inference.package import parse_manifest

    from linewatch.runtime.errors import InvalidArgument

    base = manifest_dict(name="m", length=LENGTH, labels=["ok", "defect"])
    import yaml

    for channels, match in ((["a", "a"], "unique"), (["a/b"], "names")):
        with pytest.raises(InvalidArgument, match=match):
            parse_manifest(yaml.safe_dump({**base, "channels": channels}), source="t")
