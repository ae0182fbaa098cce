"""Every sync method needs a token (found by server reflection)."""

from __future__ import annotations

from linewatch_dev.sync_testing import StartSync
from linewatch_dev.testing import assert_every_method_guarded


async def test_every_sync_method_refuses_missing_and_wrong_tokens(start_sync: StartSync) -> None:
    svc = await start_sync()
    checked = await assert_every_method_guarded(f"127.0.0.1:{svc.port}")
    assert "/linewatch.v1.SyncService/EnqueueUrls" in checked
