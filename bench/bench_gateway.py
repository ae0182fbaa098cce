"""Gateway benchmark: SSE fan-out and plain REST, over real HTTP on a real uvicorn.

The gateway runs in this process on a free port; events are put straight into its
verdict hub (what the upstream gRPC stream would do), so the figures are the gateway's
own cost: JSON encoding, per-client queues, HTTP streaming. Clients are httpx streams in
this same process (on a two-core machine they share the CPU with the server).

    .venv/bin/python -m bench.bench_gateway            # 1, 10 and 50 SSE clients
    .venv/bin/python -m bench.bench_gateway --quick    # 1 and 10 clients, fewer events
    .venv/bin/python -m bench.bench_gateway --cpu      # only: gateway CPU, 200 clients

``--cpu`` measures the gateway's own CPU for 200 SSE clients at the demo rate (10 curves/s,
telemetry events with 256-sample curves), the clients in a child process so that only the
gateway's work is counted, twice: each event encoded once for all clients (now), and
re-encoded per client (before; reproduced by swapping the encoder). It prints CPU seconds
per second (cores) and per 100 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
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


_CLIENTS_SCRIPT = """
import asyncio, sys, httpx
async def one(url, want, counts, i, done):
    async with httpx.AsyncClient(timeout=None) as http, http.stream("GET", url) as resp:
        assert resp.status_code == 200, resp.status_code
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                counts[i] += 1
                if sum(counts) >= want:
                    done.set()
async def main(url, n, want):
    counts, done = [0] * n, asyncio.Event()
    tasks = [asyncio.create_task(one(url, want, counts, i, done)) for i in range(n)]
    print("ready", flush=True)
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        pass
    print(sum(counts), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def _sse_cpu(
    base: str, hub: StreamHub, clients: int, seconds: float, rate: float, *, per_client: bool
) -> dict[str, Any]:
    """The gateway's CPU (this process) while ``clients`` in a child process stream
    telemetry events published at ``rate``/s for ``seconds``."""
    import random

    from linewatch_gateway import sse

    original = sse.encode_event
    if per_client:  # before: every client's response encoded its own copy

        def per_client_encode(event: sse.Event) -> bytes:
            data = json.dumps(event.data, separators=(",", ":"), allow_nan=False)
            return f"id: {event.id}\nevent: {event.name}\ndata: {data}\n\n".encode()

        sse.encode_event = per_client_encode
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLIENTS_SCRIPT,
        f"{base}/v1/stream/telemetry",
        str(clients),
        str(int(seconds * rate) * clients),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        await proc.stdout.readline()
        await _until(lambda: hub.clients >= clients)
        rng = random.Random(1)
        values = [round(rng.random() * 100, 3) for _ in range(256)]
        cpu0, began = time.process_time(), time.perf_counter()
        n = int(seconds * rate)
        for i in range(n):
            hub.publish(
                "telemetry",
                {"device_id": "sim-07", "point": "pressure", "msg_id": str(i), "values": values},
                devices=("sim-07",),
                line="A",
            )
            await asyncio.sleep(max(0.0, began + (i + 1) / rate - time.perf_counter()))
        # until every client has every event (the sends the gateway still owes count too)
        delivered = int((await proc.stdout.readline()).strip() or 0)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - began
    finally:
        sse.encode_event = original
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    cores = cpu / max(wall, seconds)
    mode = "per client (before)" if per_client else "once (now)"
    print(
        f"sse cpu {clients} clients, {rate:.0f} events/s, encoded {mode:19}: "
        f"{cores:.3f} cores, {cores * 100 / clients:.3f} cores per 100 clients, "
        f"{delivered}/{n * clients} events delivered in {wall:.1f} s"
    )
    note = (
        f"{clients} SSE clients (child process), {rate:.0f} telemetry events/s x {seconds:.0f} s, "
        f"256-sample curves, encoded {mode}; gateway process CPU / wall time"
    )
    name = "sse_cpu_per_client_encode" if per_client else "sse_cpu_encode_once"
    return _row(name, "cores_per_100_clients", cores * 100 / clients, "cores", note)


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


async def main(quick: bool, cpu_only: bool = False) -> list[dict[str, Any]]:
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
        sse_max_clients_per_address=10_000,
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
        if cpu_only:
            for per_client in (True, False):
                rows.append(
                    await _sse_cpu(
                        base, app.state.hubs["telemetry"], 200, 10, 10.0, per_client=per_client
                    )
                )
            return rows
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
    parser.add_argument("--cpu", action="store_true", help="only the 200-client CPU figures")
    args = parser.parse_args()
    rows = asyncio.run(main(args.quick, args.cpu))
    if args.cpu:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    run()
