"""Shadow evaluation: a candidate model version scores live curves beside the promoted one.

While a model has a shadow (candidate) version set in inference (``SetShadow``), the batch
scorer :meth:`ShadowScorer.offer`\\ s every batch it scored with the promoted version: the
batch goes to a bounded queue (full: dropped and counted, the published verdict is never
delayed) and a background task scores it with the candidate (``version`` explicit) and
archives the candidate's label/ok/score in ``ingest_shadow_verdict``. Which version is the
candidate comes from ``GetModel``, asked at most every ``refresh_s`` per model and never on
the hot path (a stale answer for a few seconds is fine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy.dialects import postgresql, sqlite

from linewatch.runtime.errors import LinewatchError
from linewatch.v1 import inference_pb2
from linewatch_ingest.inference_client import BatchResult, InferenceClient
from linewatch_ingest.quality_tables import shadow_table
from linewatch_ingest.store import IngestStore

__all__ = ["SHADOW_CURVES", "ShadowBatch", "ShadowScorer"]

log = logging.getLogger(__name__)

SHADOW_CURVES = Counter(
    "linewatch_ingest_shadow_curves",
    "Curves offered to a candidate (shadow) model version, by outcome (scored, dropped, failed)",
    ["outcome"],
)

#: ``(rule, msg_id, device_id, ts_ms)``: the archived verdict's unique key.
Key = tuple[str, str, str, int]


@dataclass(frozen=True, slots=True)
class ShadowBatch:
    """A scored batch, to be scored again by the candidate."""

    model: str
    version: str
    keys: Sequence[Key]
    samples_f32: bytes
    lengths: list[int]
    channels: Sequence[str]


class ShadowScorer:
    """Scores batches with the candidate version off the hot path."""

    def __init__(
        self,
        store: IngestStore,
        inference: InferenceClient,
        *,
        queue_size: int = 64,
        refresh_s: float = 5.0,
        get_model: Callable[[str], Awaitable[inference_pb2.Model]] | None = None,
    ) -> None:
        self._store = store
        self._inference = inference
        self._get_model = get_model or inference.get_model
        self._queue: asyncio.Queue[ShadowBatch] = asyncio.Queue(maxsize=queue_size)
        self._candidates: dict[str, tuple[str, float]] = {}
        self._refreshing: set[str] = set()
        self._refresh_s = refresh_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0
        self.scored = 0

    def start(self) -> None:
        """Start the background scorer."""
        self._worker = asyncio.create_task(self._run(), name="shadow-scorer")

    async def close(self) -> None:
        """Stop; batches still queued are not scored."""
        for task in [self._worker, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def candidate(self, model: str) -> str:
        """The model's candidate version as last seen ("" none), refreshed in the
        background when older than ``refresh_s``."""
        version, seen = self._candidates.get(model, ("", 0.0))
        if time.monotonic() - seen > self._refresh_s and model not in self._refreshing:
            self._refreshing.add(model)
            task = asyncio.create_task(self._refresh(model))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return version

    async def _refresh(self, model: str) -> None:
        try:
            info = await self._get_model(model)
            self._candidates[model] = (info.shadow_version, time.monotonic())
        except LinewatchError as exc:
            log.debug("shadow: no model info for %s: %s", model, exc)
            self._candidates[model] = ("", time.monotonic())
        finally:
            self._refreshing.discard(model)

    def offer(
        self,
        *,
        rule: str,
        model: str,
        result: BatchResult,
        keys: Sequence[tuple[str, str, int]],
        samples_f32: bytes,
        lengths: list[int],
        channels: Sequence[str],
    ) -> None:
        """Queue a batch the promoted version scored, if the model has a candidate
        other than the version that scored it (never blocks)."""
        version = self.candidate(model)
        if not version or version == result.version:
            return
        batch = ShadowBatch(
            model, version, [(rule, *k) for k in keys], samples_f32, lengths, channels
        )
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.dropped += len(keys)
            SHADOW_CURVES.labels("dropped").inc(len(keys))

    async def _run(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._score(batch)
            except LinewatchError as exc:
                SHADOW_CURVES.labels("failed").inc(len(batch.keys))
                log.warning("shadow scoring failed: %s", exc)

    async def _score(self, batch: ShadowBatch) -> None:
        result = await self._inference.predict(
            model=batch.model,
            version=batch.version,
            samples_f32=batch.samples_f32,
            lengths=batch.lengths,
            channels=batch.channels,
        )
        rows = [
            {
                "rule": key[0],
                "msg_id": key[1],
                "device_id": key[2],
                "ts_ms": key[3],
                "model": batch.model,
                "version": result.version,
                "label": result.labels[i],
                "ok": bool(ok),
                "score": float(result.probabilities[n, i]),
            }
            for n, (key, i, ok) in enumerate(
                zip(batch.keys, result.label_index, result.ok, strict=True)
            )
        ]
        dialect = sqlite if self._store.db.is_sqlite else postgresql
        async with self._store.db.connect() as conn:
            await conn.execute(dialect.insert(shadow_table).on_conflict_do_nothing(), rows)
        self.scored += len(rows)
        SHADOW_CURVES.labels("scored").inc(len(rows))
