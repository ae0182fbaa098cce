"""Model package signatures: ed25519 over the package's sha256, by keys the deployment trusts.

A package loaded by URL may come with ``signature``: base64 ed25519 over the UTF-8 bytes of
the package file's sha256 as 64 lowercase hex digits (the same convention as firmware
images). The inference configuration names the trusted public keys (``trusted_keys``: key
id → base64 raw key, and/or ``trusted_keys_file``, a ``{"keys": [{"id", "ed25519"}]}``
JSON key ring). With ``require_signatures`` (the Helm chart sets it) an unsigned package is
refused; a signature that no trusted key made is refused always. A refused package
changes nothing: the check runs on the staged download, before anything is swapped in.

Packages in ``model_dir`` are part of the deployment itself (the image or its volume) and
are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.signatures import KeyRing
from linewatch_inference.config import InferenceConfig

__all__ = ["PackageVerifier"]


@dataclass(frozen=True)
class PackageVerifier:
    """Checks the signature of a downloaded package against the trusted keys."""

    keys: KeyRing
    required: bool

    @classmethod
    def from_config(cls, config: InferenceConfig) -> PackageVerifier:
        """The verifier the configuration describes.

        Raises:
            ConfigError: a bad key, or signatures required with no key trusted.
        """
        keys = KeyRing.from_config(config.trusted_keys, config.trusted_keys_file)
        return cls(keys=keys, required=config.require_signatures)

    def check(self, sha256_hex: str, signature_b64: str) -> str:
        """The id of the key that signed the package ("" when unsigned and allowed).

        Raises:
            InvalidArgument: unsigned while signatures are required, or a signature that
                no trusted key made.
        """
        if self.required and not len(self.keys):
            raise InvalidArgument(
                "this deployment requires signed model packages and trusts no key: "
                "models load only from model_dir"
            )
        if not signature_b64.strip():
            if self.required:
                raise InvalidArgument(
                    "this deployment requires signed model packages: give `signature` "
                    "(base64 ed25519 over the package sha256)"
                )
            return ""
        key_id = self.keys.verify(sha256_hex.encode("ascii"), signature_b64)
        if key_id is None:
            raise InvalidArgument("the package signature does not verify with any trusted key")
        return key_id
