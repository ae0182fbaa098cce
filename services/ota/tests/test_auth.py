"""Every OTA method, DeviceService included, needs a token (found by server reflection);
ingest's role may send device commands (alarms that act) and nothing else here."""

from __future__ import annotations

from pathlib import Path

import grpc
from pydantic import SecretStr

from linewatch.runtime.config import GrpcAuthConfig, GrpcCaller
from linewatch_dev.ota_testing import OtaRunner
from linewatch_dev.testing import TEST_TOKEN, assert_every_method_guarded, call_code, secured_grpc

INGEST_TOKEN = "ingest-test-token-0123456789"


async def test_every_ota_method_refuses_missing_and_wrong_tokens(ota: OtaRunner) -> None:
    checked = await assert_every_method_guarded(f"127.0.0.1:{ota.grpc_port}")
    assert "/linewatch.v1.OtaService/CreateRollout" in checked
    assert "/linewatch.v1.OtaService/UploadFirmware" in checked
    for method in ("SendCommand", "CancelCommand", "ListDevices", "StreamCommandEvents"):
        assert f"/linewatch.v1.DeviceService/{method}" in checked


async def test_ingest_role_may_send_device_commands_only(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> None:
    runner = OtaRunner(
        tmp_path=tmp_path, database_url=database_url, mqtt_url=mqtt_url, topic_root=topic_prefix
    )
    callers = [
        GrpcCaller(name="test", role="operator", token=SecretStr(TEST_TOKEN)),
        GrpcCaller(name="ingest", role="ingest", token=SecretStr(INGEST_TOKEN)),
    ]
    grpc_config = secured_grpc(
        host="127.0.0.1", port=runner.grpc_port, grace_s=0.5, auth=GrpcAuthConfig(callers=callers)
    )
    runner.config = runner.config.model_copy(update={"grpc": grpc_config})
    await runner.start()
    try:
        target = f"127.0.0.1:{runner.grpc_port}"
        send = ("/linewatch.v1.DeviceService/SendCommand", False, False)
        code = await call_code(target, send, INGEST_TOKEN)
        assert code not in {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
        for name in ("CancelCommand", "ListCommands", "GetDevice"):
            method = (f"/linewatch.v1.DeviceService/{name}", False, False)
            assert (
                await call_code(target, method, INGEST_TOKEN) == grpc.StatusCode.PERMISSION_DENIED
            )
        rollout = ("/linewatch.v1.OtaService/CreateRollout", False, False)
        assert await call_code(target, rollout, INGEST_TOKEN) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await runner.close()
