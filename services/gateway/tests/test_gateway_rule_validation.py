"""One rule validation, owned by ingest: for each edge case the gateway (REST) and ingest
(gRPC) accept the same rules and refuse the others with the same reason."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]

from linewatch.v1 import ingest_pb2, ingest_pb2_grpc
from linewatch_dev.testing import operator_channel

from .conftest import Stack, auth

# (case, changes to a valid rule, accepted?); None as a value: the field left out
CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("name of 100 characters", {"name": "r" * 100}, True),
    ("name of 101 characters", {"name": "r" * 101}, False),
    ("name of 128 characters", {"name": "r" * 128}, False),
    ("name with a colon", {"name": "line:1"}, False),
    ("empty name", {"name": ""}, False),
    ("alarm with the default threshold", {"alarm": {"window_s": 30}}, True),
    ("alarm threshold 0", {"alarm": {"threshold": 0}}, True),
    ("feishu alarm without url", {"alarm": {"threshold": 2, "webhook_format": "feishu"}}, False),
    ("missing output_topic", {"output_topic": None}, False),
    ("missing source_topic", {"source_topic": None}, False),
    ("missing model", {"model": None}, False),
    ("pinned model version", {"model_version": "2"}, True),
    ("model version with a slash", {"model_version": "../2"}, False),
    ("model version of 33 characters", {"model_version": "v" * 33}, False),
    ("qos 3", {"qos": 3}, False),
    ("unknown broker", {"broker": "nowhere"}, False),
    ("filter matching linewatch's own topics", {"source_topic": "linewatch/#"}, False),
    ("filter matching its own output", {"source_topic": "{root}/+/t"}, False),
    ("target name of 65 characters", {"target": "t" * 65}, False),
    ("envelope teach_in 1", {"model": "envelope", "model_params": {"teach_in": 1}}, False),
    ("envelope negative width", {"model": "envelope", "model_params": {"width": -1.0}}, False),
    ("envelope length 8", {"model": "envelope", "model_params": {"length": 8}}, False),
    ("envelope max_shift 0.5", {"model": "envelope", "model_params": {"max_shift": 0.5}}, False),
    ("envelope defaults", {"model": "envelope", "model_params": {}}, True),
]


def _body(stack: Stack, case: int, changes: dict[str, Any]) -> dict[str, Any]:
    root = f"{stack.topic_root}/rv{case}"
    body: dict[str, Any] = {
        "name": f"rv-{case}",
        "source_topic": f"{root}/+/telemetry",
        "model": "curve-quality",
        "output_topic": f"{root}/{{1}}/t",
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value.replace("{root}", root) if isinstance(value, str) else value
    return body


async def _over_grpc(
    stub: ingest_pb2_grpc.IngestServiceStub, body: dict[str, Any]
) -> tuple[bool, str, int]:
    rule = json_format.ParseDict(body, ingest_pb2.Rule())
    try:
        made = await stub.CreateRule(ingest_pb2.CreateRuleRequest(rule=rule))
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code(), exc.details() or ""
    else:
        await stub.DeleteRule(ingest_pb2.DeleteRuleRequest(name=rule.name))
        return True, "", made.rule.alarm.threshold
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    return False, details, 0


async def _over_rest(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[bool, str, int]:
    resp = await client.post("/v1/rules", json=body, headers=auth())
    if resp.status_code != 201:
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["code"] == "invalid_argument"
        return False, str(error["message"]), 0
    deleted = await client.delete(f"/v1/rules/{body['name']}", headers=auth())
    assert deleted.status_code == 204, deleted.text
    return True, "", int(resp.json().get("alarm", {}).get("threshold", 0))


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[c[0] for c in CASES])
async def test_gateway_and_ingest_judge_a_rule_alike(
    client: httpx.AsyncClient, stack: Stack, index: int, case: tuple[str, dict[str, Any], bool]
) -> None:
    _, changes, accepted = case
    body = _body(stack, index, changes)
    async with operator_channel(stack.addrs["ingest"]) as channel:
        by_grpc = await _over_grpc(ingest_pb2_grpc.IngestServiceStub(channel), body)
    by_rest = await _over_rest(client, body)
    assert by_grpc[0] is accepted, by_grpc
    assert by_rest == by_grpc
    if not accepted:
        assert by_grpc[1]  # a refusal names its reason
