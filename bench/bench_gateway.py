"""Gateway benchmark: SSE fan-out and plain REST, over real HTTP on a real uvicorn.

The gateway runs in this process on a free port; events are put straight into its
verdict hub (what the upstream gRPC stream would do), so the figures are the gateway's
own cost: JSON encoding, per-client queues, HTTP streaming. Clients are httpx streams in
this same process (on a two-core machine they share the CPU with the server).

    .venv/bin/python -m bench.bench_gateway            # 1, 10 and 50 SSE clients
    .venv/bin/python -m bench.bench_gateway --quick    # 1 and 10 clients, fewer events
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from linewatch_gateway.app import UvicornServer, close_streams, create_app
from linewatch_gateway.clients import Backends
from linewatch_gateway.config import GatewayConfig
from linewatch_gateway.sse import StreamHub

from linewatch_dev.testing import free_port

RESULTS = Path(__file__).parent / "results" / "gateway.json"


def _row(benchmark: str, metric: str, value: float, unit: str, note: str) -> dict[str, Any]:
    return {"benchmark": benchmark, "metric": metric, "value": value, "unit": unit, "note": note}


async def _until(predicate: Callable[[], bool]) -> None:
    while True:
        if predicate():
            return
        await asyncio.sleep(0.01)


async def _client(url: str, want: int, latencies: list[float], ready: asyncio.Event) -> int:
    got = 0
    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url) as resp:
        ready.set()
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                sent = json.loads(line[6:])["sent"]
                latencies.append(time.perf_counter() - sent)
                got += 1
                if got >= want:
                    break
    return got


async def _fanout(
    base: str, hub: StreamHub, clients: int, events: int, rate: float | None
) -> list[dict[str, Any]]:
    """Burst (``rate`` None: as fast as the hub takes them) or paced at ``rate`` events/s."""
    latencies: list[float] = []
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [
        asyncio.create_task(_client(f"{base}/v1/stream/verdicts", events, latencies, r))
        for r in readies
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    await _until(lambda: hub.clients >= clients)
    began = time.perf_counter()
    for i in range(events):
        hub.publish(
            "verdict",
            {"sent": time.perf_counter(), "i": i, "device_id": "press-07", "label": "ok"},
            devices=("press-07",),
            line="A",
            label="ok",
        )
        if rate is not None:
            await asyncio.sleep(max(0.0, began + (i + 1) / rate - time.perf_counter()))
        elif i % 50 == 49:
            await asyncio.sleep(0)  # let the clients drain, as a real upstream would
    counts = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    delivered = sum(counts)
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    mode = "burst" if rate is None else f"paced {rate:.0f}/s"
    note = f"{clients} SSE clients, {events} events each ({mode}), in-process uvicorn"
    print(
        f"sse fan-out {clients:3d} clients, {mode:11}: {delivered / elapsed:8.0f} events/s "
        f"delivered, publish→client p50 {p50:6.1f} ms, p99 {p99:6.1f} ms"
    )
    if rate is None:
        return [_row(f"sse_fanout_{clients}", "delivered", delivered / elapsed, "events/s", note)]
    return [
        _row(f"sse_latency_{clients}", "latency_p50", p50, "ms", note),
        _row(f"sse_latency_{clients}", "latency_p99", p99, "ms", note),
    ]


async def _rest(base: str, path: str, requests: int, concurrency: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                resp = await http.get(path)
                resp.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = requests / (time.perf_counter() - began)
    print(f"rest GET {path:14}: {rate:7.0f} requests/s ({concurrency} concurrent)")
    note = f"{requests} requests, {concurrency} concurrent, httpx client in the same process"
    return _row(f"rest_get_{path.strip('/').replace('.', '_')}", "throughput", rate, "req/s", note)


async def main(quick: bool) -> list[dict[str, Any]]:
    logging.getLogger("linewatch_gateway").setLevel(logging.ERROR)  # no backends, on purpose
    port = free_port()
    dead = f"127.0.0.1:{free_port()}"  # no backend: only the gateway's own work is measured
    config = GatewayConfig(
        http_port=port,
        ingest_addr=dead,
        inference_addr=dead,
        sync_addr=dead,
        ota_addr=dead,
        sse_client_queue=10_000,
        log_level="WARNING",
    )
    backends = Backends.connect(config)
    app = create_app(config, backends)
    server = UvicornServer(uvicorn.Config(app, port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    await _until(lambda: server.started)
    base = f"http://127.0.0.1:{port}"
    hub: StreamHub = app.state.hubs["verdicts"]
    rows: list[dict[str, Any]] = []
    try:
        events = 1000 if quick else 2000
        for clients in (1, 10) if quick else (1, 10, 50):
            rows += await _fanout(base, hub, clients, events, None)
        for clients in (1, 10) if quick else (1, 10, 50):
            rows += await _fanout(base, hub, clients, 200 if quick else 400, 100.0)
        requests = 500 if quick else 2000
        rows.append(await _rest(base, "/healthz", requests, 10))
        rows.append(await _rest(base, "/openapi.json", requests // 4, 10))
    finally:
        close_streams(app)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await backends.close()
    return rows


def run() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer clients and events")
    args = parser.parse_args()
    rows = asyncio.run(main(args.quick))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    run()
