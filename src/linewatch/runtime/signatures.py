"""Ed25519 signatures over artefacts: trusted public keys, canonical JSON, verification.

Used wherever linewatch checks something signed offline (firmware manifests, model
packages) and by the devices' side (the OTA simulator). A key ring maps a key id to an
ed25519 public key; several keys may be trusted at once, so a key can be rotated without
a flag day (sign with the new key, trust both, retire the old one).

Public keys are written as base64 of the raw 32 bytes, and a key ring as JSON in the form
``GET /v1/firmware/keys`` answers: ``{"keys": [{"id": "k1", "ed25519": "<base64>"}]}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from linewatch.runtime.errors import ConfigError

__all__ = ["KEY_ID_PATTERN", "KeyRing", "canonical_json", "decode_public_key"]

#: What a key id may look like.
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)


def canonical_json(value: Any) -> bytes:
    """The canonical JSON of ``value``: sorted keys, no spaces, UTF-8 (what is signed)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def decode_public_key(value: str) -> Ed25519PublicKey:
    """An ed25519 public key from base64 of its raw 32 bytes.

    Raises:
        ValueError: not base64 of 32 bytes.
    """
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
    if len(raw) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _decode_signature(signature_b64: str) -> bytes | None:
    try:
        raw = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


@dataclass(frozen=True)
class KeyRing:
    """Trusted ed25519 public keys by key id."""

    keys: Mapping[str, Ed25519PublicKey]

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    @classmethod
    def from_config(cls, keys: Mapping[str, str], file: Path | None = None) -> KeyRing:
        """Keys from configuration (id → base64) plus a key-ring JSON file, if given.

        Raises:
            ConfigError: a bad key id or key, an unreadable or malformed file.
        """
        entries = dict(keys)
        if file is not None:
            for key_id, value in _read_ring(file).items():
                entries.setdefault(key_id, value)
        ring: dict[str, Ed25519PublicKey] = {}
        for key_id, value in entries.items():
            if not _KEY_ID.match(key_id):
                raise ConfigError(f"trusted key id {key_id!r}: 1..64 letters, digits, . _ -")
            try:
                ring[key_id] = decode_public_key(value)
            except ValueError as exc:
                raise ConfigError(f"trusted key {key_id!r}: {exc}") from exc
        return cls(ring)

    def verify(self, message: bytes, signature_b64: str) -> str | None:
        """The id of the trusted key that made ``signature_b64`` over ``message``, or None."""
        signature = _decode_signature(signature_b64)
        if signature is None:
            return None
        for key_id, key in self.keys.items():
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            return key_id
        return None


def _read_ring(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"key ring {path}: cannot be read as JSON") from exc
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f'key ring {path}: expected {{"keys": [{{"id", "ed25519"}}]}}')
    out: dict[str, str] = {}
    for item in items:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and isinstance(item.get("ed25519"), str)
        ):
            raise ConfigError(f'key ring {path}: every key needs "id" and "ed25519" strings')
        out[item["id"]] = item["ed25519"]
    return out
