"""Hot swap under load: many streams keep scoring while new versions load; none is lost."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_dev.inference_testing import LENGTH, manifest_dict, onnx_bytes, sha256, zip_package
from linewatch_dev.testing import operator_channel

from .conftest import StartServer

STREAMS = 8
BEFORE_SWAP = 20
AFTER_SWAP = 20


async def test_hot_swap_under_load_loses_no_request(
    model_dir: Path, start_server: StartServer, http_files: tuple[str, Path]
) -> None:
    base, www = http_files
    v2 = zip_package(onnx_bytes(bias=(0.0, 3.0, 0.0)), manifest_dict(version="2"))
    v1b = zip_package(onnx_bytes(bias=(0.0, 0.0, 3.0)), manifest_dict(version="1"))
    (www / "v2.zip").write_bytes(v2)
    (www / "v1b.zip").write_bytes(v1b)
    # A long queue delay keeps requests waiting in the old version's queue when it is
    # swapped out: they must be served by it, not dropped.
    server, port = await start_server(model_dir, max_queue_delay_ms=20.0, max_batch_size=256)
    curves = np.random.default_rng(3).standard_normal((4, LENGTH)).astype("<f4").tobytes()
    started = asyncio.Event()
    swapped = asyncio.Event()
    sent: Counter[int] = Counter()

    async def stream(key: int, version: str) -> list[pb.PredictStreamResponse]:
        async def requests() -> AsyncIterator[pb.PredictStreamRequest]:
            # Keep sending all through the swap, then a few more after it.
            after = 0
            while after < AFTER_SWAP:
                if sent[key] == BEFORE_SWAP:
                    started.set()
                if swapped.is_set():
                    after += 1
                yield pb.PredictStreamRequest(
                    batch_id=sent[key],
                    batch=pb.CurveBatch(
                        model="tiny", version=version, samples_f32=curves, lengths=[LENGTH] * 4
                    ),
                )
                sent[key] += 1
                await asyncio.sleep(0.001)

        return [r async for r in api.PredictStream(requests())]

    async def swap() -> None:
        await started.wait()
        # A new version is loaded and promoted, and version 1 is replaced in place,
        # mid-stream.
        await api.LoadModel(pb.LoadModelRequest(url=f"{base}/v2.zip", sha256=sha256(v2)))
        await api.PromoteModel(pb.PromoteModelRequest(name="tiny", version="2"))
        await api.LoadModel(pb.LoadModelRequest(url=f"{base}/v1b.zip", sha256=sha256(v1b)))
        swapped.set()

    async with operator_channel(f"127.0.0.1:{port}") as ch:
        api = pb_grpc.InferenceServiceStub(ch)
        async with asyncio.timeout(60), asyncio.TaskGroup() as group:
            latest = [group.create_task(stream(i, "")) for i in range(STREAMS // 2)]
            pinned = [group.create_task(stream(i, "1")) for i in range(STREAMS // 2, STREAMS)]
            group.create_task(swap())

    for key, task in enumerate([*latest, *pinned]):
        responses = task.result()
        assert sent[key] >= BEFORE_SWAP + AFTER_SWAP
        assert sorted(r.batch_id for r in responses) == list(range(sent[key]))
        assert [r.error_message for r in responses if r.error_code] == []
        assert all(len(r.result.scores) == 4 for r in responses)
    seen_latest = Counter(
        (r.result.version, r.result.scores[0].label) for t in latest for r in t.result()
    )
    seen_pinned = Counter(r.result.scores[0].label for t in pinned for r in t.result())
    # Both the old and the new latest served; version 1 served with old and new weights.
    assert {v for v, _ in seen_latest} == {"1", "2"}
    assert ("2", "bad") in seen_latest
    assert set(seen_pinned) == {"ok", "worse"}
    assert server.registry.resolve("tiny").version == "2"
