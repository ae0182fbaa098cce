"""Write the recorded real-series section of a curve model's REPORT.md.

Run in the project venv (onnxruntime; the data files come with sktime and matplotlib,
both in requirements/dev.txt), after ``tools/model/train.py``; ``make model`` does::

    .venv/bin/python tools/model/evaluate.py --package models/curve-quality

It scores the package on :mod:`tools.model.realseries` (every data set, clean and with each
injected defect), prints the table and replaces the section between
``## Recorded real series`` and the next heading in the package's REPORT.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tools.model.realseries import (  # noqa: E402
    DATASETS,
    WHOLE_ROWS,
    DatasetResult,
    evaluate,
    markdown_table,
    onnx_scorer,
)

HEADING = "## Recorded real series"
TARGET = 0.95
"""Share of clean curves ok, and of spike / step / noise curves flagged, on every data set."""
TARGET_DEFECTS = ("spike", "step", "noise")
"""The defects the target holds for; a drift is a defect only against a reference."""


def misses(results: list[DatasetResult]) -> list[str]:
    """Where a target is missed, e.g. ``"GunPoint clean ok 93.8%"``."""
    out = []
    for r in results:
        if r.clean_ok < TARGET:
            out.append(f"{r.dataset} clean ok {r.clean_ok:.1%}")
        out += [
            f"{r.dataset} {k} flagged {r.flagged[k]:.1%}"
            for k in TARGET_DEFECTS
            if r.flagged[k] < TARGET
        ]
    return out


def section(results: list[DatasetResult], whole: DatasetResult, *, n: int, seed: int) -> list[str]:
    """The REPORT.md section (markdown lines, heading included)."""
    sources = "; ".join(f"{d.name} ({d.source})" for d in DATASETS)
    met = all(
        r.clean_ok >= TARGET and all(r.flagged[k] >= TARGET for k in TARGET_DEFECTS)
        for r in results
    )
    return [
        HEADING,
        "",
        "Recorded series nobody here generated, read from files public packages ship: "
        f"{sources}. Each series is z-scored to a sensor range (mean 50, sigma 10) and judged "
        "clean and with one injected defect of each kind (injected here only, never in "
        "training): `spike` one sample ± 6 sigma; `step` a 2 sigma level shift from a point in the "
        "middle 60 % to the end; `noise` a burst of white noise of 0.5 sigma over 20 % of the "
        "curve; `drift` a linear drift from a point in the first half, 3 sigma by the end. A "
        "defective curve counts as flagged when its label is anything but `ok`.",
        "",
        f"{n} curves per data set (fewer where a set has fewer), seed {seed}; "
        "`tools/model/evaluate.py` (onnxruntime on model.onnx) writes this section, "
        "`tests/model/test_real_series.py` holds the model to the targets on a smaller draw "
        "and `make bench` prints the table (`bench/bench_model.py`).",
        "",
        *markdown_table(results),
        "",
        f"Targets: ≥ {TARGET:.0%} of clean curves ok and ≥ {TARGET:.0%} of spike, step and "
        f"noise curves flagged on every data set: **{'met' if met else 'NOT met'}**"
        + ("." if met else f" ({', '.join(misses(results))})."),
        "",
        "`drift` is reported but not a target: a linear trend added to a recorded curve "
        "gives another plausible smooth curve, which a model that sees one curve on its own "
        "cannot tell from a good one (a good part's curve may well slope). The drifts it "
        "does flag are where the trend bends a curve whose ends should be level. Drift "
        "against the machine's own good cycles is what the built-in `envelope` (teach-in) "
        "model is for; on the simulator's machine cycles, whose shape the model knows, "
        "drift is found (see the held-out table).",
        "",
        "Curve length matters for rough curves. The terrain profiles above are the DEM's "
        "rows cut in two halves (about 200 samples, upsampled to 256). Whole rows (403 "
        "samples) are downsampled linearly to 256, which makes a rough curve rougher per "
        "sample and can shrink a single-sample spike to a fraction of its height; not a "
        "target, for comparison:",
        "",
        *markdown_table([whole]),
    ]


def rewrite(report: Path, lines: list[str]) -> None:
    """Replace (or append) the section in ``report``."""
    text = report.read_text(encoding="utf-8").splitlines()
    if HEADING in text:
        start = text.index(HEADING)
        end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")), len(text))
        text = [*text[:start], *lines, "", *text[end:]]
    else:
        text = [*text, "", *lines]
    report.write_text("\n".join(text).rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--package", type=Path, default=REPO / "models" / "curve-quality")
    p.add_argument("--curves", type=int, default=80, help="curves per data set")
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args(argv)
    scorer = onnx_scorer(args.package)
    results = evaluate(scorer, n=args.curves, seed=args.seed)
    whole = evaluate(scorer, n=args.curves, seed=args.seed, datasets=[WHOLE_ROWS.name])[0]
    lines = section(results, whole, n=args.curves, seed=args.seed)
    print("\n".join(lines))
    rewrite(args.package / "REPORT.md", lines)
    print(f"\nwrote the section into {args.package / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
