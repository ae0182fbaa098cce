"""The gRPC API: rule CRUD applied live and persisted, worker control, queries, streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from linewatch_ingest.app import IngestService, running

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import common_pb2, ingest_pb2_grpc
from linewatch.v1 import ingest_pb2 as pb
from linewatch_dev.testing import operator_channel

from .conftest import Collector, Inference, curve_payload, eventually, ingest_config


@asynccontextmanager
async def _stub(ingest: IngestService) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    async with operator_channel(f"127.0.0.1:{ingest.port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


async def _connected(ingest: IngestService, rule: str) -> None:
    async def check() -> bool:
        worker = ingest.controller.worker(rule)
        return worker is not None and worker.client.connected

    assert await eventually(check, timeout=10)
    await asyncio.sleep(0.2)  # the SUBSCRIBE is on its way


async def test_rule_crud_is_applied_live_and_persisted(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p
    )
    second = pb.Rule(
        name="second",
        broker="default",
        source_topic=f"$share/lw/{p}/+/+/raw",
        model="curve-quality",
        output_topic=f"{p}/out/{{device_id}}/{{point}}/{{2}}",
        qos=1,
        archive=True,
        enabled=True,
    )
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{p}/out/#") as out,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        _stub(ingest) as stub,
    ):
        listed = await stub.ListRules(pb.ListRulesRequest())
        assert [r.name for r in listed.rules] == ["demo"]
        assert listed.rules[0].output_topic == f"{p}/{{1}}/{{2}}/verdict"

        created = await stub.CreateRule(pb.CreateRuleRequest(rule=second))
        assert created.rule.source_topic == second.source_topic
        await _connected(ingest, "second")
        await pub.publish(f"{p}/L1/press-9/raw", curve_payload("press-9", msg_id="a1"))
        (verdict,) = await out.wait_for(1)
        assert out.messages[0].topic == f"{p}/out/press-9/pressure/press-9"
        assert verdict["msg_id"] == "a1"

        updated = pb.Rule()
        updated.CopyFrom(second)
        updated.output_topic = f"{p}/out/v2/{{1}}/verdict"
        await stub.UpdateRule(pb.UpdateRuleRequest(rule=updated))
        got = await stub.GetRule(pb.GetRuleRequest(name="second"))
        assert got.rule.output_topic == f"{p}/out/v2/{{1}}/verdict"
        await _connected(ingest, "second")
        await pub.publish(f"{p}/L1/press-9/raw", curve_payload("press-9", msg_id="a2"))
        await out.wait_for(2)
        assert out.messages[1].topic == f"{p}/out/v2/L1/verdict"

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateRule(pb.CreateRuleRequest(rule=second))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        bad = pb.Rule()
        bad.CopyFrom(second)
        bad.name = "bad"
        bad.output_topic = f"{p}/{{9}}"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateRule(pb.CreateRuleRequest(rule=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "{9}" in (err.value.details() or "")
        bad.output_topic = f"{p}/x"
        bad.broker = "nowhere"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateRule(pb.CreateRuleRequest(rule=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        third = pb.Rule()
        third.CopyFrom(second)
        third.name = "third"
        third.source_topic = f"{p}/+/+/third"
        third.output_topic = f"{p}/out/third"
        await stub.CreateRule(pb.CreateRuleRequest(rule=third))

        await stub.DeleteRule(pb.DeleteRuleRequest(name="second"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetRule(pb.GetRuleRequest(name="second"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        await pub.publish(f"{p}/L1/press-9/raw", curve_payload("press-9", msg_id="a3"))
        await asyncio.sleep(0.8)
        assert len(out.messages) == 2

    # persisted: a new process on the same database has the changed rule set
    async with running(config) as ingest, _stub(ingest) as stub:
        listed = await stub.ListRules(pb.ListRulesRequest())
        assert [r.name for r in listed.rules] == ["demo", "third"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_stop_start_pause_resume_and_workers(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=p
    )
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{p}/+/+/verdict") as verdicts,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
    ):
        await _connected(ingest, "demo")
        async with _stub(ingest) as stub:
            await stub.PauseRule(pb.PauseRuleRequest(name="demo"))
            status = await stub.GetIngestStatus(pb.GetIngestStatusRequest())
            assert status.rules[0].state == pb.WORKER_STATE_PAUSED
            for i in range(3):
                await pub.publish(f"{p}/A/d1/telemetry", curve_payload("d1", msg_id=f"p{i}"))
            await asyncio.sleep(0.8)
            assert verdicts.messages == []
            await stub.ResumeRule(pb.ResumeRuleRequest(name="demo"))
            await verdicts.wait_for(3)

            stopped = await stub.StopIngest(pb.StopIngestRequest())
            assert stopped.status.state == pb.WORKER_STATE_STOPPED
            assert stopped.status.rules[0].state == pb.WORKER_STATE_STOPPED
            for i in range(3):
                await pub.publish(f"{p}/A/d1/telemetry", curve_payload("d1", msg_id=f"s{i}"))
            await asyncio.sleep(0.8)
            assert len(verdicts.messages) == 3
            started = await stub.StartIngest(pb.StartIngestRequest())
            assert started.status.state == pb.WORKER_STATE_RUNNING
            got = await verdicts.wait_for(6)
            assert sorted(v["msg_id"] for v in got) == ["p0", "p1", "p2", "s0", "s1", "s2"]

            assert (await stub.SetWorkers(pb.SetWorkersRequest(workers=2))).workers == 2
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SetWorkers(pb.SetWorkersRequest(workers=0))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.PauseRule(pb.PauseRuleRequest(name="nope"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

            async def all_archived() -> bool:
                s = await stub.GetIngestStatus(pb.GetIngestStatusRequest())
                return bool(s.rules[0].verdicts == 3)  # counters restart with the worker

            assert await eventually(all_archived)
            status = await stub.GetIngestStatus(pb.GetIngestStatusRequest())
            assert status.workers == 2
            rule = status.rules[0]
            assert rule.state == pb.WORKER_STATE_RUNNING
            assert rule.received == 3
            assert rule.verdicts_per_s > 0
            assert rule.pre_queue == 0

            # archive queries and the live stream
            page = await stub.QueryVerdicts(
                pb.QueryVerdictsRequest(
                    filter=pb.ArchiveFilter(
                        device_id="d1", page=common_pb2.PageRequest(page_size=4)
                    )
                )
            )
            assert len(page.records) == 4
            assert page.next_page_token
            rest = await stub.QueryVerdicts(
                pb.QueryVerdictsRequest(
                    filter=pb.ArchiveFilter(
                        device_id="d1", page=common_pb2.PageRequest(page_token=page.next_page_token)
                    )
                )
            )
            assert len(rest.records) == 2
            assert not rest.next_page_token
            assert {r.msg_id for r in [*page.records, *rest.records]} == {
                "p0", "p1", "p2", "s0", "s1", "s2"
            }  # fmt: skip
            tele = await stub.QueryTelemetry(pb.QueryTelemetryRequest(filter=pb.ArchiveFilter()))
            assert len(tele.records) == 6
            assert len(tele.records[0].curve.samples_f32) == 256 * 4

            stream = stub.StreamVerdicts(pb.StreamVerdictsRequest())
            reader = asyncio.ensure_future(stream.read())
            await asyncio.sleep(0.3)
            await pub.publish(f"{p}/A/d2/telemetry", curve_payload("d2", msg_id="live"))
            async with asyncio.timeout(10):
                item = await reader
            assert item.verdict.msg_id == "live"
            assert item.verdict.model == "curve-quality"
            stream.cancel()
