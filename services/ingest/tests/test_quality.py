"""The quality loop in ingest: operator labels, exports, shadow evaluation, backtests.

Real inference (the shipped curve-quality model as version 1, and the same weights as
version 2, the candidate), the real broker, both databases.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from linewatch_ingest.app import running
from prometheus_client import CollectorRegistry

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import common_pb2, inference_pb2, inference_pb2_grpc, ingest_pb2_grpc
from linewatch.v1 import ingest_pb2 as pb
from linewatch_dev.testing import free_port, operator_channel, secured_grpc

from .conftest import ROOT, Inference, curve_payload, demo_rule, eventually, ingest_config


class TwoVersions(Inference):
    """Inference serving curve-quality 1 and 2 (same weights) from a model dir of its own."""

    async def start(self) -> None:
        models = self.data_dir / "models"
        if not models.exists():
            shutil.copytree(ROOT / "models" / "curve-quality", models / "curve-quality")
            second = models / "curve-quality-2"
            shutil.copytree(ROOT / "models" / "curve-quality", second)
            manifest = second / "manifest.yaml"
            text = manifest.read_text(encoding="utf-8").replace('version: "1"', 'version: "2"')
            manifest.write_text(text, encoding="utf-8")
        config = InferenceConfig(
            grpc=secured_grpc(port=self.port, grace_s=0.2),
            model_dir=models,
            data_dir=self.data_dir,
            max_queue_delay_ms=1.0,
        )
        self.server = InferenceServer(config, metrics=InferenceMetrics(CollectorRegistry()))
        await self.server.start()


@pytest.fixture
async def two_versions(tmp_path: Path) -> AsyncIterator[Inference]:
    service = TwoVersions(tmp_path / "inference")
    service.port = free_port()
    await service.start()
    yield service
    await service.stop()


async def _export(stub: ingest_pb2_grpc.IngestServiceStub, **fields: object) -> bytes:
    call = stub.ReadExport(pb.ReadExportRequest(**fields))  # type: ignore[arg-type]
    return b"".join([r.data async for r in call])


async def test_labels_exports_shadow_and_backtest(
    mqtt_url: str, database_url: str, topic_prefix: str, two_versions: Inference
) -> None:
    p = topic_prefix
    async with operator_channel(two_versions.target) as ich:
        await inference_pb2_grpc.InferenceServiceStub(ich).SetShadow(
            inference_pb2.SetShadowRequest(name="curve-quality", shadow_version="2")
        )
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=database_url,
        inference=two_versions,
        prefix=p,
        rules=[demo_rule(p, model_version="1", alarm={"threshold": 2, "window_s": 60})],
    )
    async with (
        running(config) as ingest,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        operator_channel(f"127.0.0.1:{ingest.port}") as channel,
    ):
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        async def worker_up() -> bool:
            worker = ingest.controller.worker("demo")
            return worker is not None and worker.client.connected

        assert await eventually(worker_up, timeout=10)
        await asyncio.sleep(0.3)
        kinds = ["ok", "spike", "ok", "drift", "ok", "noise"]

        async def archived(n: int) -> list[pb.VerdictRecord]:
            async def check() -> list[pb.VerdictRecord]:
                resp = await stub.QueryVerdicts(pb.QueryVerdictsRequest())
                return list(resp.records) if len(resp.records) >= n else []

            got: list[pb.VerdictRecord] = await eventually(check, timeout=20)
            assert len(got) >= n
            return got

        await pub.publish(f"{p}/L1/press-1/telemetry", curve_payload("press-1", seed=99))
        await archived(1)
        await asyncio.sleep(0.5)  # the candidate version is known by now
        for i, kind in enumerate(kinds * 3):
            await pub.publish(
                f"{p}/L1/press-{i % 2}/telemetry",
                curve_payload(f"press-{i % 2}", kind=kind, seed=i),
            )
        records = await archived(1 + len(kinds) * 3)
        assert all(r.id > 0 and r.model_version == "1" for r in records)

        # --- labels ---------------------------------------------------------------
        first, second = records[0], records[1]
        flipped = "spike" if first.label == "ok" else "ok"
        set_ = await stub.SetVerdictLabel(
            pb.SetVerdictLabelRequest(verdict_id=first.id, label=flipped, note="checked")
        )
        assert set_.label.verdict.operator_label == flipped
        assert set_.label.labelled_by == "test"
        await stub.SetVerdictLabel(
            pb.SetVerdictLabelRequest(verdict_id=second.id, label=second.label)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SetVerdictLabel(pb.SetVerdictLabelRequest(verdict_id=first.id, label="nope"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "spike" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SetVerdictLabel(pb.SetVerdictLabelRequest(verdict_id=10**9, label="ok"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        again = {r.id: r for r in await archived(len(records))}
        assert (again[first.id].operator_label, again[first.id].operator_note) == (
            flipped,
            "checked",
        )
        assert again[records[2].id].operator_label == ""
        listed = await stub.ListLabels(pb.ListLabelsRequest())
        assert {lab.verdict_id for lab in listed.labels} == {first.id, second.id}
        disagree = await stub.ListLabels(pb.ListLabelsRequest(disagree=True))
        assert [lab.verdict_id for lab in disagree.labels] == [first.id]
        by_label = await stub.ListLabels(pb.ListLabelsRequest(label=flipped, rule="demo"))
        assert first.id in {lab.verdict_id for lab in by_label.labels}
        assert not (await stub.ListLabels(pb.ListLabelsRequest(device_id="nobody"))).labels

        # --- exports --------------------------------------------------------------
        text = (
            await _export(stub, kind=pb.EXPORT_KIND_CURVES, format=pb.EXPORT_FORMAT_CSV)
        ).decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == len(records)
        assert list(rows[0]) == [
            "verdict_id", "ts_ms", "device_id", "point", "rule", "model", "model_version",
            "label", "ok", "operator_label", "note", "samples",
        ]  # fmt: skip
        by_id = {int(r["verdict_id"]): r for r in rows}
        assert by_id[first.id]["operator_label"] == flipped
        assert len(json.loads(by_id[first.id]["samples"])) == 256
        # the CSV samples are the archived float32 samples, and so are Parquet's
        curve = await stub.QueryTelemetry(pb.QueryTelemetryRequest())
        archived_samples = {
            (t.device_id, t.msg_id): np.frombuffer(t.curve.samples_f32, dtype="<f4")
            for t in curve.records
        }
        parsed = np.array(json.loads(by_id[first.id]["samples"]), dtype="<f4")
        assert np.array_equal(parsed, archived_samples[(first.device_id, first.msg_id)])
        labelled = await _export(
            stub, kind=pb.EXPORT_KIND_CURVES, format=pb.EXPORT_FORMAT_PARQUET, labelled=True
        )
        table = pq.read_table(io.BytesIO(labelled))
        assert sorted(table.column("verdict_id").to_pylist()) == sorted([first.id, second.id])
        assert str(table.schema.field("samples").type) == "list<element: double>"
        assert len(table.column("samples")[0].as_py()) == 256
        first_row = table.column("verdict_id").to_pylist().index(first.id)
        exact = np.array(table.column("samples")[first_row].as_py(), dtype="<f4")
        assert np.array_equal(exact, archived_samples[(first.device_id, first.msg_id)])
        one_device = await _export(
            stub, kind=pb.EXPORT_KIND_VERDICTS, format=pb.EXPORT_FORMAT_PARQUET, device_id="press-0"
        )
        assert set(pq.read_table(io.BytesIO(one_device)).column("device_id").to_pylist()) == {
            "press-0"
        }
        tele = await _export(stub, kind=pb.EXPORT_KIND_TELEMETRY)
        assert len(list(csv.DictReader(io.StringIO(tele.decode())))) == len(records)
        alarms = await _export(stub, kind=pb.EXPORT_KIND_ALARMS, format=pb.EXPORT_FORMAT_PARQUET)
        assert pq.read_table(io.BytesIO(alarms)).column_names[0] == "id"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _export(stub, kind=pb.EXPORT_KIND_ALARMS, labelled=True)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # --- shadow evaluation ----------------------------------------------------
        async def evaluated() -> pb.GetModelEvaluationResponse | None:
            ev = await stub.GetModelEvaluation(
                pb.GetModelEvaluationRequest(model="curve-quality", version="2")
            )
            return ev if ev.compared >= len(kinds) * 3 else None

        ev = await eventually(evaluated, timeout=20)
        assert ev is not None
        # the same weights: every curve agrees, and both got the same labelled ones right
        assert (ev.agreed, ev.agreement_rate) == (ev.compared, 1.0)
        assert ev.candidate_correct == ev.promoted_correct
        assert not ev.disagreements

        # --- backtest -------------------------------------------------------------
        window = common_pb2.TimeRange()
        report = await stub.RunBacktest(
            pb.RunBacktestRequest(rule="demo", model_version="1", time_range=window)
        )
        assert report.curves == len(records)
        assert report.changed == 0  # the same verdicts as the live run
        assert (report.labelled, report.archived_correct) == (2, 1)
        assert report.backtest_correct == 1
        assert report.curves_per_s > 0
        not_ok = sum(1 for r in records if not r.ok)
        replay = await stub.RunBacktest(
            pb.RunBacktestRequest(rule="demo", alarm=pb.AlarmRule(threshold=1, window_s=3600))
        )
        assert replay.curves == len(records)
        assert {a.device_id for a in replay.alarms} <= {"press-0", "press-1"}
        assert len(replay.alarms) >= (1 if not_ok else 0)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RunBacktest(pb.RunBacktestRequest(rule="nope", model_version="1"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
