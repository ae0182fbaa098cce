"""Dynamic batching: requests from many callers coalesced into one onnxruntime run.

Like Triton's ``dynamic_batching``: a request waits at most ``max_queue_delay`` for others
to join it, up to ``max_batch_size`` curves, but only while the model is busy with an
earlier batch; a request that finds the model idle runs at once with whatever is queued.
The batch runs in the batcher's own worker thread (onnxruntime releases the GIL) while
the event loop keeps accepting requests, and each caller gets back its own rows. The
queue is bounded: when it is full the caller gets
:class:`~linewatch.runtime.errors.ResourceExhausted` at once instead of waiting.

Closing a batcher (a version swapped out or unloaded) refuses new requests with
:class:`BatcherClosed` but finishes every request already queued, so a hot swap loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from linewatch.runtime.errors import ResourceExhausted
from linewatch_inference.metrics import InferenceMetrics

__all__ = ["BatcherClosed", "DynamicBatcher"]

RunFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


class BatcherClosed(Exception):
    """The batcher no longer takes requests (its version was swapped out or unloaded)."""


@dataclass(slots=True)
class _Request:
    inputs: npt.NDArray[np.float32]
    future: asyncio.Future[npt.NDArray[np.float32]]
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = None
_WAKE = _Request(np.zeros((0, 0), dtype=np.float32), None)  # type: ignore[arg-type]
"""Put in the queue when the last run in flight finished while a batch is being formed:
the model is idle, so the batch stops waiting for company and runs."""
_PIPELINE = 2
"""Batches handed to the worker thread at once (one running, one ready behind it)."""


class DynamicBatcher:
    """Coalesces concurrent requests for one model version into batched runs.

    Args:
        run: Scores a float32 ``[n, length]`` array (blocking; called in a worker thread).
        model: Model name (metric label).
        version: Model version (metric label).
        max_batch_size: Most curves per run; one larger request runs alone, in chunks.
        max_queue_delay_s: How long the first request of a batch waits for company.
        max_queue_size: Requests that may wait; beyond it :class:`ResourceExhausted`.
        metrics: Where batch sizes, queue depth and latencies are recorded.
    """

    def __init__(
        self,
        run: RunFn,
        *,
        model: str,
        version: str,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        metrics: InferenceMetrics,
    ) -> None:
        self._run = run
        self.model = model
        self.version = version
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue(maxsize=max_queue_size + 1)
        self._forming = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{model}")
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._carry: _Request | None = None
        self._slots = asyncio.Semaphore(_PIPELINE)
        self._running: set[asyncio.Task[None]] = set()
        labels = {"model": model, "version": version}
        self._m_batch = metrics.batch_size.labels(**labels)
        self._m_requests = metrics.batch_requests.labels(**labels)
        self._m_depth = metrics.queue_depth.labels(**labels)
        self._m_latency = metrics.latency.labels(**labels)
        self._m_run = metrics.run_seconds.labels(**labels)
        self._m_curves = metrics.curves.labels(**labels)
        self.runs = 0
        """onnxruntime runs so far."""
        self.rows = 0
        """Curves scored so far."""
        self.largest_batch = 0
        """The most curves one run has scored."""

    def start(self) -> None:
        """Start the batching loop (on the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"batcher-{self.model}-{self.version}"
            )

    @property
    def closed(self) -> bool:
        """Whether new requests are refused."""
        return self._closed

    async def infer(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Score ``inputs`` (float32 ``[n, length]``), batched with other callers' requests.

        Raises:
            BatcherClosed: The batcher was closed; resolve the version again.
            ResourceExhausted: The queue is full.
        """
        if self._closed:
            raise BatcherClosed(f"{self.model} version {self.version} is being replaced")
        request = _Request(inputs, asyncio.get_running_loop().create_future())
        # one place more than max_queue_size in the queue is kept for a _WAKE
        if self._queue.qsize() >= self.max_queue_size:
            raise ResourceExhausted(
                f"model {self.model} version {self.version}: {self.max_queue_size} requests "
                "are already waiting; retry later"
            )
        self._queue.put_nowait(request)
        self._m_depth.set(self._queue.qsize())
        return await request.future

    async def close(self) -> None:
        """Refuse new requests, finish every queued one, then stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            await self._queue.put(_STOP)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)
        self._m_depth.set(0)

    async def _next(self, timeout: float | None) -> _Request | None:
        if self._carry is not None:
            request, self._carry = self._carry, None
            return request
        if timeout is None:
            return await self._queue.get()
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout <= 0:
                raise TimeoutError from None
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            # A free slot first, then the batch: requests arriving meanwhile join it.
            await self._slots.acquire()
            first = await self._next(None)
            while first is _WAKE:
                first = await self._next(None)
            if first is _STOP:
                self._slots.release()
                break
            batch = [first]
            rows = first.inputs.shape[0]
            # Like Triton, the delay counts from the first request's arrival: a request
            # that already waited for a busy model does not wait again. And when the model
            # is idle (no run in flight) nothing is waited for: what is queued now joins the
            # batch and it runs at once; waiting for company pays only while the model is
            # busy anyway, so a lone caller never sits out the delay.
            waited = time.perf_counter() - first.enqueued
            deadline = loop.time() + max(0.0, self.max_queue_delay_s - waited)
            self._forming = True
            while rows < self.max_batch_size:
                try:
                    request = await self._next(deadline - loop.time() if self._running else 0.0)
                except TimeoutError:
                    break
                if request is _WAKE:
                    continue
                if request is _STOP:
                    stopping = True
                    break
                if rows + request.inputs.shape[0] > self.max_batch_size:
                    self._carry = request
                    break
                batch.append(request)
                rows += request.inputs.shape[0]
            self._forming = False
            self._m_depth.set(self._queue.qsize())
            await self._launch(batch)
        # Closing: whatever is still queued (or carried) is served, not dropped.
        while True:
            try:
                leftover = await self._next(0.0)
            except TimeoutError:
                break
            if leftover is not _STOP and leftover is not _WAKE:
                await self._slots.acquire()
                await self._launch([leftover])
        if self._running:
            await asyncio.gather(*self._running)

    async def _launch(self, batch: list[_Request]) -> None:
        """Hand a batch to the worker thread (holding a slot) without waiting for it.

        Up to ``_PIPELINE`` batches are in flight: while the thread runs one, the next is
        already formed and queued behind it, so the model never idles between runs.
        """
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._running.add(task)
        task.add_done_callback(self._ran)

    def _ran(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()
        if self._forming and not self._running:
            # the model went idle while a batch waits for company: run it now
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_WAKE)

    def _run_chunked(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if inputs.shape[0] <= self.max_batch_size:
            return self._run(inputs)
        parts = [
            self._run(inputs[i : i + self.max_batch_size])
            for i in range(0, inputs.shape[0], self.max_batch_size)
        ]
        return np.concatenate(parts, axis=0)

    async def _run_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]
        if not live:
            return
        inputs = (
            live[0].inputs if len(live) == 1 else np.concatenate([r.inputs for r in live], axis=0)
        )
        rows = inputs.shape[0]
        started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_chunked, inputs
            )
        except Exception as exc:  # a failed run fails its callers, not the batcher
            for r in live:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        done = time.perf_counter()
        self._m_run.observe(done - started)
        self._m_batch.observe(rows)
        self._m_requests.observe(len(live))
        self._m_curves.inc(rows)
        self.runs += 1
        self.rows += rows
        self.largest_batch = max(self.largest_batch, rows)
        offset = 0
        for r in live:
            n = r.inputs.shape[0]
            if not r.future.done():
                r.future.set_result(outputs[offset : offset + n])
            self._m_latency.observe(done - r.enqueued)
            offset += n
