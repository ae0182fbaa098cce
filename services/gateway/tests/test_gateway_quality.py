"""The quality loop over REST: labels, datasets and exports (streamed), evaluation,
backtests, through the real services."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from .conftest import READ_TOKEN, WRITE_TOKEN, auth

ROOT = Path(__file__).resolve().parents[3]


async def _verdicts(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(60):  # a loaded machine: the first batch is slow
        while True:
            items: list[dict[str, Any]] = (await client.get("/v1/verdicts")).json()["items"]
            if len(items) >= count:
                return items
            await asyncio.sleep(0.1)


async def test_labels_datasets_exports_backtest(
    client: httpx.AsyncClient, stack: Any, write_headers: dict[str, str]
) -> None:
    await stack.publish([("d0", "A", "spike"), ("d1", "B", "ok"), ("d0", "A", "ok")])
    verdicts = await _verdicts(client, 3)
    assert all(v["id"] and v["operator_label"] == "" for v in verdicts)
    target = verdicts[0]
    path = f"/v1/verdicts/{target['id']}/label"
    body = {"label": "ok", "note": "false alarm"}

    assert (await client.put(path, json=body)).status_code == 401
    assert (await client.put(path, json=body, headers=auth(READ_TOKEN))).status_code == 403
    bad = await client.put(path, json={"label": "banana"}, headers=write_headers)
    assert bad.status_code == 400
    assert "spike" in bad.json()["error"]["message"]
    assert (await client.put(path, json={"label": ""}, headers=write_headers)).status_code == 422
    missing = await client.put("/v1/verdicts/999999/label", json=body, headers=write_headers)
    assert missing.status_code == 404
    stored = await client.put(path, json=body, headers=write_headers)
    assert stored.status_code == 200, stored.text
    assert stored.json()["verdict"]["operator_label"] == "ok"
    assert "token:" in stored.json()["labelled_by"]
    assert WRITE_TOKEN not in stored.json()["labelled_by"]  # a digest, never the token

    again = {v["id"]: v for v in await _verdicts(client, 3)}
    assert (again[target["id"]]["operator_label"], again[target["id"]]["operator_note"]) == (
        "ok",
        "false alarm",
    )
    labels = (await client.get("/v1/labels", params={"rule": "line"})).json()["items"]
    assert [lab["verdict_id"] for lab in labels] == [target["id"]]
    disagree = (await client.get("/v1/labels", params={"disagree": "true"})).json()["items"]
    assert len(disagree) == (0 if target["label"] == "ok" else 1)

    resp = await client.get("/v1/datasets/curves", params={"format": "csv"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 3
    assert len(json.loads(rows[0]["samples"])) == 256
    resp = await client.get("/v1/datasets/curves", params={"format": "parquet", "labelled": "true"})
    table = pq.read_table(io.BytesIO(resp.content))
    assert table.column("verdict_id").to_pylist() == [target["id"]]
    assert table.column("operator_label").to_pylist() == ["ok"]
    future = await client.get("/v1/datasets/curves", params={"from": "2100-01-01T00:00:00Z"})
    assert list(csv.reader(io.StringIO(future.text)))[1:] == []
    for kind in ("telemetry", "verdicts", "alarms"):
        resp = await client.get(f"/v1/exports/{kind}", params={"format": "parquet"})
        assert resp.status_code == 200, resp.text
        assert pq.read_table(io.BytesIO(resp.content)).num_rows >= 1
    assert (await client.get("/v1/exports/secrets")).status_code == 422
    refused = await client.get("/v1/exports/alarms", params={"labelled": "true"})
    assert refused.status_code == 400

    evaluation = await client.get("/v1/models/curve-quality/versions/2/evaluation")
    assert evaluation.status_code == 200
    assert evaluation.json()["compared"] == 0

    backtest = await client.post(
        "/v1/backtests", json={"rule": "line", "model_version": "1"}, headers=write_headers
    )
    assert backtest.status_code == 200, backtest.text
    report = backtest.json()
    assert (report["curves"], report["changed"]) == (3, 0)
    assert report["labelled"] == 1
    assert (await client.post("/v1/backtests", json={"rule": "line"})).status_code == 401
    nothing = await client.post("/v1/backtests", json={"rule": "nope"}, headers=write_headers)
    assert nothing.status_code == 404


LABEL_SCRIPT = Path(__file__).parent / "browser" / "label.mjs"


@pytest.mark.browser
async def test_dashboard_labels_a_verdict(live: Any, tmp_path: Path) -> None:
    if shutil.which("node") is None or shutil.which("chromium") is None:
        pytest.skip("node or Debian chromium is not installed (make system-packages)")
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(LABEL_SCRIPT),
        live.url + "/",
        str(tmp_path / "label.png"),
        str(tmp_path / "profile"),
        WRITE_TOKEN,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(90):
            line = await proc.stdout.readline()
            if line.strip() != b"connected":
                raise AssertionError(f"page did not connect: {line!r} {await proc.stderr.read()!r}")
            items = [("sim-0", "A", "spike"), ("sim-1", "B", "ok"), ("sim-2", "A", "ok")]
            await live.stack.publish(items)
            proc.stdin.write(f"{len(items)}\n".encode())
            await proc.stdin.drain()
            out = (await proc.stdout.readline()).decode()
            err = await proc.stderr.read()
            assert out.startswith("result "), f"{out!r} {err.decode()[-2000:]}"
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result = json.loads(out[len("result ") :])
    assert result["errors"] == []
    assert "spike" in result["options"]
    async with httpx.AsyncClient(base_url=live.url) as http:
        labels = (await http.get("/v1/labels")).json()["items"]
    # the label the click stored, on the verdict the page showed
    assert [(lab["verdict_id"], lab["label"]) for lab in labels] == [(result["id"], "ok")]
    assert labels[0]["verdict"]["label"] != "ok"
