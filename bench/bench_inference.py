"""Inference benchmark: in-process onnxruntime vs the service's streaming and unary APIs.

``python -m bench.bench_inference [--quick]``. Measures, on the shipped ``curve-quality``
model, all in one run on one machine:

* in-process onnxruntime on one thread at batch 1, 32 and 512 (samples/s: the limit);
* the service's ``linewatch.v1`` PredictStream (batches of 32 curves, several streams,
  dynamic batching) and its ratio to the in-process batch-32 figure (target >= 70 %);
* unary Open Inference Protocol ModelInfer with one curve per call at concurrency 16
  (dynamic batching coalesces them) and at concurrency 1, against the batch-1 figure.

The service runs as its own process (``python -m linewatch_inference``), as in production,
so the load generator does not share its interpreter. Figures are printed and written to
``bench/results/inference.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import yaml
from linewatch_inference.session import ModelSession, available_providers, choose_providers

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.grpc_auth import callers_env
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.curves import make_batch, preprocess
from linewatch_dev.testing import TEST_TOKEN, free_port, operator_channel

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models"
MANIFEST = MODEL_DIR / "curve-quality" / "manifest.yaml"
RESULTS = ROOT / "bench" / "results" / "inference.json"
MODEL = "curve-quality"

Row = dict[str, Any]


def row(metric: str, value: float, unit: str, note: str = "") -> Row:
    return {"benchmark": "inference", "metric": metric, "value": value, "unit": unit, "note": note}


def timed(fn: Callable[[], int], seconds: float) -> float:
    """Call ``fn`` (returns samples done) repeatedly for ``seconds``; samples per second."""
    fn()  # warm-up
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


def in_process(curves: np.ndarray[Any, Any], seconds: float) -> dict[int, tuple[float, str]]:
    """Samples/s of a one-thread session at batch 1, 32 and 512, with the provider used."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    inputs = preprocess(curves, length=int(manifest["input_length"]))
    providers = choose_providers(available_providers(), "auto")
    session = ModelSession(
        MANIFEST.parent / manifest["file"],
        input_name=manifest["input_name"],
        output_name=manifest["output_name"],
        intra_op_threads=1,
        providers=providers,
    )
    out: dict[int, tuple[float, str]] = {}
    for batch in (1, 32, 512):
        chunk = np.ascontiguousarray(inputs[:batch])

        def run(chunk: np.ndarray[Any, Any] = chunk) -> int:
            session.run(chunk)
            return int(chunk.shape[0])

        out[batch] = (timed(run, seconds), session.providers[0])
    return out


async def measure(seconds: float, calls: Callable[[], AsyncIterator[int]]) -> float:
    """Samples/s of the sample counts ``calls`` yields over ``seconds`` (after warm-up)."""
    done = 0
    start = 0.0
    async with asyncio.timeout(seconds + 30):
        async for n in calls():
            if not start:
                start = time.perf_counter()
                continue
            done += n
            if time.perf_counter() - start >= seconds:
                break
    return done / (time.perf_counter() - start)


async def stream_throughput(
    channel: grpc.aio.Channel, curves: np.ndarray[Any, Any], seconds: float, streams: int
) -> float:
    """Curves/s through PredictStream: ``streams`` streams of 32-curve batches, 16 in flight."""
    api = pb_grpc.InferenceServiceStub(channel)
    batch = 32
    payloads = [
        pb.CurveBatch(
            model=MODEL,
            samples_f32=curves[i : i + batch].astype("<f4").tobytes(),
            lengths=[curves.shape[1]] * batch,
        )
        for i in range(0, len(curves) - batch + 1, batch)
    ]
    counts: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()

    async def one_stream() -> None:
        window = asyncio.Semaphore(16)

        async def requests() -> AsyncIterator[pb.PredictStreamRequest]:
            i = 0
            while not stop.is_set():
                await window.acquire()
                if stop.is_set():
                    break  # half-close: the server answers what it has, then ends the call
                yield pb.PredictStreamRequest(batch_id=i, batch=payloads[i % len(payloads)])
                i += 1

        async for response in api.PredictStream(requests()):
            window.release()
            if response.error_code:
                raise RuntimeError(response.error_message)
            counts.put_nowait(len(response.result.scores))

    async def counted() -> AsyncIterator[int]:
        while True:
            yield await counts.get()

    tasks = [asyncio.create_task(one_stream()) for _ in range(streams)]
    try:
        return await measure(seconds, counted)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def unary_throughput(
    channel: grpc.aio.Channel, curves: np.ndarray[Any, Any], seconds: float, concurrency: int
) -> float:
    """Curves/s of one-curve ModelInfer calls with ``concurrency`` callers."""
    api = oip_grpc.GRPCInferenceServiceStub(channel)
    tensor = oip.ModelInferRequest.InferInputTensor(
        name="curve", datatype="FP32", shape=[1, curves.shape[1]]
    )
    requests = [
        oip.ModelInferRequest(
            model_name=MODEL, inputs=[tensor], raw_input_contents=[c.astype("<f4").tobytes()]
        )
        for c in curves[:256]
    ]
    counts: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()

    async def caller(k: int) -> None:
        i = k
        while not stop.is_set():
            await api.ModelInfer(requests[i % len(requests)])
            counts.put_nowait(1)
            i += concurrency

    async def counted() -> AsyncIterator[int]:
        while True:
            yield await counts.get()

    tasks = [asyncio.create_task(caller(k)) for k in range(concurrency)]
    try:
        return await measure(seconds, counted)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def with_service(body: Callable[[grpc.aio.Channel], Awaitable[None]]) -> None:
    """Run the service in its own process on a free port while ``body`` talks to it."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "LINEWATCH_INFERENCE__GRPC__PORT": str(port),
            **callers_env("inference", {"bench": ("operator", TEST_TOKEN)}),
            "LINEWATCH_INFERENCE__DATA_DIR": data_dir,
            "LINEWATCH_INFERENCE__MODEL_DIR": str(MODEL_DIR),
            "LINEWATCH_INFERENCE__LOG_LEVEL": "WARNING",
            "LINEWATCH_INFERENCE__MAX_BATCH_SIZE": "256",
        }
        proc = subprocess.Popen(  # noqa: ASYNC220 - our own service, started once
            [sys.executable, "-m", "linewatch_inference"], env=env, cwd=ROOT
        )
        try:
            async with operator_channel(f"127.0.0.1:{port}") as channel:
                api = oip_grpc.GRPCInferenceServiceStub(channel)
                async with asyncio.timeout(60):
                    while True:
                        try:
                            ready = await api.ModelReady(oip.ModelReadyRequest(name=MODEL))
                            if ready.ready:
                                break
                        except grpc.aio.AioRpcError:
                            pass
                        if proc.poll() is not None:
                            raise RuntimeError("the inference service exited at start")
                        await asyncio.sleep(0.2)
                await body(channel)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_inference")
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 15 s)")
    args = parser.parse_args(argv)
    if not MANIFEST.exists():
        print(f"bench inference: skipped, the shipped model is not built ({MANIFEST} missing)")
        return 0
    seconds = 1.5 if args.quick else 4.0
    manifest = yaml.safe_load(MANIFEST.read_text())
    curves, _ = make_batch(1024, length=int(manifest["input_length"]), rng=np.random.default_rng(0))
    cores = len(os.sched_getaffinity(0))

    ort = in_process(curves, seconds)
    rows = [
        row(
            f"in_process_batch{b}",
            rate,
            "samples/s",
            f"onnxruntime {provider}, 1 intra-op thread, preprocessed input",
        )
        for b, (rate, provider) in ort.items()
    ]
    service: dict[str, float] = {}

    async def body(channel: grpc.aio.Channel) -> None:
        service["stream"] = await stream_throughput(channel, curves, seconds, streams=4)
        service["unary16"] = await unary_throughput(channel, curves, seconds, concurrency=16)
        service["unary1"] = await unary_throughput(channel, curves, seconds, concurrency=1)

    asyncio.run(with_service(body))
    ratio = service["stream"] / ort[32][0]
    rows += [
        row(
            "stream_batch32",
            service["stream"],
            "samples/s",
            "PredictStream, 4 streams x 16 batches of 32 in flight, service in its own process",
        ),
        row("stream_vs_in_process_batch32", 100.0 * ratio, "%", "target >= 70 %"),
        row(
            "unary_modelinfer_c16",
            service["unary16"],
            "samples/s",
            "OIP ModelInfer, 1 curve per call, 16 concurrent callers (dynamic batching)",
        ),
        row("unary_modelinfer_c1", service["unary1"], "samples/s", "1 curve per call, 1 caller"),
        row(
            "unary_c16_vs_c1",
            service["unary16"] / service["unary1"],
            "x",
            "ModelInfer batch-1 throughput gained by dynamic batching (> 1 beats batch 1)",
        ),
        row(
            "unary_c16_vs_in_process_batch1",
            service["unary16"] / ort[1][0],
            "x",
            "per-call gRPC cost vs a bare onnxruntime batch-1 run",
        ),
        row("cpu_cores", float(cores), "cores", "cores this run could use (client + server)"),
    ]
    width = max(len(r["metric"]) for r in rows)
    for r in rows:
        print(f"{r['metric']:<{width}}  {r['value']:>12,.1f} {r['unit']:<10} {r['note']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
