"""The built-in envelope model: band fitting, verdicts, windows, persistence, the pipeline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import pytest
from linewatch_ingest.app import IngestService, running
from linewatch_ingest.config import ModelParams, MonitorWindow, RuleConfig
from linewatch_ingest.envelope import (
    EnvelopeParams,
    EnvelopeState,
    resample_batch,
    score_bands,
    score_batch,
)
from linewatch_ingest.envelope_store import EnvelopeStore
from linewatch_ingest.payload import Telemetry
from linewatch_ingest.rules import rule_from_proto, rule_to_proto
from linewatch_ingest.scorers import EnvelopeScorer
from linewatch_ingest.verdicts import Verdict
from linewatch_ingest.windows import judge_windows
from pydantic import ValidationError

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.db import Database
from linewatch.runtime.errors import InvalidArgument
from linewatch.runtime.mqtt import MqttClient
from linewatch.v1 import ingest_pb2 as pb
from linewatch.v1 import ingest_pb2_grpc
from linewatch_dev.press_cycles import PRESS_KINDS, press_cycle
from linewatch_dev.testing import operator_channel

from .conftest import Collector, Inference, eventually, ingest_config


def _teach(n: int, seed: int = 1) -> tuple[EnvelopeState, np.random.Generator]:
    rng = np.random.default_rng(seed)
    params = EnvelopeParams(teach_in=n)
    state = EnvelopeState(params)
    state.teach(resample_batch([press_cycle("ok", rng) for _ in range(n)], params.length))
    return state, rng


def test_band_judges_an_unseen_family_both_ways() -> None:
    state, rng = _teach(30)
    assert state.band is not None
    for kind in PRESS_KINDS:
        curves = [press_cycle(kind, rng) for _ in range(100)]
        lengths = np.array([len(c) for c in curves])
        result = score_batch(resample_batch(curves, 256), state.band, lengths)
        right = result.ok.mean() if kind == "ok" else 1 - result.ok.mean()
        assert right >= 0.95, (kind, right)


def test_many_bands_in_one_batch_judge_as_each_band_alone() -> None:
    states = [_teach(12, seed=s)[0] for s in range(4)]
    bands = [st.band for st in states if st.band is not None]
    rng = np.random.default_rng(8)
    kinds = list(PRESS_KINDS) * 8
    curves = [press_cycle(k, rng) for k in kinds]
    x = resample_batch(curves, 256)
    lengths = np.array([len(c) for c in curves])
    which = np.arange(len(curves)) % len(bands)
    together = score_bands(x, bands, which, lengths)
    for b, band in enumerate(bands):
        rows = np.flatnonzero(which == b)
        alone = score_batch(x[rows], band, lengths[rows])
        assert (together.ok[rows] == alone.ok).all()
        assert (together.first[rows] == alone.first).all()
        assert (together.last[rows] == alone.last).all()
        np.testing.assert_allclose(together.max_deviation[rows], alone.max_deviation, rtol=1e-4)


def test_verdict_names_the_stretch_that_left_in_raw_samples() -> None:
    state, rng = _teach(30)
    assert state.band is not None
    curve = press_cycle("ok", rng, length=300)
    curve[150:160] += 200.0
    result = score_batch(resample_batch([curve], 256), state.band, np.array([300]))
    assert not result.ok[0]
    assert 148 <= result.first[0] <= 151
    assert 158 <= result.last[0] <= 161
    assert result.max_deviation[0] > 1.0


def test_flat_stretches_get_a_band_and_small_shifts_are_aligned() -> None:
    params = EnvelopeParams(teach_in=10)
    state = EnvelopeState(params)
    base = np.r_[np.zeros(100), np.linspace(0, 100, 56), np.full(100, 100.0)].astype(np.float32)
    state.teach(np.stack([base] * 10))  # identical curves: zero MAD everywhere
    assert state.band is not None
    assert float(state.band.spread.min()) > 0
    shifted = np.roll(base, 4)
    shifted[:4] = 0
    result = score_batch(shifted[None, :], state.band, np.array([256]))
    assert result.ok[0]  # a 4-sample (1.6 %) timing shift is aligned away
    moved = np.roll(base, 40)
    moved[:40] = 0
    assert not score_batch(moved[None, :], state.band, np.array([256])).ok[0]


def test_windows_pass_enter_exit_and_avoid() -> None:
    ramp = np.linspace(0.0, 100.0, 101).astype(np.float32)
    through = MonitorWindow(name="w", x_min=0.4, x_max=0.6, y_min=30, y_max=70)
    top_exit = MonitorWindow(name="t", x_min=0.4, x_max=0.8, y_min=30, y_max=70, exit="top")
    wrong = MonitorWindow(name="r", x_min=0.4, x_max=0.8, y_min=30, y_max=70)
    avoid = MonitorWindow(name="a", x_min=0.0, x_max=1.0, y_min=150, y_max=200, mode="avoid")
    below = MonitorWindow(name="b", x_min=0.1, x_max=0.2, y_min=50, y_max=60)
    [results] = judge_windows([ramp], [through, top_exit, wrong, avoid, below])
    by = {r.name: r for r in results}
    assert by["w"].ok
    assert by["t"].ok
    assert by["a"].ok
    assert not by["r"].ok
    assert "left through top" in by["r"].reason
    assert by["r"].index == 71
    assert not by["b"].ok
    assert by["b"].reason == "not entered"
    spiky = ramp.copy()
    spiky[50] = 170
    [results] = judge_windows([spiky], [avoid])
    assert not results[0].ok
    assert results[0].reason == "touched"
    assert results[0].index == 50


def test_windows_and_params_are_validated() -> None:
    with pytest.raises(ValidationError, match="x_min must be below x_max"):
        MonitorWindow(name="w", x_min=0.6, x_max=0.4, y_min=0, y_max=1)
    with pytest.raises(ValidationError, match="time fraction"):
        MonitorWindow(name="w", x_min=0.5, x_max=2, y_min=0, y_max=1)
    with pytest.raises(ValidationError):
        MonitorWindow(name="w", x_min=0, x_max=1, y_min=0, y_max=float("nan"))
    with pytest.raises(ValidationError, match="unique"):
        ModelParams(windows=(MonitorWindow(name="w", x_min=0, x_max=1, y_min=0, y_max=1),) * 2)
    rule = pb.Rule(
        name="e", source_topic="a/+", model="envelope", output_topic="b/{1}",
        model_params=pb.ModelParams(teach_in=1),
    )  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"rule\.model_params\.teach_in"):
        rule_from_proto(rule)
    rule.model_params.teach_in = 20
    rule.model_params.windows.add(name="w", x_min=0.1, x_max=0.2, y_min=0, y_max=5)
    back = rule_from_proto(rule)
    assert back.model_params.teach_in == 20
    assert back.model_params.width == 4.0
    assert back.model_params.windows[0].enter == "left"
    assert back.model_params.windows[0].exit == "right"
    assert rule_from_proto(rule_to_proto(back)) == back


def _env(v: Verdict) -> dict[str, Any]:
    assert v.envelope is not None
    return v.envelope


def _tele(values: np.ndarray, device: str = "press-1", point: str = "force") -> Telemetry:
    return Telemetry(device, point, int(time.time() * 1000), values, uuid.uuid4().hex)


def _rule(**params: object) -> RuleConfig:
    return RuleConfig(
        name="env",
        source_topic="x/+",
        model="envelope",
        output_topic="y/{1}",
        model_params=ModelParams.model_validate(params),
    )


async def test_scorer_learns_then_judges_and_survives_a_restart(database_url: str) -> None:
    db = Database(database_url)
    try:
        rng = np.random.default_rng(3)
        window = MonitorWindow(
            name="press-in", x_min=0.5, x_max=0.7, y_min=500, y_max=900, enter="left", exit="right"
        )
        rule = _rule(teach_in=12, windows=[window.model_dump()])
        scorer = EnvelopeScorer(rule, EnvelopeStore(db))
        first = await scorer.score([_tele(press_cycle("ok", rng)) for _ in range(8)])
        assert [v.label for v in first] == ["learning"] * 8
        assert all(v.ok for v in first)
        assert [_env(v)["learned"] for v in first] == list(range(1, 9))
        # a cycle that misses the window is not taught
        low = press_cycle("ok", rng) * 0.5
        [missed] = await scorer.score([_tele(low)])
        assert missed.label == "out_of_window"
        assert not missed.ok
        assert _env(missed)["windows"][0]["reason"] == "not entered"
        # a restart continues teach-in from the database
        scorer = EnvelopeScorer(rule, EnvelopeStore(db))
        mixed = await scorer.score([_tele(press_cycle("ok", rng)) for _ in range(6)])
        assert [v.label for v in mixed] == ["learning"] * 4 + ["ok"] * 2
        scorer = EnvelopeScorer(rule, EnvelopeStore(db))
        step = press_cycle("step", rng)
        [bad, good] = await scorer.score([_tele(step), _tele(press_cycle("ok", rng))])
        assert bad.label == "out_of_envelope"
        assert not bad.ok
        assert _env(bad)["outside"][0] <= _env(bad)["outside"][1]
        assert _env(bad)["max_deviation"] > 1
        assert good.label == "ok"
        assert _env(good)["outside"] is None
        # another device teaches its own band
        [other] = await scorer.score([_tele(press_cycle("ok", rng), device="press-2")])
        assert other.label == "learning"
        assert await scorer.reset("press-1") == 1
        [again] = await scorer.score([_tele(press_cycle("ok", rng))])
        assert again.label == "learning"
        assert _env(again)["learned"] == 1
        fresh = EnvelopeScorer(rule, EnvelopeStore(db))
        await fresh.load()
        state = fresh.state("press-1", "force")
        assert state is not None
        assert state.learned == 1
    finally:
        await db.close()


@asynccontextmanager
async def _stub(ingest: IngestService) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    async with operator_channel(f"127.0.0.1:{ingest.port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


async def test_envelope_rule_runs_in_the_pipeline(
    mqtt_url: str, sqlite_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    rule = RuleConfig(
        name="env",
        source_topic=f"{p}/+/cycle",
        model="envelope",
        output_topic=f"{p}/{{1}}/judged",
        model_params=ModelParams(teach_in=20),
    )
    config = ingest_config(
        mqtt_url=mqtt_url, database_url=sqlite_url, inference=inference, prefix=p, rules=[rule]
    )
    rng = np.random.default_rng(11)
    kinds = ["ok"] * 20 + ["ok", "spike", "ok", "step", "drift", "noise"]
    async with (
        running(config) as ingest,
        Collector(mqtt_url, f"{p}/+/judged") as out,
        MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        _stub(ingest) as stub,
    ):

        async def connected() -> bool:
            worker = ingest.controller.worker("env")
            return worker is not None and worker.client.connected

        assert await eventually(connected, timeout=10)
        ids = []
        for i, kind in enumerate(kinds):
            msg_id = f"m{i}"
            ids.append(msg_id)
            body = {
                "device_id": "press-9",
                "point": "force",
                "ts": 1763800000000 + i,
                "values": [round(float(v), 3) for v in press_cycle(kind, rng)],
                "msg_id": msg_id,
            }
            await pub.publish(f"{p}/press-9/cycle", json.dumps(body).encode(), qos=1)
            if i == 19:  # teach-in in order before the rest
                await out.wait_for(20)
        verdicts = {v["msg_id"]: v for v in await out.wait_for(len(kinds))}
        labels = [verdicts[i]["label"] for i in ids]
        assert labels[:20] == ["learning"] * 20
        out_ = "out_of_envelope"
        assert labels[20:] == ["ok", out_, "ok", out_, out_, out_]
        assert verdicts["m21"]["model"] == "envelope"
        band = await stub.GetEnvelope(
            pb.GetEnvelopeRequest(rule="env", device_id="press-9", point="force")
        )
        assert band.ready
        assert len(band.centre) == 256
        assert band.learned == 20
        assert all(lo < hi for lo, hi in zip(band.lower, band.upper, strict=True))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetEnvelope(
                pb.GetEnvelopeRequest(rule="env", device_id="nope", point="force")
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        reset = await stub.ResetEnvelope(pb.ResetEnvelopeRequest(rule="env"))
        assert reset.reset == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ResetEnvelope(pb.ResetEnvelopeRequest(rule="nope"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # a rule deleted and made again teaches afresh
        await pub.publish(f"{p}/press-9/cycle", json.dumps({
            "device_id": "press-9", "point": "force", "ts": 1, "msg_id": "again",
            "values": [float(v) for v in press_cycle("ok", rng)],
        }).encode(), qos=1)  # fmt: skip
        await out.wait_for(len(kinds) + 1)
        await stub.DeleteRule(pb.DeleteRuleRequest(name="env"))
        await stub.CreateRule(pb.CreateRuleRequest(rule=rule_to_proto(rule)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetEnvelope(
                pb.GetEnvelopeRequest(rule="env", device_id="press-9", point="force")
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
