"""Shadow scoring: a second version of a model scores the same inputs, off to the side.

The primary version's scores go back to callers; the shadow's are only compared with them
(same top label or not) and counted. The shadow never slows the primary path: inputs are
handed over through a bounded queue, and when it is full the batch is skipped and counted
as dropped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linewatch.runtime.errors import LinewatchError
from linewatch_inference.batcher import BatcherClosed
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.preprocessing import ModelInput as Curves
from linewatch_inference.preprocessing import prepare
from linewatch_inference.registry import Registry

__all__ = ["ShadowScorer", "ShadowStats"]

log = logging.getLogger(__name__)


@dataclass
class ShadowStats:
    """Agreement between a model's primary versions and one shadow version."""

    shadow_version: str
    primary_version: str = ""
    """The primary version of the last comparison."""
    compared: int = 0
    agreed: int = 0
    dropped: int = 0

    @property
    def agreement_rate(self) -> float:
        """Share of compared curves whose top label matched (0 before any comparison)."""
        return self.agreed / self.compared if self.compared else 0.0


@dataclass(slots=True)
class _Job:
    model: str
    primary_version: str
    shadow_version: str
    curves: Curves
    n: int
    primary_top: npt.NDArray[np.intp]


class ShadowScorer:
    """Scores inputs with each model's shadow version and records agreement.

    Args:
        registry: Where models and their shadow settings live.
        metrics: Shadow outcome counters.
        queue_size: Batches that may wait; more are dropped (and counted).
    """

    def __init__(self, registry: Registry, *, metrics: InferenceMetrics, queue_size: int) -> None:
        self._registry = registry
        self._metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._stats: dict[str, ShadowStats] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="shadow")

    async def stop(self) -> None:
        """Stop the worker; batches still waiting are not scored."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def stats(self, model: str) -> ShadowStats:
        """Agreement so far with the model's current shadow (reset when it changes)."""
        shadow = self._registry.entry(model).shadow
        current = self._stats.get(model)
        if current is None or current.shadow_version != shadow:
            current = self._stats[model] = ShadowStats(shadow)
        return current

    def submit(
        self,
        model: str,
        primary_version: str,
        curves: Curves,
        probabilities: npt.NDArray[np.float32],
    ) -> None:
        """Hand a scored batch to the shadow, if the model has one; never blocks."""
        try:
            shadow = self._registry.entry(model).shadow
        except LinewatchError:
            return
        if not shadow or shadow == primary_version:
            return
        n = len(probabilities)
        job = _Job(model, primary_version, shadow, curves, n, np.argmax(probabilities, axis=1))
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats(model).dropped += n
            self._metrics.shadow.labels(model=model, outcome="dropped").inc(n)

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                served = self._registry.resolve(job.model, job.shadow_version)
                # Prepared for the shadow's own manifest (its length may differ).
                scores = await served.batcher.infer(prepare(job.curves, served.manifest))
                stats = self.stats(job.model)
            except (LinewatchError, BatcherClosed) as exc:
                log.debug("shadow scoring skipped: %s", exc)
                continue
            except Exception:  # the shadow must never take the service down
                log.exception("shadow scoring failed")
                continue
            agreed = int((np.argmax(scores, axis=1) == job.primary_top).sum())
            total = job.n
            if stats.shadow_version != job.shadow_version:
                continue
            stats.primary_version = job.primary_version
            stats.compared += total
            stats.agreed += agreed
            self._metrics.shadow.labels(model=job.model, outcome="agreed").inc(agreed)
            self._metrics.shadow.labels(model=job.model, outcome="disagreed").inc(total - agreed)
