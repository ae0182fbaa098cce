"""Bad input gets the right gRPC status and a message that says what is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import LENGTH, manifest_dict, onnx_bytes, write_package
from linewatch_dev.testing import operator_channel

from .conftest import StartServer


@pytest.fixture
async def channel(model_dir: Path, start_server: StartServer) -> AsyncIterator[grpc.aio.Channel]:
    write_package(model_dir, onnx_bytes(), manifest_dict(name="strict", resample="reject"))
    _, port = await start_server(model_dir, max_request_curves=8)
    async with operator_channel(f"127.0.0.1:{port}") as ch:
        yield ch


def curves_batch(
    curves: list[list[float]], model: str = "tiny", version: str = ""
) -> pb.CurveBatch:
    flat = np.concatenate([np.asarray(c, dtype="<f4") for c in curves])
    return pb.CurveBatch(
        model=model, version=version, samples_f32=flat.tobytes(), lengths=[len(c) for c in curves]
    )


async def expect(
    api: pb_grpc.InferenceServiceStub, batch: pb.CurveBatch, code: grpc.StatusCode, text: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.Predict(pb.PredictRequest(batch=batch))
    assert err.value.code() == code
    assert text in (err.value.details() or ""), err.value.details()


async def test_predict_rejects_bad_batches(channel: grpc.aio.Channel) -> None:
    api = pb_grpc.InferenceServiceStub(channel)
    good = [float(i) for i in range(LENGTH)]
    nan = list(good)
    nan[3] = float("nan")
    inf = list(good)
    inf[0] = float("inf")
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await expect(api, curves_batch([good, good, nan]), invalid, "curve 2 has a NaN or infinite")
    await expect(api, curves_batch([inf, good]), invalid, "curve 0 has a NaN or infinite")
    odd = pb.CurveBatch(model="tiny", samples_f32=b"\x00" * 10, lengths=[2])
    await expect(api, odd, invalid, "not a multiple of 4")
    short = pb.CurveBatch(model="tiny", samples_f32=b"\x00" * 16, lengths=[2, 3])
    await expect(api, short, invalid, "lengths sum to 5 samples")
    await expect(api, pb.CurveBatch(model="tiny"), invalid, "no curves")
    await expect(api, curves_batch([good], model=""), invalid, "batch.model is required")
    await expect(
        api, curves_batch([good], model="nope"), grpc.StatusCode.NOT_FOUND, "'nope' is not loaded"
    )
    await expect(
        api, curves_batch([good], version="7"), grpc.StatusCode.NOT_FOUND, "no version '7'"
    )
    await expect(api, curves_batch([good] * 9), grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 8")
    # Wrong length: rejected by a model whose manifest says so...
    await expect(api, curves_batch([good[:10]], model="strict"), invalid, "curve 0 has 10 samples")
    # ...and resampled by one that resamples (curves of mixed lengths in one batch).
    ok = await api.Predict(pb.PredictRequest(batch=curves_batch([good[:10], good, good * 3])))
    assert [s.label for s in ok.result.scores] == ["ok", "ok", "ok"]
    assert all(s.ok for s in ok.result.scores)
    assert list(ok.result.labels) == ["ok", "bad", "worse"]
    await expect(api, curves_batch([[1.0]]), invalid, "resampling needs 2")


async def test_stream_answers_errors_per_batch_and_stays_open(channel: grpc.aio.Channel) -> None:
    api = pb_grpc.InferenceServiceStub(channel)
    good = [float(i) for i in range(LENGTH)]
    bad = list(good)
    bad[5] = float("nan")
    requests = [
        pb.PredictStreamRequest(batch_id=10, batch=curves_batch([good, good])),
        pb.PredictStreamRequest(batch_id=11, batch=curves_batch([good, bad])),
        pb.PredictStreamRequest(batch_id=12, batch=curves_batch([good], model="nope")),
        pb.PredictStreamRequest(batch_id=13, batch=curves_batch([good] * 3)),
    ]

    async def send() -> AsyncIterator[pb.PredictStreamRequest]:
        for r in requests:
            yield r

    responses = {r.batch_id: r async for r in api.PredictStream(send())}
    assert sorted(responses) == [10, 11, 12, 13]
    assert responses[10].error_code == 0
    assert len(responses[10].result.scores) == 2
    assert responses[11].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "curve 1 has a NaN" in responses[11].error_message
    assert responses[12].error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert responses[13].error_code == 0
    assert len(responses[13].result.scores) == 3


async def test_model_infer_rejects_bad_tensors(channel: grpc.aio.Channel) -> None:
    api = oip_grpc.GRPCInferenceServiceStub(channel)
    tensor = oip.ModelInferRequest.InferInputTensor
    data = np.zeros((2, LENGTH), dtype="<f4").tobytes()

    async def expect_infer(
        request: oip.ModelInferRequest, code: grpc.StatusCode, text: str
    ) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.ModelInfer(request)
        assert err.value.code() == code
        assert text in (err.value.details() or ""), err.value.details()

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    fp64 = tensor(name="curve", datatype="FP64", shape=[2, LENGTH])
    await expect_infer(
        oip.ModelInferRequest(model_name="tiny", inputs=[fp64], raw_input_contents=[data]),
        invalid,
        "datatype FP64",
    )
    fp32 = tensor(name="curve", datatype="FP32", shape=[2, LENGTH])
    await expect_infer(
        oip.ModelInferRequest(model_name="tiny", inputs=[fp32], raw_input_contents=[data[:-4]]),
        invalid,
        "needs 128 bytes",
    )
    other = tensor(name="x", datatype="FP32", shape=[2, LENGTH])
    await expect_infer(
        oip.ModelInferRequest(model_name="tiny", inputs=[other], raw_input_contents=[data]),
        invalid,
        "unknown input 'x'",
    )
    flat = tensor(name="curve", datatype="FP32", shape=[2 * LENGTH])
    await expect_infer(
        oip.ModelInferRequest(model_name="tiny", inputs=[flat], raw_input_contents=[data]),
        invalid,
        "[batch, samples]",
    )
    await expect_infer(
        oip.ModelInferRequest(model_name="missing", inputs=[fp32], raw_input_contents=[data]),
        grpc.StatusCode.NOT_FOUND,
        "not loaded",
    )
    nan = np.zeros((2, LENGTH), dtype="<f4")
    nan[1, 4] = np.nan
    typed = tensor(
        name="curve",
        datatype="FP32",
        shape=[2, LENGTH],
        contents=oip.InferTensorContents(fp32_contents=nan.ravel().tolist()),
    )
    await expect_infer(
        oip.ModelInferRequest(model_name="tiny", inputs=[typed]), invalid, "curve 1 has a NaN"
    )
    # Typed contents work too; the answer comes back as raw FP32 bytes like Triton's.
    typed.contents.fp32_contents[:] = np.ones(2 * LENGTH, dtype=np.float32).tolist()
    response = await api.ModelInfer(oip.ModelInferRequest(model_name="tiny", inputs=[typed]))
    assert response.outputs[0].name == "probabilities"
    assert list(response.outputs[0].shape) == [2, 3]
    probabilities = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, 3)
    assert (probabilities.argmax(axis=1) == 0).all()


async def test_stream_packs_scores_when_asked(channel: grpc.aio.Channel) -> None:
    """Packed scores carry the same probabilities, labels and ok flags as Score messages."""
    api = pb_grpc.InferenceServiceStub(channel)
    rng = np.random.default_rng(3)
    curves = [rng.normal(size=LENGTH).tolist() for _ in range(5)]

    async def send() -> AsyncIterator[pb.PredictStreamRequest]:
        yield pb.PredictStreamRequest(batch_id=1, batch=curves_batch(curves))
        yield pb.PredictStreamRequest(batch_id=2, batch=curves_batch(curves), packed_scores=True)

    responses = {r.batch_id: r.result async for r in api.PredictStream(send())}
    plain, packed = responses[1], responses[2]
    assert not packed.scores
    assert list(packed.labels) == list(plain.labels)
    probabilities = np.frombuffer(packed.probabilities_f32, dtype="<f4").reshape(5, -1)
    assert probabilities.tolist() == [list(s.probabilities) for s in plain.scores]
    labels = list(packed.labels)
    for row, score in zip(probabilities, plain.scores, strict=True):
        top = labels[int(row.argmax())]
        assert top == score.label
        assert (top in packed.ok_labels) == score.ok
