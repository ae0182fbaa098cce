"""Key rings and canonical JSON: what signed artefacts are checked with."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linewatch.runtime.errors import ConfigError
from linewatch.runtime.signatures import KeyRing, canonical_json


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def test_canonical_json_is_sorted_compact_utf8() -> None:
    value = {"version": "1.0", "hardware": ["rev-ü"], "a": 1}
    assert canonical_json(value) == '{"a":1,"hardware":["rev-ü"],"version":"1.0"}'.encode()
    with pytest.raises(ValueError, match="Out of range"):
        canonical_json({"x": float("nan")})


def test_key_ring_names_the_key_that_signed(tmp_path: Path) -> None:
    old, new, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    ring_file = tmp_path / "ring.json"
    ring_file.write_text(json.dumps({"keys": [{"id": "old", "ed25519": public_b64(old)}]}))
    ring = KeyRing.from_config({"new": public_b64(new)}, ring_file)
    assert sorted(ring) == ["new", "old"]
    message = b"manifest"
    for key, key_id in ((old, "old"), (new, "new")):
        assert ring.verify(message, base64.b64encode(key.sign(message)).decode()) == key_id
    assert ring.verify(message, base64.b64encode(stranger.sign(message)).decode()) is None
    assert ring.verify(b"other", base64.b64encode(new.sign(message)).decode()) is None
    assert ring.verify(message, "not base64!") is None
    assert ring.verify(message, base64.b64encode(b"short").decode()) is None


@pytest.mark.parametrize(
    ("keys", "ring", "message"),
    [
        ({"bad id!": "AAAA"}, None, "trusted key id"),
        ({"k": "AAAA"}, None, "32 bytes"),
        ({"k": "***"}, None, "not base64"),
        ({}, '{"keys": {}}', "expected"),
        ({}, '{"keys": [{"id": "k"}]}', '"id" and "ed25519"'),
        ({}, "not json", "cannot be read"),
    ],
)
def test_bad_keys_are_config_errors(
    tmp_path: Path, keys: dict[str, str], ring: str | None, message: str
) -> None:
    path = None
    if ring is not None:
        path = tmp_path / "ring.json"
        path.write_text(ring)
    with pytest.raises(ConfigError, match=message):
        KeyRing.from_config(keys, path)
