"""The sync job table (own SQLModel registry) and the durable queue built on it.

States: ``queued`` → ``downloading`` → ``done`` | ``failed`` (retried after a backoff)
→ ``dead`` after the attempt limit (or at once for a permanent error such as a 404).
Jobs are deduplicated by canonical URL (a unique index). Workers claim jobs with one
``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``: on PostgreSQL the
row locks are skipped by concurrent claimers; on SQLite the statement runs under the
database write lock. Either way, two workers never take the same job. A claim is a lease:
a job left ``downloading`` by a dead worker is taken over once its lease has expired, and
at start a worker immediately takes back its own (:meth:`JobStore.recover`).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel

from linewatch.runtime.db import Database, service_registry
from linewatch.runtime.errors import FailedPrecondition, NotFound

__all__ = [
    "STATES",
    "Base",
    "JobRow",
    "JobStore",
    "NewJob",
    "Outcome",
    "RejectionRow",
    "backoff_delay",
]

STATES = ("queued", "downloading", "done", "failed", "dead")
_CHUNK = 500


class Base(SQLModel, registry=service_registry()):
    """Base of the sync service's tables."""


class JobRow(Base, table=True):
    """One URL to mirror, and where its download stands."""

    __tablename__ = "sync_jobs"
    __table_args__ = (sa.Index("ix_sync_jobs_queue", "state", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=32)
    url: str = Field(max_length=2048, unique=True)
    cache_path: str = Field(max_length=1100, index=True)
    state: str = Field(max_length=16)
    work_id: str = Field(default="", max_length=128, index=True)
    attempts: int = 0
    last_error: str = Field(default="", sa_type=sa.Text)
    size: int = Field(default=0, sa_type=sa.BigInteger)
    sha256: str = Field(default="", max_length=64)
    expected_sha256: str = Field(default="", max_length=64)
    content_type: str = Field(default="", max_length=255)
    etag: str = Field(default="", max_length=512)
    last_modified: str = Field(default="", max_length=64)
    #: Set when a done URL was sent again: re-fetch conditionally (ETag/Last-Modified).
    refetch: bool = False
    claimed_by: str = Field(default="", max_length=64)
    #: W3C trace context of the request that queued it; its download continues the trace.
    traceparent: str = Field(default="", max_length=64)
    lease_until: float = 0.0
    next_attempt_at: float = 0.0
    created_at: float
    updated_at: float


class RejectionRow(Base, table=True):
    """A message or URL refused at the edge, kept so nothing is lost silently."""

    __tablename__ = "sync_rejections"

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(default="", max_length=1024)
    url: str = Field(default="", sa_type=sa.Text)
    reason: str = Field(sa_type=sa.Text)
    payload: str = Field(default="", sa_type=sa.Text)
    created_at: float = Field(index=True)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated URL to enqueue."""

    url: str
    cache_path: str
    work_id: str = ""
    expected_sha256: str = ""
    traceparent: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one download ended, to be written back in a batch."""

    job_id: str
    ok: bool
    size: int = 0
    sha256: str = ""
    content_type: str = ""
    etag: str = ""
    last_modified: str = ""
    error: str = ""
    retryable: bool = True


def backoff_delay(attempts: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [d/2, d], d = min(cap, base·2^(n-1))."""
    delay = min(cap_s, base_s * (2 ** max(0, attempts - 1)))
    return random.uniform(delay / 2, delay)


def _storable(text: str) -> str:
    """Refused input as text any database keeps: PostgreSQL refuses NUL characters and
    lone surrogates (both arrive in hostile JSON), so they become U+FFFD / '?'."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


_T = JobRow.__table__  # type: ignore[attr-defined]
_R = RejectionRow.__table__  # type: ignore[attr-defined]


class JobStore:
    """Every read and write of the job table."""

    def __init__(
        self,
        *,
        db: Database,
        worker_id: str,
        max_attempts: int,
        backoff_base_s: float,
        backoff_cap_s: float,
        lease_s: float,
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.lease_s = lease_s

    async def create_schema(self) -> None:
        """Upgrade the schema to the newest revision (``linewatch_sync/migrations``)."""
        from linewatch.runtime.migrations import migrate
        from linewatch_sync.schema import HISTORY

        await migrate(self.db, HISTORY)

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[JobRow]:
        """Queue new URLs; a URL already known is not duplicated.

        A known URL that is ``done`` is queued again for a conditional re-fetch, and one
        that is ``dead`` is queued again with its attempts reset; ``queued``,
        ``downloading`` and ``failed`` ones are left as they are.

        Returns:
            The job of every given URL, in the given order (deduplicated).
        """
        unique: dict[str, NewJob] = {}
        for job in jobs:
            unique.setdefault(job.url, job)
        if not unique:
            return []
        now = time.time()
        rows = [
            {
                "id": uuid.uuid4().hex,
                "url": job.url,
                "cache_path": job.cache_path,
                "state": "queued",
                "work_id": job.work_id,
                "attempts": 0,
                "last_error": "",
                "size": 0,
                "sha256": "",
                "expected_sha256": job.expected_sha256,
                "content_type": "",
                "etag": "",
                "last_modified": "",
                "refetch": False,
                "claimed_by": "",
                "traceparent": job.traceparent,
                "lease_until": 0.0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for job in unique.values()
        ]
        urls = list(unique)
        insert = (postgresql.insert if not self.db.is_sqlite else sqlite.insert)(_T)
        found: dict[str, JobRow] = {}
        async with self.db.connect() as conn:
            for i in range(0, len(rows), _CHUNK):
                await conn.execute(
                    insert.on_conflict_do_nothing(index_elements=["url"]), rows[i : i + _CHUNK]
                )
            for chunk in _chunks(urls):
                await conn.execute(
                    sa.update(_T)
                    .where(_T.c.url.in_(chunk), _T.c.state.in_(("done", "dead")))
                    .values(
                        state="queued",
                        traceparent=rows[0]["traceparent"],
                        refetch=_T.c.state == "done",
                        attempts=0,
                        last_error="",
                        next_attempt_at=now,
                        updated_at=now,
                    )
                )
                result = await conn.execute(sa.select(_T).where(_T.c.url.in_(chunk)))
                for row in result.mappings():
                    found[row["url"]] = JobRow.model_validate(dict(row))
        return [found[url] for url in urls if url in found]

    async def reject(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Record refused URLs or payloads: (topic, url, reason, payload excerpt)."""
        if not rows:
            return
        now = time.time()
        async with self.db.connect() as conn:
            await conn.execute(
                sa.insert(_R),
                [
                    {
                        "topic": _storable(t),
                        "url": _storable(u[:4096]),
                        "reason": _storable(r[:2000]),
                        "payload": _storable(p[:4096]),
                        "created_at": now,
                    }
                    for t, u, r, p in rows
                ],
            )

    async def rejections(self, limit: int = 100) -> list[RejectionRow]:
        """The latest refusals, newest first."""
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.select(_R).order_by(_R.c.created_at.desc(), _R.c.id.desc()).limit(limit)
            )
            return [RejectionRow.model_validate(dict(r)) for r in result.mappings()]

    async def release(self, job_ids: Sequence[str]) -> None:
        """Give claimed jobs back to the queue (graceful shutdown)."""
        now = time.time()
        async with self.db.connect() as conn:
            for chunk in _chunks(list(job_ids)):
                await conn.execute(
                    sa.update(_T)
                    .where(
                        _T.c.id.in_(chunk),
                        _T.c.state == "downloading",
                        _T.c.claimed_by == self.worker_id,
                    )
                    .values(state="queued", claimed_by="", lease_until=0.0, updated_at=now)
                )

    async def recover(self) -> int:
        """At start: this worker's jobs left ``downloading`` (and expired leases) go back
        to ``queued``. Returns how many."""
        now = time.time()
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.update(_T)
                .where(
                    _T.c.state == "downloading",
                    sa.or_(_T.c.claimed_by == self.worker_id, _T.c.lease_until < now),
                )
                .values(state="queued", claimed_by="", lease_until=0.0, updated_at=now)
            )
        return int(result.rowcount or 0)

    async def claim(self, limit: int) -> list[JobRow]:
        """Take up to ``limit`` due jobs for this worker, atomically."""
        if limit <= 0:
            return []
        now = time.time()
        due = sa.or_(
            sa.and_(_T.c.state.in_(("queued", "failed")), _T.c.next_attempt_at <= now),
            sa.and_(_T.c.state == "downloading", _T.c.lease_until < now),
        )
        pick = (
            sa.select(_T.c.id)
            .where(due)
            .order_by(_T.c.next_attempt_at, _T.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # A materialised CTE runs the locking pick exactly once (a plain ``IN (subquery)``
        # may be re-scanned by PostgreSQL, and with SKIP LOCKED pick more than ``limit``).
        picked = pick.cte("picked").prefix_with("MATERIALIZED")
        stmt = (
            sa.update(_T)
            .where(_T.c.id.in_(sa.select(picked.c.id)), due)
            .values(
                state="downloading",
                claimed_by=self.worker_id,
                lease_until=now + self.lease_s,
                updated_at=now,
            )
            .returning(*_T.c)
        )
        async with self.db.connect() as conn:
            result = await conn.execute(stmt)
            return [JobRow.model_validate(dict(row)) for row in result.mappings()]

    async def finish(self, outcomes: Sequence[Outcome]) -> dict[str, str]:
        """Write download outcomes back in one transaction; returns job id → new state.

        Successes go in one ``executemany``; failures one by one (they read the attempt
        count). Only jobs still claimed by this worker are touched.
        """
        now = time.time()
        states: dict[str, str] = {}
        done = [out for out in outcomes if out.ok]
        failed = [out for out in outcomes if not out.ok]
        async with self.db.connect() as conn:
            if done:
                await conn.execute(
                    sa.update(_T)
                    .where(
                        _T.c.id == sa.bindparam("b_id"),
                        _T.c.state == "downloading",
                        _T.c.claimed_by == self.worker_id,
                    )
                    .values(
                        state="done",
                        size=sa.bindparam("b_size"),
                        sha256=sa.bindparam("b_sha256"),
                        content_type=sa.bindparam("b_content_type"),
                        etag=sa.bindparam("b_etag"),
                        last_modified=sa.bindparam("b_last_modified"),
                        last_error="",
                        refetch=False,
                        claimed_by="",
                        lease_until=0.0,
                        updated_at=now,
                    ),
                    [
                        {
                            "b_id": out.job_id,
                            "b_size": out.size,
                            "b_sha256": out.sha256,
                            "b_content_type": out.content_type[:255],
                            "b_etag": out.etag[:512],
                            "b_last_modified": out.last_modified[:64],
                        }
                        for out in done
                    ],
                )
                states.update((out.job_id, "done") for out in done)
            for out in failed:
                state = await self._fail(conn, out, now)
                if state:
                    states[out.job_id] = state
        return states

    async def _fail(self, conn: AsyncConnection, out: Outcome, now: float) -> str:
        mine = sa.and_(
            _T.c.id == out.job_id,
            _T.c.state == "downloading",
            _T.c.claimed_by == self.worker_id,
        )
        attempts = await conn.scalar(sa.select(_T.c.attempts).where(mine))
        if attempts is None:
            return ""
        attempts += 1
        dead = not out.retryable or attempts >= self.max_attempts
        delay = 0.0 if dead else backoff_delay(attempts, self.backoff_base_s, self.backoff_cap_s)
        state = "dead" if dead else "failed"
        await conn.execute(
            sa.update(_T)
            .where(mine)
            .values(
                state=state,
                attempts=attempts,
                last_error=out.error[:2000],
                next_attempt_at=now + delay,
                claimed_by="",
                lease_until=0.0,
                updated_at=now,
            )
        )
        return state

    async def get(self, job_id: str) -> JobRow:
        """One job.

        Raises:
            NotFound: no job with that id.
        """
        async with self.db.connect() as conn:
            row = (await conn.execute(sa.select(_T).where(_T.c.id == job_id))).mappings().first()
        if row is None:
            raise NotFound(f"no sync job {job_id!r}")
        return JobRow.model_validate(dict(row))

    async def by_cache_path(self, cache_path: str) -> JobRow | None:
        """The done job that produced ``cache_path``, if any."""
        async with self.db.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(_T)
                        .where(_T.c.cache_path == cache_path, _T.c.state == "done")
                        .order_by(_T.c.updated_at.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else JobRow.model_validate(dict(row))

    async def list(
        self, *, state: str = "", work_id: str = "", offset: int = 0, limit: int = 100
    ) -> tuple[list[JobRow], bool]:
        """Jobs oldest first, filtered; returns the page and whether more follow."""
        query = sa.select(_T)
        if state:
            query = query.where(_T.c.state == state)
        if work_id:
            query = query.where(_T.c.work_id == work_id)
        query = query.order_by(_T.c.created_at, _T.c.id).offset(offset).limit(limit + 1)
        async with self.db.connect() as conn:
            rows = [JobRow.model_validate(dict(r)) for r in (await conn.execute(query)).mappings()]
        return rows[:limit], len(rows) > limit

    async def retry(self, job_id: str) -> JobRow:
        """Queue a failed or dead job again now, with its attempts reset.

        Raises:
            NotFound: no such job.
            FailedPrecondition: the job is not failed or dead.
        """
        now = time.time()
        async with self.db.connect() as conn:
            result = await conn.execute(
                sa.update(_T)
                .where(_T.c.id == job_id, _T.c.state.in_(("failed", "dead")))
                .values(state="queued", attempts=0, next_attempt_at=now, updated_at=now)
            )
        if not result.rowcount:
            job = await self.get(job_id)
            raise FailedPrecondition(f"job {job_id} is {job.state}; only failed or dead retry")
        return await self.get(job_id)

    async def counts(self) -> dict[str, int]:
        """Jobs per state (every state present, zero included)."""
        async with self.db.connect() as conn:
            result = await conn.execute(sa.select(_T.c.state, sa.func.count()).group_by(_T.c.state))
            found = {str(state): int(n) for state, n in result.all()}
        return {state: found.get(state, 0) for state in STATES}

    async def done_totals(self) -> tuple[int, int]:
        """Files and bytes of done jobs."""
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_T.c.size), 0)).where(
                        _T.c.state == "done"
                    )
                )
            ).one()
        return int(row[0]), int(row[1])
