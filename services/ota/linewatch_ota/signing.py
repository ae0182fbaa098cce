"""Firmware signatures: the manifest, the service's own key, and the keys devices trust.

Each image has a **manifest** (product, hardware list, version, sha256, security counter);
its signature is ed25519 over the manifest's canonical JSON (sorted keys, no spaces,
UTF-8; :func:`~linewatch.runtime.signatures.canonical_json`). It is made either

- **offline**: the upload carries ``signature``, which must verify with one of the
  trusted keys (``trusted_keys`` / ``trusted_keys_file``, a key ring as
  ``GET /v1/firmware/keys`` prints it); the private key never reaches the service; or
- by the service's **own** key (``own_signing_key``, the default): a PEM file, e.g. a
  mounted Secret, generated once when absent; it has a key id.

Rotation: give the service a new own key (or sign offline with a new key) and keep the
old public key in ``trusted_keys`` while devices still hold images signed with it; every
key in :meth:`FirmwareKeys.published` is offered to devices. Old devices still get the
legacy ``signature`` over the sha256 hex string, made by the own key when there is one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from linewatch.runtime.errors import ConfigError
from linewatch.runtime.signatures import KeyRing, canonical_json

__all__ = ["FirmwareKeys", "SigningKey", "firmware_manifest", "verify_signature"]


def firmware_manifest(
    *, product: str, hardware: list[str], version: str, sha256: str, security_counter: int
) -> dict[str, object]:
    """The manifest of an image: what its signature covers."""
    return {
        "product": product,
        "hardware": list(hardware),
        "version": version,
        "sha256": sha256,
        "security_counter": security_counter,
    }


class SigningKey:
    """An ed25519 private key and the signatures it makes."""

    def __init__(self, key: Ed25519PrivateKey, key_id: str = "") -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        #: base64 of the raw 32-byte public key.
        self.public_key_b64 = base64.b64encode(raw).decode("ascii")
        #: The key's id (default: ``ota-`` and the start of the public key's sha256).
        self.key_id = key_id or f"ota-{hashlib.sha256(raw).hexdigest()[:12]}"

    @classmethod
    def load_or_create(cls, path: Path, key_id: str = "") -> SigningKey:
        """Load the PEM key at ``path``; create it (mode 0600, atomically) when absent.

        Raises:
            ConfigError: the file exists but is not an unencrypted ed25519 PEM key.
        """
        if not path.exists():
            cls._create(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"signing_key_path {path}: not an unencrypted PEM key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"signing_key_path {path}: not an ed25519 key")
        return cls(key, key_id)

    @staticmethod
    def _create(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            # link() fails when another process created the key first: theirs wins.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def sign_sha256(self, sha256_hex: str) -> str:
        """base64 ed25519 signature over the sha256 hex string (the legacy signature)."""
        return self.sign(sha256_hex.encode("ascii"))

    def public_key(self) -> Ed25519PublicKey:
        """The public half."""
        return self._key.public_key()

    def sign(self, message: bytes) -> str:
        """base64 ed25519 signature over ``message``."""
        return base64.b64encode(self._key.sign(message)).decode("ascii")


@dataclass(frozen=True)
class FirmwareKeys:
    """The own signer (optional) and the offline keys uploads may be signed with."""

    own: SigningKey | None
    trusted: KeyRing

    @classmethod
    def from_config(
        cls, own: SigningKey | None, trusted_keys: Mapping[str, str], trusted_file: Path | None
    ) -> FirmwareKeys:
        """Raises ConfigError for bad keys, or when there is no key at all."""
        ring = KeyRing.from_config(trusted_keys, trusted_file)
        if own is None and not len(ring):
            raise ConfigError("own_signing_key is off and no trusted key is configured")
        if own is not None and own.key_id in ring:
            raise ConfigError(f"trusted key id {own.key_id!r} is also the own key's id")
        return cls(own=own, trusted=ring)

    def published(self) -> list[tuple[str, str]]:
        """(key id, base64 public key) of every key devices should trust, own key first."""
        keys = [(self.own.key_id, self.own.public_key_b64)] if self.own else []
        for key_id, key in self.trusted.keys.items():
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            keys.append((key_id, base64.b64encode(raw).decode("ascii")))
        return keys

    def verify_manifest(self, manifest: Mapping[str, object], signature_b64: str) -> str | None:
        """The id of the trusted (or own) key that signed ``manifest``, or None."""
        ring = KeyRing(
            {
                **({self.own.key_id: self.own.public_key()} if self.own else {}),
                **self.trusted.keys,
            }
        )
        return ring.verify(canonical_json(dict(manifest)), signature_b64)

    def sign_manifest(self, manifest: Mapping[str, object]) -> tuple[str, str] | None:
        """(key id, signature) by the own key, or None without one."""
        if self.own is None:
            return None
        return self.own.key_id, self.own.sign(canonical_json(dict(manifest)))


def verify_signature(public_key_b64: str, sha256_hex: str, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the key's signature over ``sha256_hex``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64, validate=True), sha256_hex.encode("ascii"))
    except (InvalidSignature, ValueError):
        return False
    return True
