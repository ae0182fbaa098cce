"""Issue 20 "Done when": the quality loop end to end on the real services.

Curves go through the real pipeline (MQTT → ingest → inference) and are archived; an
operator labels some over REST; the labelled curves are exported as CSV and as Parquet;
``linewatch train`` (the real CLI, a child process; torch in the trainer's venv) fine-tunes
version 2 from the Parquet export (streamed from the gateway) and loads it through the
gateway, unpromoted: verdicts still name version 1. Attached as the shadow, version 2
scores live traffic beside version 1 and its evaluation shows agreement and accuracy on
labelled curves. Promoted, verdicts name ``2``; rolled back, ``1``. A backtest of the
period version 2 was promoted for gives the verdicts the live run gave.

REST contract: SPEC "Models and verdict quality" (labels, datasets, promotion) and the
routes of the labels / registry work (``PUT /v1/verdicts/{id}/label``,
``GET /v1/datasets/curves``, ``POST /v1/models/{name}/promote``,
``GET /v1/models/{name}/versions/{v}/evaluation``, ``POST /v1/backtests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import inference_pb2, inference_pb2_grpc
from linewatch_dev.curves import CURVE_KINDS, make_curve
from linewatch_dev.testing import TEST_TOKEN, operator_channel
from linewatch_dev.train.command import trainer_python

from .conftest import WRITE_TOKEN, LiveGateway, auth

pytestmark = pytest.mark.skipif(
    trainer_python(None) is None,
    reason="no interpreter with torch for `linewatch train`: run `make train-venv`",
)

MODEL = "curve-quality"
DEVICE = "loop-1"
DATASET_COLUMNS = {
    "verdict_id",
    "ts_ms",
    "device_id",
    "point",
    "rule",
    "model",
    "model_version",
    "label",
    "ok",
    "operator_label",
    "note",
    "samples",
}


class Line:
    """Publishes curves of known kinds and reads their archived verdicts back."""

    def __init__(self, live: LiveGateway, http: httpx.AsyncClient) -> None:
        self.live = live
        self.http = http
        self.rng = np.random.default_rng(20)
        self.kinds: dict[str, str] = {}

    async def publish(self, n: int, ts0_ms: int) -> list[str]:
        """``n`` curves (every kind in turn) with ts ``ts0_ms``, ``ts0_ms + 1``, … ms."""
        client = MqttClient(
            MqttConfig(url=self.live.stack.mqtt_url), client_id=f"loop-{uuid.uuid4().hex[:8]}"
        )
        await client.connect()
        ids = []
        try:
            for i in range(n):
                kind = CURVE_KINDS[i % len(CURVE_KINDS)]
                msg_id = uuid.uuid4().hex
                payload = {
                    "device_id": DEVICE,
                    "point": "pressure",
                    "ts": ts0_ms + i,
                    "values": make_curve(kind, length=256, rng=self.rng).tolist(),
                    "msg_id": msg_id,
                    "attrs": {"line": "L"},
                }
                await client.publish(self.live.stack.topic("L", DEVICE), json.dumps(payload))
                self.kinds[msg_id] = kind
                ids.append(msg_id)
        finally:
            await client.disconnect()
        return ids

    async def verdicts(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The archived verdicts of ``ids`` (waits until all are archived)."""
        want = set(ids)
        async with asyncio.timeout(60):
            while True:
                found: dict[str, dict[str, Any]] = {}
                token = ""
                while True:
                    params: dict[str, str | int] = {"device": DEVICE, "page_size": 1000}
                    params["page_token"] = token
                    body = (await self.http.get("/v1/verdicts", params=params)).json()
                    found.update({v["msg_id"]: v for v in body["items"] if v["msg_id"] in want})
                    token = body["next_page_token"]
                    if not token:
                        break
                if set(found) == want:
                    return found
                await asyncio.sleep(0.2)

    async def label(self, verdicts: list[dict[str, Any]]) -> None:
        """Label each verdict over REST with what the curve really is."""
        for v in verdicts:
            body = {"label": self.kinds[v["msg_id"]], "note": "checked at the bench"}
            resp = await self.http.put(f"/v1/verdicts/{v['id']}/label", json=body, headers=auth())
            assert resp.status_code == 200, resp.text
            stored = resp.json()
            assert stored["label"] == body["label"]
            assert stored["verdict"]["operator_label"] == body["label"]


async def _shadow(inference: str, version: str) -> None:
    async with operator_channel(inference) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await stub.SetShadow(inference_pb2.SetShadowRequest(name=MODEL, shadow_version=version))


async def _promote(http: httpx.AsyncClient, version: str) -> None:
    resp = await http.post(f"/v1/models/{MODEL}/promote", json={"version": version}, headers=auth())
    assert resp.status_code == 200, resp.text


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


async def _export(http: httpx.AsyncClient, fmt: str, dest: Path) -> Path:
    params = {"format": fmt, "labelled": "true", "device_id": DEVICE}
    async with http.stream("GET", "/v1/datasets/curves", params=params) as resp:
        assert resp.status_code == 200, await resp.aread()
        with dest.open("wb") as fh:
            async for chunk in resp.aiter_bytes():
                fh.write(chunk)
    return dest


async def _train(live: LiveGateway, out: Path) -> dict[str, Any]:
    """``linewatch train --gateway``: it streams the labelled Parquet export itself."""
    cmd = [sys.executable, "-m", "linewatch_dev.cli", "train", "--gateway", live.url]
    cmd += ["--device-id", DEVICE, "--out", str(out)]
    cmd += ["--epochs", "2", "--synthetic-per-class", "60", "--generator-heldout-per-class", "40"]
    cmd += ["--load", live.url, "--token", WRITE_TOKEN, "--quiet"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode == 0, stderr.decode()
    summary: dict[str, Any] = json.loads(stdout)
    return summary


async def test_label_export_train_load_shadow_promote_rollback_backtest(
    live: LiveGateway, tmp_path: Path
) -> None:
    inference = live.stack.addrs["inference"]
    async with httpx.AsyncClient(base_url=live.url, headers=auth(), timeout=60) as http:
        line = Line(live, http)
        try:
            await _loop(line, http, inference, live, tmp_path)
        finally:  # the inference process is shared by the session: leave it as it was
            await _shadow(inference, "")
            await http.post(f"/v1/models/{MODEL}/promote", json={"version": "1"})
            await http.delete(f"/v1/models/{MODEL}", params={"version": "2"})


async def _loop(
    line: Line, http: httpx.AsyncClient, inference: str, live: LiveGateway, tmp_path: Path
) -> None:
    t0 = 1764000000000
    # 1. curves archived, scored by the promoted version 1
    archived = await line.verdicts(await line.publish(60, t0))
    assert {v["model_version"] for v in archived.values()} == {"1"}
    # 2. some labelled over REST
    labelled = sorted(archived.values(), key=lambda v: v["ts"])[:40]
    await line.label(labelled)
    # 3. export, both formats: the labelled curves with verdicts and labels
    csv_path = await _export(http, "csv", tmp_path / "dataset.csv")
    parquet_path = await _export(http, "parquet", tmp_path / "dataset.parquet")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert len(rows) == 40
    assert set(rows[0]) >= DATASET_COLUMNS
    assert {int(r["verdict_id"]) for r in rows} == {int(v["id"]) for v in labelled}
    table = pq.read_table(parquet_path)
    assert table.num_rows == 40
    assert table.schema.field("samples").type == pa.list_(pa.float64())
    by_id = {int(r["verdict_id"]): r for r in rows}
    for r in table.to_pylist():
        row = by_id[int(r["verdict_id"])]
        assert json.loads(row["samples"]) == pytest.approx(r["samples"])
        assert r["operator_label"] == row["operator_label"]

    # 4. linewatch train (streaming the Parquet export) → version 2 with its report, loaded
    #    through the gateway
    summary = await _train(live, tmp_path / "v2")
    assert summary["version"] == "2"
    report = json.loads((tmp_path / "v2" / "evaluation.json").read_text(encoding="utf-8"))
    assert report["dataset"]["usable"] == 40
    assert report["dataset"]["operator_labelled"] == 40
    assert np.array(report["plant_heldout"]["candidate"]["confusion"]).shape == (5, 5)
    assert (tmp_path / "v2" / "REPORT.md").is_file()
    model = (await http.get(f"/v1/models/{MODEL}")).json()
    assert {"1", "2"} <= {v["version"] for v in model["versions"]}
    assert model["promoted_version"] == "1"

    # 5. loaded, not promoted: verdicts still name version 1
    t1 = t0 + 100_000
    still = await line.verdicts(await line.publish(20, t1))
    assert {v["model_version"] for v in still.values()} == {"1"}

    # 6. shadow evaluation: 2 scores live traffic beside 1 without publishing
    await _shadow(inference, "2")
    evaluation = f"/v1/models/{MODEL}/versions/2/evaluation"
    # ingest learns of the candidate within its refresh interval: warm up until it scores
    warm = t0 + 150_000
    async with asyncio.timeout(60):
        while (await http.get(evaluation)).json()["compared"] == 0:
            await line.verdicts(await line.publish(1, warm))
            warm += 1_000
    before = (await http.get(evaluation)).json()["compared"]
    t2 = t0 + 200_000
    shadowed = await line.verdicts(await line.publish(30, t2))
    assert {v["model_version"] for v in shadowed.values()} == {"1"}
    await line.label(list(shadowed.values())[:15])
    async with asyncio.timeout(60):
        while True:
            ev = (await http.get(evaluation)).json()
            if ev["compared"] >= before + 30 and ev["labelled"] >= 15:
                break
            await asyncio.sleep(0.5)
    assert ev["compared"] == before + 30, ev  # every shadowed curve, none dropped
    assert 0.0 <= ev["agreement_rate"] <= 1.0
    assert ev["agreement_rate"] == pytest.approx(ev["agreed"] / ev["compared"])
    assert ev["labelled"] == 15
    assert ev["candidate_accuracy"] == pytest.approx(ev["candidate_correct"] / 15)
    assert ev["promoted_accuracy"] == pytest.approx(ev["promoted_correct"] / 15)
    differ = ev["compared"] - ev["agreed"]
    assert len(ev["disagreements"]) <= differ
    assert differ == 0 or ev["disagreements"]
    assert all(d["promoted_label"] != d["candidate_label"] for d in ev["disagreements"])
    await _shadow(inference, "")

    # 7. promote → verdicts name 2
    await _promote(http, "2")
    t3 = t0 + 300_000
    promoted = await line.verdicts(await line.publish(30, t3))
    assert {v["model_version"] for v in promoted.values()} == {"2"}
    history = (await http.get(f"/v1/models/{MODEL}/promotions")).json()["items"]
    assert [(h["from_version"], h["to_version"]) for h in history][:1] == [("1", "2")]

    # 8. rollback = promote the older one → verdicts name 1
    await _promote(http, "1")
    back = await line.verdicts(await line.publish(10, t0 + 400_000))
    assert {v["model_version"] for v in back.values()} == {"1"}

    # 9. a backtest of the period version 2 was promoted for: the live run's verdicts
    body = {
        "rule": "line",
        "model_version": "2",
        "from": _rfc3339(t3),
        "to": _rfc3339(t3 + 30),
    }
    resp = await http.post("/v1/backtests", json=body)
    assert resp.status_code in (200, 201), resp.text
    result = resp.json()
    assert result["curves"] == 30
    assert result["changed"] == 0, result


def _small_export(path: Path) -> Path:
    """A small labelled export (CSV), as the dataset route writes it."""
    rng = np.random.default_rng(5)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted(DATASET_COLUMNS))
        w.writeheader()
        for i in range(30):
            kind = CURVE_KINDS[i % len(CURVE_KINDS)]
            samples = make_curve(kind, length=200, rng=rng).round(5).tolist()
            w.writerow(
                {
                    **dict.fromkeys(DATASET_COLUMNS, ""),
                    "verdict_id": f"v{i}",
                    "model": MODEL,
                    "model_version": "1",
                    "label": "ok",
                    "operator_label": kind,
                    "samples": json.dumps(samples),
                }
            )
    return path


def _file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


async def test_train_loads_a_new_version_into_inference_over_grpc(
    inference_addr: str, tmp_path: Path
) -> None:
    """``--load host:port``: the real inference downloads the package from the trainer's
    short-lived HTTP server, verifies its sha256 and lists the version."""
    dataset = _small_export(tmp_path / "export.csv")
    cmd = [sys.executable, "-m", "linewatch_dev.cli", "train", str(dataset), "--quiet"]
    cmd += ["--out", str(tmp_path / "v7"), "--version", "7", "--epochs", "1"]
    cmd += ["--synthetic-per-class", "20", "--generator-heldout-per-class", "10"]
    cmd += ["--load", inference_addr, "--token", TEST_TOKEN]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 600)
    try:
        assert proc.returncode == 0, stderr.decode()
        summary = json.loads(stdout)
        assert summary["version"] == "7"
        assert summary["loaded"]["answer"]["version"] == "7"
        async with operator_channel(inference_addr) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            got = await stub.GetModel(inference_pb2.GetModelRequest(name=MODEL))
            by_version = {v.version: v for v in got.model.versions}
            assert by_version["7"].state == inference_pb2.MODEL_STATE_READY
            assert by_version["7"].sha256 == _file_sha256(summary["zip"])
    finally:
        async with operator_channel(inference_addr) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.UnloadModel(inference_pb2.UnloadModelRequest(name=MODEL, version="7"))
