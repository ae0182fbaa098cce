"""Envelope benchmark: the built-in teach-in model's curves/s vs the CNN, and its accuracy.

``python -m bench.bench_envelope [--quick]``. On one core (BLAS and onnxruntime held to
one thread), batches of 256 curves of 256 samples:

* the envelope's numpy core (resample, align, judge against the band);
* the envelope scorer as ingest runs it (the core plus the verdict objects);
* the shipped CNN ``curve-quality`` in-process (preprocess + onnxruntime), for comparison;
* the envelope's verdicts on the press-cycle family (``linewatch_dev.press_cycles``), after
  teach-in on 30 of its good cycles: share judged right per kind.

Figures are printed and written to ``bench/results/envelope.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from linewatch_inference.session import ModelSession  # noqa: E402
from linewatch_ingest.config import ModelParams, RuleConfig  # noqa: E402
from linewatch_ingest.envelope import (  # noqa: E402
    EnvelopeParams,
    EnvelopeState,
    resample_batch,
    score_batch,
)
from linewatch_ingest.payload import Telemetry  # noqa: E402
from linewatch_ingest.scorers import EnvelopeScorer  # noqa: E402

from linewatch.model_input import preprocess  # noqa: E402
from linewatch_dev.press_cycles import PRESS_KINDS, press_cycle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "models" / "curve-quality" / "manifest.yaml"
RESULTS = ROOT / "bench" / "results" / "envelope.json"
BATCH = 256
LENGTH = 256

Row = dict[str, Any]


def row(metric: str, value: float, unit: str, note: str = "") -> Row:
    return {"benchmark": "envelope", "metric": metric, "value": value, "unit": unit, "note": note}


def timed(fn: Callable[[], int], seconds: float) -> float:
    """Call ``fn`` (returns curves done) repeatedly for ``seconds``; curves per second."""
    fn()
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


class _NoStore:
    """The scorer's store when nothing is taught (the bench judges only)."""

    async def load(self, rule: str) -> list[Any]:
        return []

    async def save(self, rule: str, envelopes: Any) -> None:
        return None


def main(quick: bool) -> list[Row]:
    seconds = 1.0 if quick else 4.0
    rng = np.random.default_rng(15)
    params = EnvelopeParams(teach_in=30, length=LENGTH)
    state = EnvelopeState(params)
    state.teach(resample_batch([press_cycle("ok", rng) for _ in range(30)], LENGTH))
    band = state.band
    assert band is not None
    curves = [press_cycle("ok", rng, length=LENGTH) for _ in range(BATCH)]
    lengths = np.full(BATCH, LENGTH)

    def core() -> int:
        score_batch(resample_batch(curves, LENGTH), band, lengths)
        return BATCH

    envelope_core = timed(core, seconds)

    rule = RuleConfig(
        name="bench", source_topic="b/+", model="envelope", output_topic="o/{1}",
        model_params=ModelParams(teach_in=30),
    )  # fmt: skip
    scorer = EnvelopeScorer(rule, _NoStore())  # type: ignore[arg-type]
    scorer.states[("press-1", "force")] = state
    teles = [Telemetry("press-1", "force", 0, c, str(i)) for i, c in enumerate(curves)]
    loop = asyncio.new_event_loop()

    def full() -> int:
        loop.run_until_complete(scorer.score(teles))
        return BATCH

    envelope_full = timed(full, seconds)
    for i in range(BATCH):  # every curve of the batch from another device
        scorer.states[(f"press-{i}", "force")] = state
    many = [Telemetry(f"press-{i}", "force", 0, c, str(i)) for i, c in enumerate(curves)]

    def full_many() -> int:
        loop.run_until_complete(scorer.score(many))
        return BATCH

    envelope_many = timed(full_many, seconds)
    loop.close()

    manifest = yaml.safe_load(MANIFEST.read_text())
    session = ModelSession(
        MANIFEST.parent / manifest["file"],
        input_name=manifest["input_name"],
        output_name=manifest["output_name"],
        intra_op_threads=1,
        providers=["CPUExecutionProvider"],
    )
    stacked = np.stack(curves)

    def cnn() -> int:
        session.run(preprocess(stacked, length=int(manifest["input_length"])))
        return BATCH

    cnn_rate = timed(cnn, seconds)

    rows = [
        row("envelope core", envelope_core, "curves/s", "256 x 256 samples, one core"),
        row("envelope scorer (with verdicts)", envelope_full, "curves/s", "as ingest runs it"),
        row("envelope scorer, 256 devices", envelope_many, "curves/s", "a band per curve"),
        row("CNN curve-quality in-process", cnn_rate, "curves/s", "onnxruntime, one thread"),
        row("envelope / CNN", envelope_full / cnn_rate, "x", "scorer vs CNN"),
    ]
    per_kind = 100 if quick else 400
    for kind in PRESS_KINDS:
        test = [press_cycle(kind, rng) for _ in range(per_kind)]
        result = score_batch(resample_batch(test, LENGTH), band, np.array([len(c) for c in test]))
        right = float(result.ok.mean() if kind == "ok" else 1 - result.ok.mean())
        rows.append(row(f"press-cycle {kind} judged right", 100 * right, "%", "teach-in 30"))
    return rows


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    args = parser.parse_args(argv)
    rows = main(args.quick)
    for r in rows:
        print(f"{r['metric']:<40} {r['value']:>12,.1f} {r['unit']:<9} {r['note']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
