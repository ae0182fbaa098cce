"""The offer guard on its own: hardware, downgrades, and versions in natural order."""

from __future__ import annotations

import json

import pytest
from linewatch_ota.guard import refusal, version_key
from linewatch_ota.store import DeviceRow, FirmwareRow


def fw(version: str, hardware: list[str] | None = None) -> FirmwareRow:
    return FirmwareRow(
        id="f", product="p", version=version, size=1, sha256="0" * 64, signature="",
        created_at=0.0, hardware_json=json.dumps(hardware or []),
    )  # fmt: skip


def device(version: str = "", hw: str = "") -> DeviceRow:
    return DeviceRow(device_id="d", current_version=version, hw=hw, updated_at=0.0)


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.9.0", "1.10.0"), ("1.9", "1.9.1"), ("0.9.9", "1.0"), ("2", "10"), ("1.0.0", "1.0.0a")],
)
def test_versions_compare_naturally(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)


def test_offer_rules() -> None:
    assert refusal(fw("1.3.0"), None, allow_downgrade=False) is None
    assert refusal(fw("1.3.0"), device("1.3.0"), allow_downgrade=False) is None
    down = refusal(fw("1.2.0"), device("1.10.0"), allow_downgrade=False)
    assert down is not None
    assert down.action == "cancel"
    assert "downgrade from 1.10.0 to 1.2.0" in down.reason
    assert refusal(fw("1.2.0"), device("1.10.0"), allow_downgrade=True) is None
    other = refusal(fw("2.0", ["rev-a"]), device("1.0", "rev-b"), allow_downgrade=True)
    assert other is not None
    assert other.action == "cancel"
    wait = refusal(fw("2.0", ["rev-a"]), device("1.0"), allow_downgrade=False)
    assert wait is not None
    assert wait.action == "wait"
    assert (
        refusal(fw("2.0", ["rev-a", "rev-b"]), device("1.0", "rev-b"), allow_downgrade=False)
        is None
    )
