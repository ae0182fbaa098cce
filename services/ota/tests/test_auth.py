"""Every OTA method needs a token (found by server reflection)."""

from __future__ import annotations

from linewatch_dev.ota_testing import OtaRunner
from linewatch_dev.testing import assert_every_method_guarded


async def test_every_ota_method_refuses_missing_and_wrong_tokens(ota: OtaRunner) -> None:
    checked = await assert_every_method_guarded(f"127.0.0.1:{ota.grpc_port}")
    assert "/linewatch.v1.OtaService/CreateRollout" in checked
    assert "/linewatch.v1.OtaService/UploadFirmware" in checked
