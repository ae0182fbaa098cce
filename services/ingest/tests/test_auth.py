"""Ingest's gRPC API needs a token; ingest scores through inference over mTLS."""

from __future__ import annotations

from pathlib import Path

from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from linewatch_ingest.app import running
from linewatch_ingest.config import AlarmRuleConfig
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from linewatch.runtime.config import (
    GrpcAuthConfig,
    GrpcCaller,
    GrpcClientConfig,
    GrpcTlsConfig,
    MqttConfig,
)
from linewatch.runtime.mqtt import MqttClient
from linewatch_dev.testing import assert_every_method_guarded, free_port, secured_grpc, write_pki

from .conftest import ROOT, Collector, Inference, curve_payload, demo_rule, ingest_config

INGEST_TOKEN = "ingest-caller-token"


async def test_every_ingest_method_refuses_missing_and_wrong_tokens(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=database_url, inference=inference, prefix=topic_prefix
    )
    async with running(config) as ingest:
        checked = await assert_every_method_guarded(f"127.0.0.1:{ingest.port}")
    assert "/linewatch.v1.IngestService/CreateRule" in checked


async def test_ingest_scores_over_mtls_with_its_own_token(
    mqtt_url: str, database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    pki = write_pki(tmp_path)
    port = free_port()
    inference = InferenceServer(
        InferenceConfig(
            grpc=secured_grpc(
                port=port,
                grace_s=0.2,
                tls=GrpcTlsConfig(
                    cert_file=pki["server_cert"],
                    key_file=pki["server_key"],
                    client_ca_file=pki["ca"],
                ),
                auth=GrpcAuthConfig(
                    callers=[
                        GrpcCaller(name="ingest", role="ingest", token=SecretStr(INGEST_TOKEN))
                    ]
                ),
            ),
            model_dir=ROOT / "models",
            data_dir=tmp_path / "inference",
            max_queue_delay_ms=1.0,
        ),
        metrics=InferenceMetrics(CollectorRegistry()),
    )
    await inference.start()
    target = Inference(tmp_path)
    target.port = port
    client = GrpcClientConfig(
        token=SecretStr(INGEST_TOKEN),
        ca_file=pki["ca"],
        cert_file=pki["client_cert"],
        key_file=pki["client_key"],
    )
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=database_url,
        inference=target,
        prefix=topic_prefix,
        grpc=secured_grpc(port=0, grace_s=0.5, client=client),
    )
    try:
        async with (
            running(config),
            Collector(mqtt_url, f"{topic_prefix}/+/+/verdict") as out,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            await pub.publish(
                f"{topic_prefix}/line-1/press-01/telemetry",
                curve_payload("press-01"),
                qos=1,
            )
            verdicts = await out.wait_for(1)
        assert verdicts[0]["device_id"] == "press-01"
    finally:
        await inference.stop()


async def test_webhook_secrets_reach_only_callers_that_may_write_rules(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    from linewatch.runtime.config import GrpcAuthConfig, GrpcCaller
    from linewatch.v1 import ingest_pb2, ingest_pb2_grpc
    from linewatch_dev.testing import TEST_TOKEN, operator_channel

    hook = "https://open.feishu.cn/open-apis/bot/v2/hook/secret-hook-token"
    auth = GrpcAuthConfig(
        callers=[
            GrpcCaller(name="ops", role="operator", token=SecretStr(TEST_TOKEN)),
            GrpcCaller(name="viewer", role="read-only", token=SecretStr("viewer-token")),
        ]
    )
    rule = demo_rule(topic_prefix).model_copy(
        update={
            "alarm": AlarmRuleConfig(
                threshold=3, window_s=60, webhook_url=hook, webhook_secret="sign-secret"
            )
        }
    )
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=database_url,
        inference=inference,
        prefix=topic_prefix,
        rules=[rule],
        grpc=secured_grpc(port=0, grace_s=0.5, auth=auth),
    )
    async with running(config) as ingest:
        target = f"127.0.0.1:{ingest.port}"
        seen: dict[str, ingest_pb2.Rule] = {}
        for who, token in (("ops", TEST_TOKEN), ("viewer", "viewer-token")):
            async with operator_channel(target, token=token) as channel:
                stub = ingest_pb2_grpc.IngestServiceStub(channel)
                listed = await stub.ListRules(ingest_pb2.ListRulesRequest())
                got = await stub.GetRule(ingest_pb2.GetRuleRequest(name="demo"))
                assert listed.rules[0] == got.rule
                seen[who] = got.rule
    assert seen["ops"].alarm.webhook_url == hook
    assert seen["ops"].alarm.webhook_secret == "sign-secret"
    assert seen["viewer"].alarm.webhook_url == "https://open.feishu.cn/***"
    assert seen["viewer"].alarm.webhook_secret == "***"


async def test_the_ota_role_may_ask_verdict_counts_and_nothing_else(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    import grpc
    import pytest

    from linewatch.v1 import ingest_pb2, ingest_pb2_grpc
    from linewatch_dev.testing import operator_channel

    auth = GrpcAuthConfig(
        callers=[GrpcCaller(name="ota", role="ota", token=SecretStr("ota-caller-token"))]
    )
    config = ingest_config(
        mqtt_url=mqtt_url,
        database_url=database_url,
        inference=inference,
        prefix=topic_prefix,
        grpc=secured_grpc(port=0, grace_s=0.5, auth=auth),
    )
    async with (
        running(config) as ingest,
        operator_channel(f"127.0.0.1:{ingest.port}", token="ota-caller-token") as channel,
    ):
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        request = ingest_pb2.QueryVerdictCountsRequest(last_cycles=5, next_cycles=5)
        request.devices.add(device_id="press-01").around.FromSeconds(1_700_000_000)
        reply = await stub.QueryVerdictCounts(request)
        assert reply.devices[0].device_id == "press-01"
        assert reply.devices[0].before.total == 0
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.QueryVerdicts(ingest_pb2.QueryVerdictsRequest())
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.QueryVerdictCounts(ingest_pb2.QueryVerdictCountsRequest())
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        both = ingest_pb2.QueryVerdictCountsRequest(last_cycles=5)
        both.devices.add(device_id="press-01").around.FromSeconds(1)
        both.window.start.FromSeconds(0)
        both.window.end.FromSeconds(1)
        with pytest.raises(grpc.aio.AioRpcError) as mixed:
            await stub.QueryVerdictCounts(both)
        assert "either window or" in (mixed.value.details() or "")
