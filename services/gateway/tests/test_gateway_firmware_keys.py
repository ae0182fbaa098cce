"""Firmware manifests over REST: published keys, hardware, offline signatures (SPEC Security)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linewatch.runtime.signatures import KeyRing


async def test_manifest_is_signed_by_a_published_key(
    client: httpx.AsyncClient, write_headers: dict[str, str]
) -> None:
    keys = await client.get("/v1/firmware/keys")  # public: no token
    assert keys.status_code == 200, keys.text
    published = {k["id"]: k["ed25519"] for k in keys.json()["keys"]}
    assert len(published) == 1
    assert all(len(base64.b64decode(v)) == 32 for v in published.values())
    made = await client.post(
        "/v1/firmware",
        files=[
            ("version", (None, b"4.2.0")),
            ("product", (None, b"press")),
            ("hardware", (None, b"rev-c, rev-b")),
            ("security_counter", (None, b"3")),
            ("file", ("fw.bin", os.urandom(3000))),
        ],
        headers=write_headers,
    )
    assert made.status_code == 201, made.text
    fw = made.json()
    assert fw["hardware"] == ["rev-b", "rev-c"]
    manifest = json.loads(fw["manifest"])
    assert manifest == {"product": "press", "hardware": ["rev-b", "rev-c"], "version": "4.2.0",
                        "sha256": fw["sha256"], "security_counter": 3}  # fmt: skip
    ring = KeyRing.from_config(published)
    assert ring.verify(fw["manifest"].encode(), fw["manifest_signature"]) == fw["key_id"]
    # a device would refuse the same signature over another manifest
    tampered = dict(manifest, hardware=[])
    tampered_json = json.dumps(tampered, sort_keys=True, separators=(",", ":")).encode()
    assert ring.verify(tampered_json, fw["manifest_signature"]) is None

    rollout = await client.post(
        "/v1/ota/rollouts",
        json={"firmware_id": fw["id"], "devices": ["gw-d1"], "allow_downgrade": True},
        headers=write_headers,
    )
    assert rollout.status_code == 201, rollout.text
    assert rollout.json()["allow_downgrade"] is True


async def test_offline_signature_by_an_unknown_key_is_refused(
    client: httpx.AsyncClient, write_headers: dict[str, str]
) -> None:
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(b"anything")).decode()
    for signature, status in ((forged, 400), ("not base64!", 400)):
        refused = await client.post(
            "/v1/firmware",
            files=[
                ("version", (None, b"4.3.0")),
                ("signature", (None, signature.encode())),
                ("file", ("fw.bin", b"x" * 100)),
            ],
            headers=write_headers,
        )
        assert refused.status_code == status, refused.text
        assert "signature" in refused.json()["error"]["message"]
    listing = (await client.get("/v1/firmware")).json()
    assert all(f["version"] != "4.3.0" for f in listing["items"])


async def test_devices_read_the_keys_from_the_running_gateway(live: Any) -> None:
    from linewatch_dev.ota_simulator import fetch_published_keys, fetch_signing_keys
    from linewatch_dev.testing import TEST_TOKEN

    published = await fetch_published_keys(live.url)
    assert published
    assert published == await fetch_signing_keys(live.stack.addrs["ota"], token=TEST_TOKEN)
