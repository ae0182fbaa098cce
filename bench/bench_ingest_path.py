"""Ingest's per-message path in process, without a broker: microseconds per message.

``python -m bench.bench_ingest_path [--messages N] [--quick] [--profile FILE]`` (figures
also to ``bench/results/ingest_path.json``). Messages shaped as
``make bench`` sends them (a 256-sample curve, a ``msg_id``) go through the rule's real
code, stage by stage:

* ``admit``: the intake's MQTT handler (depth guard, :meth:`Admission.parse`, the
  duplicate key, the in-flight map, the batch queue);
* ``parse``: :func:`parse_telemetry` alone (the part of ``admit`` that reads the JSON);
* ``verdicts``: a scored batch (probabilities as the inference service returns them) into
  :class:`Verdict` objects, each published as JSON on its rendered topic, and the
  archive rows;
* ``settle``: acknowledging each message (the in-flight map, the memory of handled ids).

The model is not run (its cost is the inference service's). Figures are printed, never
asserted; on a shared machine they move by several per cent between runs.

``--old`` drives the same stages through the code before the pipeline was split into
admission/verdicts/outputs (the rule worker's own ``_admit``, ``_verdicts``, ``_archive``
and ``_settle``), for a comparison run from that tree's checkout with its environment:
``PYTHONPATH=<this checkout> <old tree>/.venv/bin/python -m bench.bench_ingest_path --old``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from linewatch_ingest.config import IngestConfig, RuleConfig
from linewatch_ingest.inference_client import BatchResult
from linewatch_ingest.payload import parse_telemetry
from linewatch_ingest.rules import TopicTemplate

from linewatch.runtime.mqtt import MqttMessage

LABELS = ("good", "drift", "spike", "stuck")
BATCH = 256
DEDUP_CACHE = 100_000
RESULTS = Path(__file__).parent / "results" / "ingest_path.json"


def payloads(n: int) -> list[MqttMessage]:
    """``n`` telemetry messages as the ingest benchmark's load generator sends them."""
    rng = np.random.default_rng(7)
    curves = ["[" + ",".join(f"{v:.3f}" for v in rng.normal(0, 1, 256)) + "]" for _ in range(16)]
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        dev = i % 50
        body = (
            f'{{"device_id":"dev-{dev}","point":"pressure","ts":{now_ms},'
            f'"msg_id":"m-{i}","values":{curves[i % len(curves)]}}}'
        )
        out.append(MqttMessage(f"plant/L{dev % 4}/dev-{dev}/telemetry", body.encode(), 1))
    return out


def _rule() -> RuleConfig:
    return RuleConfig(
        name="bench",
        source_topic="plant/+/+/telemetry",
        model="curve-quality",
        output_topic="plant/verdicts/{device_id}",
    )


def _results(n: int) -> list[BatchResult]:
    """Scores for ``n`` curves in batches of :data:`BATCH`, as inference returns them."""
    rng = np.random.default_rng(1)
    out = []
    for start in range(0, n, BATCH):
        probs = rng.random((min(BATCH, n - start), len(LABELS))).astype(np.float32)
        label_index = [int(i) for i in probs.argmax(axis=1)]
        ok = [bool(x) for x in probs[:, 0] > 0.5]
        out.append(BatchResult("curve-quality", "1", LABELS, probs, label_index, ok))
    return out


def _timed(fn: Callable[[], Any]) -> float:
    """CPU seconds ``fn`` took (the process's own time: on a shared machine, wall time
    counts the other processes' turns too)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


class _Archive:
    async def write(self, *_rows: Any) -> None:
        return None


def _drive(coro: Any) -> None:
    """Run a coroutine that never suspends (its writes go nowhere) to its end."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("the coroutine waited for something")


class StagePath:
    """One tree's stages: each runs over every message once."""

    def __init__(self, messages: list[MqttMessage]) -> None:
        self.messages = messages

    def admit(self) -> None:
        raise NotImplementedError

    def verdicts(self) -> None:
        raise NotImplementedError

    def settle(self) -> None:
        raise NotImplementedError


class CurrentPath(StagePath):
    """The split pipeline: intake → admission → batch scoring's verdicts → outputs."""

    def __init__(self, messages: list[MqttMessage]) -> None:
        super().__init__(messages)
        from typing import cast

        from linewatch_ingest.admission import Admission, Admitted, AdmittedEntry, admitted_key
        from linewatch_ingest.rulestats import Counters
        from linewatch_ingest.store import IngestStore
        from opentelemetry import trace

        from linewatch.runtime.config import MqttConfig
        from linewatch.runtime.intake import DeadLetterPolicy, Intake

        rule = self.rule = _rule()
        self.template = TopicTemplate.compile(rule.output_topic, rule.source_topic)
        self.admission = Admission(
            rule,
            cast(IngestStore, None),  # parse never reads the store
            dedup_cache=DEDUP_CACHE,
            deadletter_topic="linewatch/deadletter",
            counters=Counters(),
            on_error=lambda _stage, _exc: None,
        )

        async def commit(_entries: list[AdmittedEntry]) -> None:
            return None

        self.intake: Intake[Admitted] = Intake(
            name=rule.name,
            broker=MqttConfig(),
            client_id="bench",
            topic_filters=[rule.source_topic],
            parse=self.admission.parse,
            commit=commit,
            dead_letters=DeadLetterPolicy(source="ingest"),
            key=admitted_key,
            on_duplicate=self.admission.duplicate,
        )
        self.intake.resume()  # open the gate without connecting
        self.entries: list[AdmittedEntry] = []
        self.results = _results(len(messages))
        self.span = trace.get_current_span()

    def admit(self) -> None:
        handle = self.intake.handle
        for m in self.messages:
            handle(m)
        queue = self.intake._queue  # no worker: the bench takes the batches
        self.entries = [queue._items.popleft() for _ in range(len(queue))]

    def verdicts(self) -> None:
        from linewatch_ingest.admission import admitted
        from linewatch_ingest.verdicts import archive_rows, verdicts

        rule, template = self.rule, self.template
        for i, result in enumerate(self.results):
            batch = self.entries[i * BATCH : (i + 1) * BATCH]
            vs = verdicts([(admitted(e).tele, admitted(e).span) for e in batch], result, self.span)
            for e, v in zip(batch, vs, strict=True):
                tele = admitted(e).tele
                v.topic = template.render(e.topic, device_id=tele.device_id, point=tele.point)
                v.to_json()
            archive_rows(
                rule.name, [(admitted(e).tele, e.topic, v) for e, v in zip(batch, vs, strict=True)]
            )

    def settle(self) -> None:
        from linewatch_ingest.admission import admitted

        keys = []
        for e in self.entries:
            self.intake.settle(e)
            if (key := admitted(e).key) is not None:
                keys.append(key)
        self.admission.remember(keys)


class OldPath(StagePath):
    """The rule worker before the split (run from that tree: see the module's doc)."""

    def __init__(self, messages: list[MqttMessage]) -> None:
        super().__init__(messages)
        from opentelemetry import trace

        from linewatch.runtime.config import MqttConfig

        pipeline: Any = importlib.import_module("linewatch_ingest.pipeline")
        rule = _rule()
        template = TopicTemplate.compile(rule.output_topic, rule.source_topic)
        deps = SimpleNamespace(
            config=IngestConfig(dedup_cache=DEDUP_CACHE), archive=_Archive(), alarms=None
        )
        self.worker: Any = pipeline.RuleWorker(
            rule, template, broker=MqttConfig(), client_id="bench", deps=deps, workers=1
        )
        self.worker._gate.set()
        self.items: list[Any] = []
        self.results = _results(len(messages))
        self.span = trace.get_current_span()

    def admit(self) -> None:
        handle = self.worker.handle
        for m in self.messages:
            handle(m)
        queue = self.worker._queue
        self.items = [queue._items.popleft() for _ in range(len(queue))]

    def verdicts(self) -> None:
        import orjson

        w = self.worker
        for i, result in enumerate(self.results):
            batch = self.items[i * BATCH : (i + 1) * BATCH]
            scored = w._verdicts(batch, result, self.span)
            for item, v in scored:
                topic = w.template.render(
                    item.topic, device_id=item.tele.device_id, point=item.tele.point
                )
                orjson.dumps(v)
                v["_topic"] = topic
            _drive(w._archive(scored))  # builds the rows, writes nowhere

    def settle(self) -> None:
        w = self.worker
        for item in self.items:
            w._settle(item)
        w._remember_all([item.tele.msg_id for item in self.items])


def run(n: int, *, old: bool = False, rounds: int = 7) -> dict[str, float]:
    """Microseconds per message of each stage (the best of ``rounds``)."""
    messages = payloads(n)
    best: dict[str, float] = {}
    for _ in range(rounds):
        path: StagePath = OldPath(messages) if old else CurrentPath(messages)
        figures = {
            "parse": _timed(lambda: [parse_telemetry(m.payload) for m in messages]),
            "admit": _timed(path.admit),
            "verdicts": _timed(path.verdicts),
            "settle": _timed(path.settle),
        }
        for stage, seconds in figures.items():
            us = seconds / n * 1e6
            best[stage] = min(best.get(stage, us), us)
    best["admit+verdicts+settle"] = best["admit"] + best["verdicts"] + best["settle"]
    return best


async def _run(n: int, old: bool, rounds: int) -> dict[str, float]:
    return run(n, old=old, rounds=rounds)  # in a running loop, as the service's handler runs


def main(argv: list[str] | None = None) -> int:
    """Print the figures (and write them to ``bench/results/ingest_path.json``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="short runs (CI)")
    parser.add_argument("--old", action="store_true", help="drive the pre-split rule worker")
    parser.add_argument("--profile", default="", help="write a cProfile of the run here")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.rounds = min(args.messages, 2_000), min(args.rounds, 3)
    if args.profile:
        profiler = cProfile.Profile()
        figures = profiler.runcall(asyncio.run, _run(args.messages, args.old, args.rounds))
        profiler.dump_stats(args.profile)
    else:
        figures = asyncio.run(_run(args.messages, args.old, args.rounds))
    tree = "pre-split rule worker" if args.old else "current pipeline"
    print(
        f"ingest per-message path ({tree}), {args.messages} messages, best of {args.rounds},"
        " CPU us/message:"
    )
    for stage, us in figures.items():
        print(f"  {stage:24s} {us:7.2f}")
    if not args.old:  # the results are this tree's
        note = f"{args.messages} messages, best of {args.rounds}, CPU time"
        rows = [
            {"benchmark": "ingest_path", "metric": stage, "value": us, "unit": "us/msg",
             "note": note}
            for stage, us in figures.items()
        ]  # fmt: skip
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
