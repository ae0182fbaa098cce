"""Model benchmark: how the shipped curve model judges recorded real series.

``python -m bench.bench_model [--quick]``. Scores the shipped ``curve-quality`` package
(onnxruntime, as the inference service does) on the recorded data sets of
:mod:`tools.model.realseries` (UCR sets shipped by sktime, matplotlib's terrain sample),
each curve clean and with one injected defect of each kind, and prints per data set the
share of clean curves judged ok and of defective ones flagged. Rows go to
``bench/results/model.json``.

:func:`results` returns the per data set figures for any scorer, so other models (the
built-in ``envelope``) can add their rows to the same table.
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

from tools.model.realseries import (  # noqa: E402
    DEFECTS,
    DatasetResult,
    Scorer,
    evaluate,
    markdown_table,
    onnx_scorer,
)

PACKAGE = ROOT / "models" / "curve-quality"
RESULTS = ROOT / "bench" / "results" / "model.json"
SEED = 15


def results(scorer: Scorer | None = None, *, n: int = 80, seed: int = SEED) -> list[DatasetResult]:
    """Per data set results of ``scorer`` (default: the shipped curve-quality model)."""
    return evaluate(scorer or onnx_scorer(PACKAGE), n=n, seed=seed)


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
    print(f"({time.perf_counter() - started:.1f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows("curve-quality", found), indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
