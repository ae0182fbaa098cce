"""The durable queue on both databases: dedup, atomic claims, recovery, retry, dead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from linewatch_sync.store import JobStore, NewJob, Outcome

from linewatch.runtime.db import Database
from linewatch.runtime.errors import FailedPrecondition, NotFound


def make_store(
    db: Database, worker: str, *, lease_s: float = 60.0, backoff_s: float = 0.01
) -> JobStore:
    return JobStore(
        db=db,
        worker_id=worker,
        max_attempts=3,
        backoff_base_s=backoff_s,
        backoff_cap_s=backoff_s,
        lease_s=lease_s,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await make_store(database, "x").create_schema()
    yield database
    await database.close()


def new_jobs(n: int, work_id: str = "") -> list[NewJob]:
    return [NewJob(f"http://h/{i}.jpg", f"h/{i}.jpg", work_id) for i in range(n)]


async def test_enqueue_deduplicates_by_url(db: Database) -> None:
    store = make_store(db, "a")
    first = await store.enqueue([*new_jobs(3), *new_jobs(2)])
    assert len(first) == 3
    again = await store.enqueue(new_jobs(3))
    assert [j.id for j in again] == [j.id for j in first]
    assert (await store.counts())["queued"] == 3


async def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    await make_store(db, "a").enqueue(new_jobs(200))
    stores = [make_store(db, f"w{i}") for i in range(4)]

    async def drain(store: JobStore) -> list[str]:
        got: list[str] = []
        while batch := await store.claim(7):
            got.extend(job.id for job in batch)
        return got

    results = await asyncio.gather(*(drain(s) for s in stores))
    claimed = [job_id for ids in results for job_id in ids]
    assert len(claimed) == 200
    assert len(set(claimed)) == 200


async def test_recover_takes_back_own_jobs_only(db: Database) -> None:
    mine, other = make_store(db, "me"), make_store(db, "other")
    await mine.enqueue(new_jobs(4))
    assert len(await mine.claim(2)) == 2
    assert len(await other.claim(2)) == 2
    assert await make_store(db, "me").recover() == 2
    counts = await mine.counts()
    assert counts["queued"] == 2
    assert counts["downloading"] == 2


async def test_expired_lease_is_taken_over(db: Database) -> None:
    crashed = make_store(db, "crashed", lease_s=1.0)
    await crashed.enqueue(new_jobs(1))
    assert len(await crashed.claim(1)) == 1
    other = make_store(db, "other")
    assert await other.claim(1) == []
    await asyncio.sleep(1.1)
    taken = await other.claim(1)
    assert len(taken) == 1
    assert taken[0].claimed_by == "other"


async def test_failures_back_off_then_die_and_retry_revives(db: Database) -> None:
    store = make_store(db, "a", backoff_s=0.6)  # each delay is in [0.3, 0.6] s
    (job,) = await store.enqueue(new_jobs(1))
    for attempt in (1, 2):
        (claimed,) = await store.claim(1)
        states = await store.finish([Outcome(claimed.id, ok=False, error="http_5xx: HTTP 503")])
        assert states == {job.id: "failed"}
        failed = await store.get(job.id)
        assert failed.attempts == attempt
        assert failed.next_attempt_at > failed.updated_at
        assert await store.claim(1) == []  # not due before its backoff
        await asyncio.sleep(0.65)
    (claimed,) = await store.claim(1)
    assert await store.finish([Outcome(claimed.id, ok=False, error="x")]) == {job.id: "dead"}
    dead = await store.get(job.id)
    assert dead.state == "dead"
    assert dead.attempts == 3
    assert dead.last_error == "x"
    assert await store.claim(1) == []


async def test_retry_rules(db: Database) -> None:
    store = make_store(db, "a")
    (job,) = await store.enqueue(new_jobs(1))
    with pytest.raises(FailedPrecondition):
        await store.retry(job.id)
    with pytest.raises(NotFound):
        await store.retry("missing")
    (claimed,) = await store.claim(1)
    await store.finish([Outcome(claimed.id, ok=False, error="http_4xx", retryable=False)])
    assert (await store.get(job.id)).state == "dead"
    revived = await store.retry(job.id)
    assert revived.state == "queued"
    assert revived.attempts == 0


async def test_done_url_sent_again_is_refetched_conditionally(db: Database) -> None:
    store = make_store(db, "a")
    (job,) = await store.enqueue(new_jobs(1))
    (claimed,) = await store.claim(1)
    await store.finish([Outcome(claimed.id, ok=True, size=5, sha256="s", etag='"e"')])
    (again,) = await store.enqueue(new_jobs(1))
    assert again.id == job.id
    assert again.state == "queued"
    assert again.refetch
    assert again.etag == '"e"'


async def test_list_filters_and_pages(db: Database) -> None:
    store = make_store(db, "a")
    await store.enqueue(new_jobs(5, work_id="w1"))
    await store.enqueue([NewJob("http://h/x.jpg", "h/x.jpg", "w2")])
    page, more = await store.list(work_id="w1", limit=3)
    assert len(page) == 3
    assert more
    rest, more = await store.list(work_id="w1", offset=3, limit=3)
    assert len(rest) == 2
    assert not more
    assert {j.id for j in page}.isdisjoint({j.id for j in rest})
    assert len((await store.list(state="queued"))[0]) == 6
    assert (await store.list(state="done"))[0] == []
