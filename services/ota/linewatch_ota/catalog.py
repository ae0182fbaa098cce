"""The firmware catalog: streamed uploads stored content-addressed, signed, ranged reads.

An upload is written to a temporary file while its sha256 is computed, then renamed to
``firmware_dir/<sha256>`` (atomic; identical images share one file) and recorded in the
database. Nothing half-written is ever visible under a final name.

Its manifest (product, hardware, version, sha256, security counter) is signed: the
upload's offline ``signature`` must verify with a trusted key, or, without one, the
service signs with its own key (see :mod:`linewatch_ota.signing`). An upload whose
signature does not verify is refused and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from linewatch.runtime.db import Database
from linewatch.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from linewatch_ota.signing import FirmwareKeys, firmware_manifest
from linewatch_ota.store import ACTIVE_STATES, DeviceUpdateRow, FirmwareRow, RolloutRow

__all__ = ["Catalog", "manifest_of", "validate_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
READ_CHUNK = 256 * 1024


def validate_name(what: str, value: str, max_len: int) -> str:
    """``value`` stripped, or InvalidArgument naming ``what``."""
    value = value.strip()
    if not value or len(value) > max_len or not _NAME.match(value):
        raise InvalidArgument(
            f"{what} {value!r}: 1..{max_len} characters of letters, digits and . _ + ~ -"
        )
    return value


def manifest_of(fw: FirmwareRow) -> dict[str, object]:
    """The signed manifest of a stored image."""
    hardware = json.loads(fw.hardware_json or "[]")
    return firmware_manifest(
        product=fw.product,
        hardware=[str(h) for h in hardware] if isinstance(hardware, list) else [],
        version=fw.version,
        sha256=fw.sha256,
        security_counter=fw.security_counter,
    )


class Catalog:
    """Firmware images on disk plus their rows."""

    def __init__(
        self, *, db: Database, firmware_dir: Path, max_bytes: int, keys: FirmwareKeys
    ) -> None:
        self.db = db
        self.dir = firmware_dir
        self.max_bytes = max_bytes
        self.keys = keys
        self._tmp = firmware_dir / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, FirmwareRow] = {}

    def path_of(self, fw: FirmwareRow) -> Path:
        """Where the bytes of ``fw`` live."""
        return self.dir / fw.sha256

    async def upload(
        self,
        *,
        product: str,
        version: str,
        filename: str,
        chunks: AsyncIterator[bytes],
        hardware: list[str] | tuple[str, ...] = (),
        security_counter: int = 0,
        signature: str = "",
    ) -> FirmwareRow:
        """Store one image from ``chunks``.

        Args:
            hardware: the hardware revisions it is for (empty: any).
            security_counter: the anti-rollback counter in its manifest.
            signature: an offline signature over the manifest (base64 ed25519).

        Raises:
            InvalidArgument: bad product/version/filename/hardware, no bytes at all, a
                signature that no trusted key made, or none where the service has no
                own key.
            AlreadyExists: this product already has this version.
            ResourceExhausted: the image is larger than the configured limit.
        """
        product = validate_name("product", product or "default", 128)
        version = validate_name("version", version, 64)
        filename = os.path.basename(filename.strip())[:255]
        hw = sorted({validate_name("hardware", h, 64) for h in hardware if h.strip()})
        if len(hw) > 64:
            raise InvalidArgument("at most 64 hardware revisions per image")
        if not 0 <= security_counter < 2**63:
            raise InvalidArgument("security_counter must be within 0..2^63-1")
        if not signature.strip() and self.keys.own is None:
            raise InvalidArgument(
                "this service has no signing key of its own: upload with `signature`, "
                "the manifest signed offline by a trusted key"
            )
        await self._check_version_free(product, version)
        digest = hashlib.sha256()
        size = 0
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        fh: BinaryIO = await asyncio.to_thread(open, tmp, "wb")
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ResourceExhausted(
                            f"firmware larger than the limit of {self.max_bytes} bytes"
                        )
                    digest.update(chunk)
                    await asyncio.to_thread(fh.write, chunk)
                await asyncio.to_thread(_flush_sync, fh)
            finally:
                fh.close()
            if size == 0:
                raise InvalidArgument("firmware image is empty")
            sha = digest.hexdigest()
            manifest = firmware_manifest(
                product=product,
                hardware=hw,
                version=version,
                sha256=sha,
                security_counter=security_counter,
            )
            key_id, manifest_signature = self._sign(manifest, signature)
            final = self.dir / sha
            await asyncio.to_thread(os.replace, tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        row = FirmwareRow(
            id=uuid.uuid4().hex,
            product=product,
            version=version,
            size=size,
            sha256=sha,
            signature=self.keys.own.sign_sha256(sha) if self.keys.own else "",
            filename=filename,
            created_at=time.time(),
            hardware_json=json.dumps(hw),
            security_counter=security_counter,
            manifest_signature=manifest_signature,
            key_id=key_id,
        )
        try:
            async with self.db.session() as session:
                session.add(row)
        except IntegrityError as exc:
            await self._drop_blob_if_unused(sha)
            raise AlreadyExists(f"firmware {product} {version} exists already") from exc
        self._cache[row.id] = row
        return row

    def _sign(self, manifest: dict[str, object], signature: str) -> tuple[str, str]:
        """(key id, manifest signature): the offline one verified, or the own key's."""
        if signature.strip():
            key_id = self.keys.verify_manifest(manifest, signature)
            if key_id is None:
                raise InvalidArgument(
                    "signature: does not verify with any trusted key over this image's "
                    "manifest (canonical JSON of product, hardware, version, sha256, "
                    "security_counter)"
                )
            return key_id, signature.strip()
        signed = self.keys.sign_manifest(manifest)
        if signed is None:  # checked before the upload; kept for the type checker
            raise InvalidArgument("an offline signature is required")
        return signed

    async def sign_unsigned(self) -> int:
        """Sign the manifests of images stored before manifests were signed (own key).

        Returns how many were signed; without an own key, none (those images keep only
        their legacy signature until re-uploaded signed).
        """
        if self.keys.own is None:
            return 0
        async with self.db.session() as session:
            rows = await session.exec(
                select(FirmwareRow).where(FirmwareRow.manifest_signature == "").with_for_update()
            )
            unsigned = list(rows.all())
            for row in unsigned:
                row.key_id, row.manifest_signature = self._sign(manifest_of(row), "")
                session.add(row)
        self._cache.clear()
        return len(unsigned)

    async def _check_version_free(self, product: str, version: str) -> None:
        async with self.db.session() as session:
            found = await session.exec(
                select(FirmwareRow.id).where(
                    FirmwareRow.product == product, FirmwareRow.version == version
                )
            )
            if found.first() is not None:
                raise AlreadyExists(f"firmware {product} {version} exists already")

    async def get(self, firmware_id: str) -> FirmwareRow:
        """One image's row.

        Raises:
            NotFound: no such firmware.
        """
        cached = self._cache.get(firmware_id)
        if cached is not None:
            return cached
        async with self.db.session() as session:
            row = await session.get(FirmwareRow, firmware_id)
        if row is None:
            raise NotFound(f"firmware {firmware_id!r} not found")
        self._cache[firmware_id] = row
        return row

    async def list_firmware(self, *, offset: int, limit: int) -> list[FirmwareRow]:
        """Images, newest first."""
        async with self.db.session() as session:
            rows = await session.exec(
                select(FirmwareRow)
                .order_by(col(FirmwareRow.created_at).desc(), col(FirmwareRow.id))
                .offset(offset)
                .limit(limit)
            )
            return list(rows.all())

    async def delete(self, firmware_id: str) -> None:
        """Delete an image no rollout uses.

        Raises:
            NotFound: no such firmware.
            FailedPrecondition: a running or paused rollout, or an unfinished device
                update, uses it.
        """
        async with self.db.session() as session:
            row = await session.get(FirmwareRow, firmware_id, with_for_update=True)
            if row is None:
                raise NotFound(f"firmware {firmware_id!r} not found")
            users = await session.exec(
                select(RolloutRow.id).where(
                    RolloutRow.firmware_id == firmware_id,
                    col(RolloutRow.state).in_(("running", "paused")),
                )
            )
            rollout = users.first()
            if rollout is not None:
                raise FailedPrecondition(
                    f"firmware {firmware_id!r} is used by rollout {rollout}; cancel it first"
                )
            pending = await session.exec(
                select(DeviceUpdateRow.id).where(
                    DeviceUpdateRow.firmware_id == firmware_id,
                    col(DeviceUpdateRow.state).in_(("queued", *ACTIVE_STATES)),
                )
            )
            if pending.first() is not None:
                raise FailedPrecondition(f"firmware {firmware_id!r} has unfinished updates")
            await session.delete(row)
            sha = row.sha256
        self._cache.pop(firmware_id, None)
        await self._drop_blob_if_unused(sha)

    async def _drop_blob_if_unused(self, sha: str) -> None:
        async with self.db.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).where(col(FirmwareRow.sha256) == sha)
            )
        if not count:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread((self.dir / sha).unlink)

    async def read(self, firmware_id: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """The bytes ``[offset, offset+length)`` of an image (``length`` 0: to the end).

        Raises:
            NotFound: no such firmware.
            InvalidArgument: ``offset`` beyond the end.
        """
        fw = await self.get(firmware_id)
        if offset > fw.size or (offset == fw.size and fw.size > 0 and length > 0):
            raise InvalidArgument(f"offset {offset} beyond the image size {fw.size}")
        end = fw.size if length == 0 else min(fw.size, offset + length)
        return self._read_range(self.path_of(fw), offset, end)

    @staticmethod
    async def _read_range(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            fh: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"firmware file {path.name} is missing") from exc
        try:
            fh.seek(start)
            pos = start
            while pos < end:
                data = await asyncio.to_thread(fh.read, min(READ_CHUNK, end - pos))
                if not data:
                    break
                pos += len(data)
                yield data
        finally:
            fh.close()


def _flush_sync(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
