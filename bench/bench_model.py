"""Model benchmark: how the shipped curve model and the built-in envelope judge recorded
real series.

``python -m bench.bench_model [--quick]``. Scores the shipped ``curve-quality`` package
(onnxruntime, as the inference service does) on the recorded data sets of
:mod:`tools.model.realseries` (UCR sets shipped by sktime, matplotlib's terrain sample),
each curve clean and with one injected defect of each kind, and prints per data set the
share of clean curves judged ok and of defective ones flagged. Then the same for the
built-in ``envelope`` (ingest's numpy core), taught per data set on its first
:data:`TEACH_IN` clean curves that the draw does not judge. Rows go to
``bench/results/model.json``.

A data set is not one machine's cycles: its curves come from several classes and
subjects, so a band taught on 30 of them is wide, or too narrow for the rest. The
envelope's rows show what a teach-in band makes of a family it was not built for; on one
machine's cycles it is measured by ``bench/bench_envelope.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tools` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from linewatch_ingest.envelope import (  # noqa: E402
    Band,
    EnvelopeParams,
    EnvelopeState,
    resample_batch,
    score_batch,
)

from tools.model.realseries import (  # noqa: E402
    DATASETS,
    DEFECTS,
    F64,
    DatasetResult,
    Scorer,
    evaluate,
    markdown_table,
    onnx_scorer,
    undrawn,
)

PACKAGE = ROOT / "models" / "curve-quality"
RESULTS = ROOT / "bench" / "results" / "model.json"
SEED = 15
TEACH_IN = 30
"""Clean curves the envelope is taught on per data set (an envelope rule's ``teach_in``)."""


def results(scorer: Scorer | None = None, *, n: int = 80, seed: int = SEED) -> list[DatasetResult]:
    """Per data set results of ``scorer`` (default: the shipped curve-quality model)."""
    return evaluate(scorer or onnx_scorer(PACKAGE), n=n, seed=seed)


def envelope_results(*, n: int = 80, seed: int = SEED) -> list[DatasetResult]:
    """Per data set results of the built-in envelope, taught on that set's first
    :data:`TEACH_IN` clean curves outside the draw."""
    params = EnvelopeParams(teach_in=TEACH_IN)
    found: list[DatasetResult] = []
    for d in DATASETS:
        state = EnvelopeState(params)
        first = [np.asarray(c, np.float32) for c in undrawn(d.name, n, seed=seed)[:TEACH_IN]]
        state.teach(resample_batch(first, params.length))
        band = state.band
        if band is None:  # fewer curves outside the draw than a teach-in needs
            continue

        def score(curves: Sequence[F64], band: Band = band) -> npt.NDArray[np.bool_]:
            lengths = np.array([len(c) for c in curves], dtype=np.intp)
            rows = resample_batch([np.asarray(c, np.float32) for c in curves], params.length)
            return np.asarray(score_batch(rows, band, lengths).ok, dtype=bool)

        found.extend(evaluate(score, n=n, seed=seed, datasets=[d.name]))
    return found


def rows(model: str, found: Sequence[DatasetResult]) -> list[dict[str, Any]]:
    """Bench rows (``bench/results/*.json`` format) for one model's results."""
    out: list[dict[str, Any]] = []
    for r in found:
        note = f"{model}; {r.curves} curves x {r.length} samples, {r.domain}"
        out.append(
            {
                "benchmark": "model",
                "metric": f"{model} {r.dataset} clean ok",
                "value": round(100 * r.clean_ok, 1),
                "unit": "%",
                "note": note,
            }
        )
        out.extend(
            {
                "benchmark": "model",
                "metric": f"{model} {r.dataset} {kind} flagged",
                "value": round(100 * r.flagged[kind], 1),
                "unit": "%",
                "note": note,
            }
            for kind in DEFECTS
        )
    return out


def main() -> None:
    """Parse arguments, run, print the table, write ``bench/results/model.json``."""
    parser = argparse.ArgumentParser(prog="bench_model", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 curves per data set")
    parser.add_argument("--curves", type=int, default=0, help="curves per data set")
    args = parser.parse_args()
    n = args.curves or (30 if args.quick else 80)
    started = time.perf_counter()
    found = results(n=n)
    print("\n".join(markdown_table(found, model="curve-quality")))
    taught = envelope_results(n=n)
    print("\n".join(markdown_table(taught, model=f"envelope (teach-in {TEACH_IN})")[2:]))
    print(f"({time.perf_counter() - started:.1f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = rows("curve-quality", found) + rows("envelope", taught)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
