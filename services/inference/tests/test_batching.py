"""Dynamic batching coalesces requests from many callers; a full queue says so."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from linewatch_inference.batcher import BatcherClosed, DynamicBatcher
from linewatch_inference.metrics import InferenceMetrics
from prometheus_client import CollectorRegistry

from linewatch.runtime.errors import ResourceExhausted
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import LENGTH
from linewatch_dev.testing import operator_channel

from .conftest import StartServer


class GatedRun:
    """A model run that blocks until released, recording the batch sizes it saw."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.started.set()
        self.gate.wait(timeout=30)
        self.sizes.append(batch.shape[0])
        return np.repeat(batch[:, :1], 2, axis=1)


def make_batcher(
    run: GatedRun, *, max_batch: int = 64, queue: int = 100, delay_s: float = 0.0
) -> DynamicBatcher:
    batcher = DynamicBatcher(
        run,
        model="m",
        version="1",
        max_batch_size=max_batch,
        max_queue_delay_s=delay_s,
        max_queue_size=queue,
        metrics=InferenceMetrics(CollectorRegistry()),
    )
    batcher.start()
    return batcher


async def test_requests_waiting_during_a_run_are_coalesced() -> None:
    run = GatedRun()
    batcher = make_batcher(run, max_batch=8)
    first = asyncio.create_task(batcher.infer(np.full((1, 4), -1.0, dtype=np.float32)))
    await asyncio.to_thread(run.started.wait, 10)
    # While the first run is busy, 10 callers with one curve each queue up...
    rest = [
        asyncio.create_task(batcher.infer(np.full((1, 4), float(i), dtype=np.float32)))
        for i in range(10)
    ]
    await asyncio.sleep(0)
    run.gate.set()
    results = await asyncio.gather(first, *rest)
    # ...and run as one batch of 8 (the cap) and one of 2, each caller getting its rows.
    assert run.sizes == [1, 8, 2]
    assert [float(r[0, 0]) for r in results] == [-1.0, *range(10)]
    assert batcher.runs == 3
    assert batcher.rows == 11
    assert batcher.largest_batch == 8
    await batcher.close()


async def test_idle_model_runs_a_lone_request_at_once() -> None:
    # A queue delay of an hour: a request that found the model idle does not wait it out
    # (the 60 s below would run out first if it did).
    run = GatedRun()
    run.gate.set()
    batcher = make_batcher(run, delay_s=3600.0)
    for i in range(3):
        out = await asyncio.wait_for(batcher.infer(np.full((1, 4), float(i), dtype=np.float32)), 60)
        assert float(out[0, 0]) == float(i)
    assert run.sizes == [1, 1, 1]
    await batcher.close()


async def test_batch_formed_while_busy_runs_when_the_model_goes_idle() -> None:
    run = GatedRun()
    batcher = make_batcher(run, max_batch=64, delay_s=3600.0)
    first = asyncio.create_task(batcher.infer(np.full((1, 4), -1.0, dtype=np.float32)))
    await asyncio.to_thread(run.started.wait, 10)
    # Requests queued while the model is busy wait for company (the batch is not full)...
    rest = [
        asyncio.create_task(batcher.infer(np.full((1, 4), float(i), dtype=np.float32)))
        for i in range(5)
    ]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in rest)
    # ...but only until the model is idle again: then they run as one batch, at once.
    run.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 60)
    assert run.sizes == [1, 5]
    assert [float(r[0, 0]) for r in results] == [-1.0, *range(5)]
    await batcher.close()


async def test_full_queue_is_resource_exhausted_and_close_serves_queued() -> None:
    run = GatedRun()
    batcher = make_batcher(run, queue=2)
    first = asyncio.create_task(batcher.infer(np.zeros((1, 4), dtype=np.float32)))
    await asyncio.to_thread(run.started.wait, 10)
    queued = [
        asyncio.create_task(batcher.infer(np.zeros((1, 4), dtype=np.float32))) for _ in range(2)
    ]
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted, match="2 requests are already waiting"):
        await batcher.infer(np.zeros((1, 4), dtype=np.float32))
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    with pytest.raises(BatcherClosed):
        await batcher.infer(np.zeros((1, 4), dtype=np.float32))
    run.gate.set()
    await closing
    assert all(r.shape == (1, 2) for r in await asyncio.gather(first, *queued))


async def test_server_coalesces_concurrent_callers(
    model_dir: Path, start_server: StartServer
) -> None:
    server, port = await start_server(model_dir, max_queue_delay_ms=50.0, max_batch_size=64)
    curves = np.ones((1, LENGTH), dtype="<f4").tobytes()
    request = pb.PredictRequest(
        batch=pb.CurveBatch(model="tiny", samples_f32=curves, lengths=[LENGTH])
    )
    async with operator_channel(f"127.0.0.1:{port}") as ch:
        api = pb_grpc.InferenceServiceStub(ch)
        await api.Predict(request)  # warm the channel
        registry = server.metrics.registry
        labels = {"model": "tiny", "version": "1"}
        runs_before = registry.get_sample_value("linewatch_inference_batch_size_count", labels)
        rows_before = registry.get_sample_value("linewatch_inference_batch_size_sum", labels)
        responses = await asyncio.gather(*(api.Predict(request) for _ in range(32)))
    assert all(len(r.result.scores) == 1 for r in responses)
    runs = registry.get_sample_value("linewatch_inference_batch_size_count", labels)
    rows = registry.get_sample_value("linewatch_inference_batch_size_sum", labels)
    assert runs is not None
    assert rows is not None
    assert runs_before is not None
    assert rows_before is not None
    assert rows - rows_before == 32
    assert runs - runs_before < 32  # fewer runs than callers: they were batched
    batcher = server.registry.resolve("tiny").batcher
    assert batcher.largest_batch > 1
    ok = registry.get_sample_value(
        "linewatch_inference_requests_total", {"api": "predict", "code": "OK"}
    )
    assert ok == 33
