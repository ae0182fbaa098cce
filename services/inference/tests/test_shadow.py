"""A shadow version scores the same inputs; only agreement is reported, never its scores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import LENGTH, manifest_dict, onnx_bytes, write_package
from linewatch_dev.testing import operator_channel

from .conftest import StartServer


async def wait_compared(api: pb_grpc.InferenceServiceStub, n: int) -> pb.GetShadowStatsResponse:
    async with asyncio.timeout(10):
        while True:
            stats: pb.GetShadowStatsResponse = await api.GetShadowStats(
                pb.GetShadowStatsRequest(name="tiny")
            )
            if stats.compared >= n:
                return stats
            await asyncio.sleep(0.01)


async def test_shadow_agreement(model_dir: Path, start_server: StartServer) -> None:
    # Version 2 disagrees with 1 on every curve; version 3 has 1's weights.
    write_package(model_dir, onnx_bytes(bias=(0.0, 3.0, 0.0)), manifest_dict(version="2"))
    write_package(model_dir, onnx_bytes(), manifest_dict(version="3"))
    _, port = await start_server(model_dir)
    curves = np.random.default_rng(5).standard_normal((5, LENGTH)).astype("<f4").tobytes()
    request = pb.PredictRequest(
        batch=pb.CurveBatch(model="tiny", version="1", samples_f32=curves, lengths=[LENGTH] * 5)
    )
    async with operator_channel(f"127.0.0.1:{port}") as ch:
        api = pb_grpc.InferenceServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.SetShadow(pb.SetShadowRequest(name="tiny", shadow_version="9"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        attached = await api.SetShadow(pb.SetShadowRequest(name="tiny", shadow_version="2"))
        assert attached.model.shadow_version == "2"
        for _ in range(4):
            response = await api.Predict(request)
            # Callers get the primary's answer, never the shadow's.
            assert response.result.version == "1"
            assert {s.label for s in response.result.scores} == {"ok"}
        stats = await wait_compared(api, 20)
        assert (stats.version, stats.shadow_version) == ("1", "2")
        assert (stats.compared, stats.agreed, stats.agreement_rate) == (20, 0, 0.0)

        await api.SetShadow(pb.SetShadowRequest(name="tiny", shadow_version="3"))
        for _ in range(2):
            await api.Predict(request)
        stats = await wait_compared(api, 10)
        assert (stats.shadow_version, stats.compared, stats.agreed) == ("3", 10, 10)
        assert stats.agreement_rate == 1.0

        detached = await api.SetShadow(pb.SetShadowRequest(name="tiny", shadow_version=""))
        assert detached.model.shadow_version == ""
        await api.Predict(request)
        stats = await api.GetShadowStats(pb.GetShadowStatsRequest(name="tiny"))
        assert (stats.shadow_version, stats.compared) == ("", 0)
