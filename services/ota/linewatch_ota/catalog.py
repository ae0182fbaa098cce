"""The firmware catalog: streamed uploads stored content-addressed, signed, ranged reads.

An upload is written to a temporary file while its sha256 is computed, then renamed to
``firmware_dir/<sha256>`` (atomic; identical images share one file) and recorded in the
database. Nothing half-written is ever visible under a final name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
from linewatch_ota.signing import SigningKey
from linewatch_ota.store import ACTIVE_STATES, DeviceUpdateRow, FirmwareRow, RolloutRow

__all__ = ["Catalog", "validate_name"]

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


class Catalog:
    """Firmware images on disk plus their rows."""

    def __init__(
        self, *, db: Database, firmware_dir: Path, max_bytes: int, key: SigningKey
    ) -> None:
        self.db = db
        self.dir = firmware_dir
        self.max_bytes = max_bytes
        self.key = key
        self._tmp = firmware_dir / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, FirmwareRow] = {}

    def path_of(self, fw: FirmwareRow) -> Path:
        """Where the bytes of ``fw`` live."""
        return self.dir / fw.sha256

    async def upload(
        self, *, product: str, version: str, filename: str, chunks: AsyncIterator[bytes]
    ) -> FirmwareRow:
        """Store one image from ``chunks``.

        Raises:
            InvalidArgument: bad product/version/filename, or no bytes at all.
            AlreadyExists: this product already has this version.
            ResourceExhausted: the image is larger than the configured limit.
        """
        product = validate_name("product", product or "default", 128)
        version = validate_name("version", version, 64)
        filename = os.path.basename(filename.strip())[:255]
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
            signature=self.key.sign_sha256(sha),
            filename=filename,
            created_at=time.time(),
        )
        try:
            async with self.db.session() as session:
                session.add(row)
        except IntegrityError as exc:
            await self._drop_blob_if_unused(sha)
            raise AlreadyExists(f"firmware {product} {version} exists already") from exc
        self._cache[row.id] = row
        return row

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
