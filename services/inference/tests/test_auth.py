"""Every inference method needs a token; the ingest role may only score."""

from __future__ import annotations

from pathlib import Path

import grpc
from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from linewatch.runtime.config import GrpcAuthConfig, GrpcCaller
from linewatch_dev.testing import TEST_TOKEN, assert_every_method_guarded, call_code, secured_grpc

from .conftest import StartServer

INGEST = "ingest-only-token"
READER = "read-only-token"


async def test_every_method_refuses_missing_and_wrong_tokens(
    start_server: StartServer, model_dir: Path
) -> None:
    _, port = await start_server(model_dir)
    checked = await assert_every_method_guarded(f"127.0.0.1:{port}", TEST_TOKEN)
    assert "/linewatch.v1.InferenceService/LoadModel" in checked
    assert "/inference.GRPCInferenceService/ModelInfer" in checked


async def test_ingest_may_only_score(tmp_path: Path, model_dir: Path) -> None:
    auth = GrpcAuthConfig(
        callers=[
            GrpcCaller(name="ops", role="operator", token=SecretStr(TEST_TOKEN)),
            GrpcCaller(name="ingest", role="ingest", token=SecretStr(INGEST)),
            GrpcCaller(name="viewer", role="read-only", token=SecretStr(READER)),
        ]
    )
    config = InferenceConfig(
        grpc=secured_grpc(port=0, auth=auth), model_dir=model_dir, data_dir=tmp_path / "d"
    )
    server = InferenceServer(config, metrics=InferenceMetrics(CollectorRegistry()))
    port = await server.start()
    target = f"127.0.0.1:{port}"
    denied = grpc.StatusCode.PERMISSION_DENIED
    try:
        for method in ("LoadModel", "UnloadModel", "SetShadow", "ListModels"):
            name = (f"/linewatch.v1.InferenceService/{method}", False, False)
            assert await call_code(target, name, INGEST) == denied, method
        for name in (
            ("/inference.GRPCInferenceService/RepositoryModelLoad", False, False),
            ("/inference.GRPCInferenceService/RepositoryModelUnload", False, False),
        ):
            assert await call_code(target, name, INGEST) == denied
            assert await call_code(target, name, READER) == denied
        for name in (
            ("/linewatch.v1.InferenceService/Predict", False, False),
            ("/linewatch.v1.InferenceService/PredictStream", True, True),
            ("/inference.GRPCInferenceService/ModelInfer", False, False),
        ):
            assert await call_code(target, name, INGEST) not in {
                denied,
                grpc.StatusCode.UNAUTHENTICATED,
            }
        ok = await call_code(
            target, ("/linewatch.v1.InferenceService/ListModels", False, False), READER
        )
        assert ok == grpc.StatusCode.OK
        write = ("/linewatch.v1.InferenceService/LoadModel", False, False)
        assert await call_code(target, write, READER) == denied
    finally:
        await server.stop()
