"""The service's ed25519 signing key: loaded from PEM, generated once when absent.

Each firmware image is signed over its sha256 hex string (the UTF-8 bytes of the 64
lowercase hex digits); devices check the signature with the public key from
``GetSigningKey`` before they install.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from linewatch.runtime.errors import ConfigError

__all__ = ["SigningKey", "verify_signature"]


class SigningKey:
    """An ed25519 private key and the signatures it makes."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        #: base64 of the raw 32-byte public key.
        self.public_key_b64 = base64.b64encode(raw).decode("ascii")

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
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
        return cls(key)

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
        """base64 ed25519 signature over the sha256 hex string."""
        return base64.b64encode(self._key.sign(sha256_hex.encode("ascii"))).decode("ascii")


def verify_signature(public_key_b64: str, sha256_hex: str, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the key's signature over ``sha256_hex``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64, validate=True), sha256_hex.encode("ascii"))
    except (InvalidSignature, ValueError):
        return False
    return True
