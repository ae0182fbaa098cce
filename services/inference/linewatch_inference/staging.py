"""Staging model packages: a package found in ``model_dir`` or downloaded by URL becomes a
verified package folder (:class:`Staged`) the registry can open.

A download goes through :class:`linewatch.runtime.fetch.SafeFetcher` (allowed networks,
size and time limits) to a temporary file; its checksum (sha256, or the legacy base64
md5) and signature (:mod:`.signing`) are verified before it is unpacked (a ``.zip``
package, or a bare ``.onnx`` with its manifest) into ``state_dir/packages/<name>/
<version>-<sha>``. Half-staged folders (``.staging-*``, ``.dir-*``) are removed on start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from linewatch.runtime.errors import FailedPrecondition, InvalidArgument, LinewatchError
from linewatch.runtime.fetch import FetchError, FetchTooLarge, SafeFetcher
from linewatch_inference.config import InferenceConfig
from linewatch_inference.package import (
    MANIFEST_NAME,
    Manifest,
    file_digests,
    parse_manifest,
    read_zip_package,
)
from linewatch_inference.signing import PackageVerifier

__all__ = ["Staged", "Stager", "check_model_url"]

log = logging.getLogger("linewatch_inference.registry")


@dataclass
class Staged:
    """A verified package folder, ready to open."""

    manifest: Manifest
    package_dir: Path
    sha256: str
    source_url: str = ""
    blob: bytes | None = None
    """The file loaded by URL, as verified (what the registry database keeps)."""
    bare_manifest: str = ""
    signature: str = ""


def _mkstemp(folder: Path) -> tuple[int, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=folder, suffix=".part")


class Stager:
    """Finds, fetches, verifies and unpacks packages under ``state_dir``."""

    def __init__(
        self, config: InferenceConfig, *, state_dir: Path, verifier: PackageVerifier
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.verifier = verifier

    @property
    def _max_bytes(self) -> int:
        return self.config.max_package_mb * 1024 * 1024

    def clean(self) -> None:
        """Remove what an interrupted staging left behind (blocking)."""
        packages = self.state_dir / "packages"
        packages.mkdir(parents=True, exist_ok=True)
        for leftover in [*packages.glob(".staging-*"), *packages.glob(".dir-*")]:
            shutil.rmtree(leftover, ignore_errors=True)

    def scan_model_dir(self) -> list[Staged | tuple[Path, str]]:
        """Every package in ``model_dir``: staged, or (path, why not) (blocking)."""
        root = self.config.model_dir
        if not root.is_dir():
            log.warning("model_dir %s does not exist; no models loaded at start", root)
            return []
        out: list[Staged | tuple[Path, str]] = []
        for path in sorted(root.rglob(MANIFEST_NAME)):
            try:
                manifest = parse_manifest(path.read_bytes(), source=str(path))
                model = path.parent / manifest.file
                if not model.is_file():
                    raise InvalidArgument(f"{path}: names {manifest.file}, which is not there")
                sha, _ = file_digests(model)
                if manifest.sha256 and manifest.sha256 != sha:
                    raise InvalidArgument(
                        f"{model}: sha256 {sha} does not match the manifest's {manifest.sha256}"
                    )
                out.append(Staged(manifest, path.parent, sha))
            except LinewatchError as exc:
                out.append((path, exc.message))
        for path in sorted(root.rglob("*.zip")):
            dest = self.state_dir / "packages" / f".dir-{uuid.uuid4().hex}"
            try:
                sha, _ = file_digests(path)
                manifest = read_zip_package(path, dest, max_bytes=self._max_bytes)
                out.append(Staged(manifest, dest, sha, source_url=path.resolve().as_uri()))
            except LinewatchError as exc:
                shutil.rmtree(dest, ignore_errors=True)
                out.append((path, exc.message))
        return out

    def discard(self, staged: Staged) -> None:
        """Remove a package extracted from a model_dir zip that will not be served."""
        if staged.package_dir.is_relative_to(self.state_dir):
            shutil.rmtree(staged.package_dir, ignore_errors=True)

    def from_blob(
        self, data: bytes, *, url: str, sha256: str, manifest: str, signature: str
    ) -> Staged:
        """Stage a package read from the registry database, verified again (blocking)."""
        downloads = self.state_dir / "downloads"
        fd, tmp_name = _mkstemp(downloads)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return self._stage(tmp, url, sha256, "", manifest, signature=signature)
        finally:
            tmp.unlink(missing_ok=True)

    async def fetch(
        self, url: str, *, sha256: str, md5_base64: str, manifest: str, signature: str
    ) -> Staged:
        """Check the request, download the package and stage it.

        Raises:
            InvalidArgument: Bad URL, missing or wrong checksum, bad manifest or signature.
            FailedPrecondition: The download failed.
        """
        if not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"url must be http:// or https://, got {url[:200]!r}")
        if not sha256 and not md5_base64:
            raise InvalidArgument("a checksum is required: sha256 (hex) or md5 (base64)")
        if sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
            raise InvalidArgument("sha256 must be 64 hex digits")
        downloads = self.state_dir / "downloads"
        fd, tmp_name = await asyncio.to_thread(_mkstemp, downloads)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                await self._download(url, out)
            stage = functools.partial(self._stage, signature=signature)
            return await asyncio.to_thread(stage, tmp, url, sha256, md5_base64, manifest)
        finally:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)

    def _stage(
        self,
        tmp: Path,
        url: str,
        sha256: str,
        md5_base64: str,
        manifest_text: str,
        *,
        signature: str,
    ) -> Staged:
        """Verify a downloaded file and turn it into a package folder (blocking)."""
        blob = tmp.read_bytes()
        got_sha, got_md5 = file_digests(tmp)
        # the digest of what was downloaded is not repeated: it would tell a caller
        # something about a response it may not see
        if sha256 and got_sha != sha256:
            raise InvalidArgument(f"checksum mismatch for {url}: the sha256 is not {sha256}")
        if md5_base64 and got_md5 != md5_base64:
            raise InvalidArgument(
                f"checksum mismatch for {url}: the md5 (base64) is not {md5_base64}"
            )
        self.verifier.check(got_sha, signature)
        staging = self.state_dir / "packages" / f".staging-{uuid.uuid4().hex}"
        try:
            bare = ""
            if zipfile.is_zipfile(tmp):
                manifest = read_zip_package(tmp, staging, max_bytes=self._max_bytes)
            else:
                if not manifest_text:
                    raise InvalidArgument(
                        "a bare .onnx needs its manifest (the `manifest` parameter); "
                        "or send a .zip package with manifest.yaml inside"
                    )
                manifest = parse_manifest(manifest_text, source="manifest parameter")
                bare = manifest_text
                staging.mkdir(parents=True)
                (staging / MANIFEST_NAME).write_text(manifest_text, encoding="utf-8")
                tmp.replace(staging / manifest.file)
            final = (
                self.state_dir / "packages" / manifest.name / f"{manifest.version}-{got_sha[:16]}"
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(staging, ignore_errors=True)
            else:
                staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Staged(
            manifest,
            final,
            got_sha,
            source_url=url,
            blob=blob,
            bare_manifest=bare,
            signature=signature,
        )

    async def _download(self, url: str, out: Any) -> None:
        check_model_url(url)
        try:
            async with SafeFetcher(
                allowed_networks=self.config.allowed_networks,
                connect_timeout_s=min(10.0, self.config.download_timeout_s),
                read_timeout_s=self.config.download_timeout_s,
                max_connections=1,
            ) as fetcher:
                await fetcher.download_to(
                    url,
                    out,
                    max_bytes=self._max_bytes,
                    total_timeout_s=self.config.download_timeout_s,
                )
        except FetchTooLarge as exc:
            raise InvalidArgument(
                f"{url}: larger than max_package_mb ({self.config.max_package_mb})"
            ) from exc
        except FetchError as exc:
            # The caller's URL cannot be fetched: the request cannot succeed as it is
            # (a 4xx for the gateway), this server is not the one unavailable.
            raise FailedPrecondition(f"download of {url} failed: {exc.message}") from exc


def check_model_url(url: str) -> None:
    """Refuse anything but an absolute http(s) URL with a host.

    Raises:
        InvalidArgument: the URL is malformed or of another scheme.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidArgument(f"model url {url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise InvalidArgument(f"model url {url!r}: only http:// and https:// URLs with a host")
