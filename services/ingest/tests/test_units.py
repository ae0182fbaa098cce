"""Payload validation, rule templates and configuration, without I/O."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from linewatch_ingest.config import IngestConfig, RuleConfig
from linewatch_ingest.payload import MAX_VALUES, BadPayload, parse_telemetry
from linewatch_ingest.rules import TopicTemplate, rule_from_proto, rule_to_proto, validate_rule
from linewatch_ingest.webhooks import dingtalk_sign, feishu_sign

from linewatch.runtime.config import load_config
from linewatch.runtime.errors import ConfigError, InvalidArgument


def _msg(**fields: object) -> bytes:
    body: dict[str, object] = {"device_id": "d", "point": "p", "ts": 1, "values": [1.0, 2]}
    body.update(fields)
    return json.dumps(body).encode()


def test_payload_accepts_spec_examples() -> None:
    tele = parse_telemetry(
        _msg(ts="2025-11-22T10:00:00Z", msg_id="x", attrs={"line": "A", "n": 3}),
        fallback_msg_id="fb",
    )
    assert tele.ts_ms == 1763805600000
    assert tele.msg_id == "x"
    assert tele.has_msg_id
    assert tele.attrs == {"line": "A", "n": "3"}
    assert tele.values.dtype == np.float32
    assert tele.values.tolist() == [1.0, 2.0]
    no_id = parse_telemetry(_msg(values=[0.5] * MAX_VALUES), fallback_msg_id="fb")
    assert no_id.msg_id == "fb"
    assert not no_id.has_msg_id
    assert len(no_id.values) == MAX_VALUES


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_msg(msg_id=""), "msg_id: must be a non-empty string"),
        (_msg(attrs=[1]), "attrs: must be an object"),
        (_msg(attrs={"a": {"b": 1}}), "attrs.a: must be a string, number or bool"),
        (_msg(values=[[1, 2]]), "values: must be a flat array of numbers"),
        (_msg(values=[1, None]), "values: must be a flat array of numbers"),
        (_msg(values=[1e400]), "not a finite number"),
        (_msg(values=[1.0, 1e39]), "values: not a finite number at index 1"),  # > float32
        (_msg(point=""), "point: must be 1..200 characters"),
        (_msg(ts=1e20), "not a valid epoch-milliseconds time"),
    ],
)
def test_payload_rejections_name_the_field(payload: bytes, reason: str) -> None:
    with pytest.raises(BadPayload) as err:
        parse_telemetry(payload, fallback_msg_id="fb")
    assert reason in err.value.message


def test_payload_nested_too_deep_is_refused_unless_the_caller_checked() -> None:
    deep = (
        b'{"device_id": "d", "point": "p", "ts": 1, "values": '
        + b"[" * 40
        + b"1"
        + b"]" * 40
        + b"}"
    )
    with pytest.raises(BadPayload, match="JSON nested deeper than 32 levels"):
        parse_telemetry(deep)
    # the MQTT intake refused it before (it scans every payload): no second scan, and
    # what the decoder finds is the reason
    with pytest.raises(BadPayload, match="values: must be a flat array of numbers"):
        parse_telemetry(deep, depth_checked=True)


def test_template_substitutes_wildcard_levels_and_payload_fields() -> None:
    t = TopicTemplate.compile("plant/{1}/{2}/verdict", "plant/+/+/telemetry")
    assert t.render("plant/A/press-07/telemetry", device_id="x", point="y") == (
        "plant/A/press-07/verdict"
    )
    shared = TopicTemplate.compile("out/{device_id}/{point}/{1}", "$share/g1/in/+/#")
    assert shared.render("in/L1/a/b", device_id="d", point="p") == "out/d/p/L1"
    hashed = TopicTemplate.compile("out/{2}/{3}", "in/+/#")
    assert hashed.render("in/L1/a/b", device_id="d", point="p") == "out/a/b"


@pytest.mark.parametrize(
    ("template", "source", "reason"),
    [
        ("out/{3}", "in/+/+", "{3} but the filter has 2 wildcard(s)"),
        ("out/{device}", "in/+", "unknown placeholder {device}"),
        ("out/+", "in/+", "without wildcards"),
        ("out", "in/#/x", "'#' must be the last level"),
        ("out", "in/a+", "wildcards must fill a level"),
        ("out", "$share//in", "bad $share"),
    ],
)
def test_bad_templates_and_filters_are_refused(template: str, source: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        TopicTemplate.compile(template, source)
    assert reason in err.value.message


def test_rules_round_trip_through_the_api_form() -> None:
    rule = RuleConfig(name="r1", source_topic="a/+", model="m", output_topic="b/{1}", archive=False)
    assert rule_from_proto(rule_to_proto(rule)) == rule
    with pytest.raises(InvalidArgument, match="no broker named"):
        validate_rule(rule.model_copy(update={"broker": "x"}), {"default"})
    bad = rule_to_proto(rule)
    bad.name = "has space"
    with pytest.raises(InvalidArgument, match=r"rule\.name"):
        rule_from_proto(bad)


def test_default_config_runs_the_demo_rule() -> None:
    config = IngestConfig()
    assert config.grpc.port == 50051
    assert config.inference.target == "127.0.0.1:50052"
    assert config.deadletter_topic == "linewatch/deadletter"
    (rule,) = config.rules
    assert (rule.source_topic, rule.model, rule.output_topic, rule.qos) == (
        "plant/+/+/telemetry",
        "curve-quality",
        "plant/{1}/{2}/verdict",
        1,
    )


def test_config_file_in_the_seed_002_shape(tmp_path: Path) -> None:
    path = tmp_path / "ingest.yaml"
    path.write_text(
        "brokers:\n  b1: {url: 'mqtt://10.0.0.1:1883'}\n"
        "rules:\n  - {name: r, broker: b1, source_topic: 'x/+', model: m, "
        "output_topic: 'y/{1}'}\n"
    )
    config = load_config(IngestConfig, service="ingest", path=path, environ={})
    assert config.rules[0].broker == "b1"
    path.write_text(
        "rules:\n  - {name: r, broker: nope, source_topic: 'x', model: m, output_topic: y}\n"
    )
    with pytest.raises(ConfigError, match="no broker named 'nope'"):
        load_config(IngestConfig, service="ingest", path=path, environ={})


def test_feishu_signature_matches_the_documented_algorithm() -> None:
    # https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot: HmacSHA256 with
    # key "timestamp\nsecret" over an empty message, base64-encoded.
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(b"1599360473\nsecret", b"", hashlib.sha256).digest()
    ).decode()
    assert feishu_sign(1599360473, "secret") == expected


def test_dingtalk_signature_matches_the_documented_algorithm() -> None:
    # DingTalk custom robot: HmacSHA256 with key secret over "timestamp_ms\nsecret",
    # base64 (then URL-encoded into the query).
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(b"SECabc", b"1599360473000\nSECabc", hashlib.sha256).digest()
    ).decode()
    assert dingtalk_sign(1599360473000, "SECabc") == expected


def test_batch_result_reads_packed_and_per_curve_scores_alike() -> None:
    from linewatch_ingest.inference_client import BatchResult

    from linewatch.runtime.errors import Unavailable
    from linewatch.v1 import inference_pb2 as pb

    labels = ["ok", "spike", "drift"]
    rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]], dtype="<f4")
    packed = pb.BatchScores(
        model="m", version="2", labels=labels, probabilities_f32=rows.tobytes(), ok_labels=["ok"]
    )
    plain = pb.BatchScores(model="m", version="2", labels=labels)
    for row in rows:
        top = labels[int(row.argmax())]
        plain.scores.add(label=top, ok=top == "ok", probabilities=row.tolist())
    a, b = BatchResult.from_proto(packed, 3), BatchResult.from_proto(plain, 3)
    for result in (a, b):
        assert result.label_index == [0, 2, 1]
        assert result.ok == [True, False, False]
        assert result.probabilities.tolist() == rows.tolist()
    with pytest.raises(Unavailable, match="probabilities for 4 curves"):
        BatchResult.from_proto(packed, 4)
    with pytest.raises(Unavailable, match="scores for 2 curves"):
        BatchResult.from_proto(plain, 2)


def test_live_verdict_records_carry_the_envelope_of_envelope_rules_only() -> None:
    from linewatch_ingest.payload import Telemetry
    from linewatch_ingest.verdicts import Verdict, stream_records
    from opentelemetry.trace import INVALID_SPAN

    tele = Telemetry("d", "p", 1000, np.zeros(4, np.float32), "m")
    base = Verdict("d", "p", 1000, "m", "m", "1", "ok", {"ok": 1.0}, True, 1.0, "", topic="out/d")
    envelope = {"outside": [3, 9], "max_deviation": 2.5, "learned": 50, "teach_in": 50}
    judged_v = Verdict(
        "d", "p", 1000, "m", "m", "1", "out_of_envelope", {"ok": 1.0}, False, 1.0, "",
        envelope=envelope, topic="out/d",
    )  # fmt: skip
    records, _ = stream_records(
        "r",
        [(tele, "in/d", None, base), (tele, "in/d", None, judged_v)],
        INVALID_SPAN,
        verdicts=True,
        telemetry=False,
    )
    plain, judged = records
    assert not plain.HasField("envelope")
    assert plain.topic == "out/d"
    assert list(judged.envelope.outside) == [3, 9]
    assert judged.envelope.max_deviation == 2.5
    assert judged.envelope.learned == 50


def test_a_verdict_owns_its_json_and_archive_row() -> None:
    from linewatch_ingest.store import VERDICT_COLUMNS
    from linewatch_ingest.verdicts import Verdict

    v = Verdict("d", "p", 1000, "m1", "m", "1", "ok", {"ok": 0.9}, True, 1.5, "ab", topic="o/d")
    body = orjson.loads(v.to_json())
    assert body == {
        "device_id": "d", "point": "p", "ts": 1000, "msg_id": "m1", "model": "m",
        "model_version": "1", "label": "ok", "scores": {"ok": 0.9}, "ok": True,
        "latency_ms": 1.5, "trace_id": "ab",
    }  # fmt: skip
    v.envelope = {"outside": [2, 5], "max_deviation": 1.25, "learned": 3, "teach_in": 3}
    assert orjson.loads(v.to_json())["envelope"]["outside"] == [2, 5]
    row = dict(zip(VERDICT_COLUMNS, v.to_row("r", "{}"), strict=True))
    assert (row["rule"], row["topic"], row["ts_ms"]) == ("r", "o/d", 1000)
    assert orjson.loads(row["scores"]) == {"ok": 0.9}
