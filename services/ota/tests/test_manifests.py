"""Signed manifests, offline signing, and the hardware / downgrade guard (SPEC Security)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from linewatch_ota.signing import firmware_manifest

from linewatch.runtime.signatures import canonical_json
from linewatch.v1 import ota_pb2
from linewatch_dev.ota_simulator import SimulatedFleet
from linewatch_dev.ota_testing import OtaRunner, until

U = ota_pb2.UpdateState
COMPLETED = ota_pb2.ROLLOUT_STATE_COMPLETED


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


async def only_update(ota: OtaRunner, device: str, rollout_id: str) -> ota_pb2.DeviceUpdate:
    (update,) = [u for u in await ota.updates(device) if u.rollout_id == rollout_id]
    assert isinstance(update, ota_pb2.DeviceUpdate)
    return update


async def settled(ota: OtaRunner, device: str, rollout_id: str) -> ota_pb2.DeviceUpdate:
    async def check() -> bool:
        update = await only_update(ota, device, rollout_id)
        return update.state in {U.UPDATE_STATE_SUCCEEDED, U.UPDATE_STATE_FAILED,
                                U.UPDATE_STATE_CANCELLED}  # fmt: skip

    await until(check, what=f"{device} settled")
    return await only_update(ota, device, rollout_id)


async def test_devices_verify_the_manifest_with_the_published_key(
    ota: OtaRunner, fleets: list[SimulatedFleet]
) -> None:
    fw = await ota.upload(os.urandom(20_000), version="1.3.0", hardware=("rev-b",),
                          security_counter=7)  # fmt: skip
    assert list(fw.hardware) == ["rev-b"]
    assert fw.security_counter == 7
    keys = await ota.published_keys()
    assert list(keys) == [fw.key_id]
    # the manifest in the catalog is what the signature covers
    expected = firmware_manifest(product="press", hardware=["rev-b"], version="1.3.0",
                                 sha256=fw.sha256, security_counter=7)  # fmt: skip
    assert fw.manifest == canonical_json(expected).decode()
    good = await ota.fleet(["mf-good"], hw="rev-b")
    forged = await ota.fleet(["mf-forged"], hw="rev-b",
                             keys={"other": public_b64(Ed25519PrivateKey.generate())})  # fmt: skip
    fleets.extend([good, forged])
    await until(lambda: ota.device_known("mf-good"), what="device request recorded")
    await until(lambda: ota.device_known("mf-forged"), what="device request recorded")
    rollout = await ota.rollout(fw.id, ["mf-good", "mf-forged"], error_threshold=1.0)
    assert (await settled(ota, "mf-good", rollout.id)).state == U.UPDATE_STATE_SUCCEEDED
    assert good.version_of("mf-good") == "1.3.0"
    refused = await settled(ota, "mf-forged", rollout.id)
    assert refused.state == U.UPDATE_STATE_FAILED
    assert "manifest signature does not verify" in refused.reason
    assert forged.version_of("mf-forged") == "1.0.0"
    assert forged.downloads == 0


async def test_downgrade_and_other_hardware_are_refused_visibly(
    ota: OtaRunner, fleets: list[SimulatedFleet]
) -> None:
    old = await ota.upload(os.urandom(10_000), version="6.6.6")
    other_hw = await ota.upload(os.urandom(10_000), version="9.1.0", hardware=("rev-a",))
    fleet = await ota.fleet(["dg-1"], current_version="9.0.0", hw="rev-b")
    fleets.append(fleet)
    await until(lambda: ota.device_known("dg-1"), what="device request recorded")

    downgrade = await ota.rollout(old.id, ["dg-1"])
    refused = await settled(ota, "dg-1", downgrade.id)
    assert refused.state == U.UPDATE_STATE_CANCELLED
    assert refused.reason.startswith("refused: downgrade from 9.0.0 to 6.6.6")
    assert (await ota.wait_rollout(downgrade.id, COMPLETED)).counts["cancelled"] == 1

    hardware = await ota.rollout(other_hw.id, ["dg-1"])
    refused = await settled(ota, "dg-1", hardware.id)
    assert refused.state == U.UPDATE_STATE_CANCELLED
    assert refused.reason == "refused: image is for hardware rev-a, the device is rev-b"
    assert fleet.version_of("dg-1") == "9.0.0"
    assert fleet.downloads == 0

    allowed = await ota.rollout(old.id, ["dg-1"], allow_downgrade=True)
    assert allowed.allow_downgrade
    assert (await settled(ota, "dg-1", allowed.id)).state == U.UPDATE_STATE_SUCCEEDED
    assert fleet.version_of("dg-1") == "6.6.6"


async def test_hardware_specific_image_waits_for_an_unknown_device(ota: OtaRunner) -> None:
    fw = await ota.upload(os.urandom(1000), version="2.0.0", hardware=("rev-a", "rev-c"))
    rollout = await ota.rollout(fw.id, ["never-seen"])

    async def waiting() -> bool:
        update = await only_update(ota, "never-seen", rollout.id)
        return update.state == U.UPDATE_STATE_QUEUED and "waiting" in update.reason

    await until(waiting, what="a reason on the queued update")
    update = await only_update(ota, "never-seen", rollout.id)
    assert update.reason == (
        "waiting for the device to report its hardware (image is for rev-a, rev-c)"
    )


@pytest.fixture
async def offline(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> AsyncIterator[tuple[OtaRunner, Ed25519PrivateKey]]:
    """An OTA service with no key of its own: it trusts one offline signer."""
    signer = Ed25519PrivateKey.generate()
    runner = OtaRunner(
        tmp_path=tmp_path,
        database_url=database_url,
        mqtt_url=mqtt_url,
        topic_root=topic_prefix,
        own_signing_key=False,
        trusted_keys={"release-2026": public_b64(signer)},
    )
    await runner.start()
    try:
        yield runner, signer
    finally:
        await runner.close()


async def test_offline_signed_upload(
    offline: tuple[OtaRunner, Ed25519PrivateKey], fleets: list[SimulatedFleet]
) -> None:
    import hashlib

    ota, signer = offline
    data = os.urandom(5000)
    sha = hashlib.sha256(data).hexdigest()
    manifest = firmware_manifest(
        product="press", hardware=[], version="2.0.0", sha256=sha, security_counter=1
    )
    signature = base64.b64encode(signer.sign(canonical_json(manifest))).decode()
    wrong = base64.b64encode(Ed25519PrivateKey.generate().sign(canonical_json(manifest))).decode()
    for bad, why in (("", "no signing key of its own"), (wrong, "does not verify")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ota.upload(data, version="2.0.0", signature=bad, security_counter=1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why in (err.value.details() or "")
    # signed over another version: refused too
    with pytest.raises(grpc.aio.AioRpcError):
        await ota.upload(data, version="2.0.1", signature=signature, security_counter=1)
    fw = await ota.upload(data, version="2.0.0", signature=signature, security_counter=1)
    assert (fw.key_id, fw.manifest_signature, fw.signature) == ("release-2026", signature, "")
    keys = await ota.stub.ListSigningKeys(ota_pb2.ListSigningKeysRequest())
    assert [(k.id, k.ed25519) for k in keys.keys] == [("release-2026", public_b64(signer))]
    fleet = SimulatedFleet(
        mqtt_url=ota.mqtt_url,
        device_ids=["off-1"],
        keys={k.id: k.ed25519 for k in keys.keys},
        topic_root=ota.topic_root,
    )
    await fleet.start()
    fleets.append(fleet)
    rollout = await ota.rollout(fw.id, ["off-1"])
    assert (await settled(ota, "off-1", rollout.id)).state == U.UPDATE_STATE_SUCCEEDED
    assert fleet.version_of("off-1") == "2.0.0"


async def test_images_from_before_manifests_get_signed_at_start(ota: OtaRunner) -> None:
    import sqlalchemy as sa
    from linewatch_ota.store import FirmwareRow

    from linewatch.runtime.db import Database

    fw = await ota.upload(os.urandom(1000), version="0.1.0")
    await ota.stop()
    db = Database(ota.config.database_url)
    try:
        async with db.connect() as conn:
            table = FirmwareRow.__table__  # type: ignore[attr-defined]
            await conn.execute(
                sa.update(table).values(manifest_signature="", key_id="").where(table.c.id == fw.id)
            )
            await conn.commit()
    finally:
        await db.close()
    await ota.start()
    again = (await ota.stub.GetFirmware(ota_pb2.GetFirmwareRequest(id=fw.id))).firmware
    assert again.key_id == fw.key_id
    assert again.manifest_signature == fw.manifest_signature  # ed25519 is deterministic
