"""``make bench``: run every benchmark, then write a markdown table and plots.

Each ``bench/bench_<name>.py`` runs as its own process (``python -m bench.bench_<name>``),
prints its figures and writes ``bench/results/<name>.json``: a list of rows
``{"benchmark", "metric", "value", "unit", "note"}``. This script collects them into
``bench/results/summary.md`` and one PNG bar chart per benchmark module.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def discover() -> list[str]:
    """The benchmark module names, e.g. ``["inference", "ingest"]``."""
    here = Path(__file__).parent
    return sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))


def run_one(name: str, extra: list[str]) -> tuple[int, float]:
    """Run one benchmark module; returns (exit code, seconds)."""
    started = time.monotonic()
    print(f"\n=== bench {name} ===", flush=True)
    proc = subprocess.run(  # noqa: S603 - our own modules
        [sys.executable, "-m", f"bench.bench_{name}", *extra], check=False
    )
    return proc.returncode, time.monotonic() - started


def load_rows(name: str) -> list[dict[str, Any]]:
    """The rows a benchmark wrote, or none."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [row for row in data if isinstance(row, dict)]


def markdown(all_rows: dict[str, list[dict[str, Any]]], status: dict[str, str]) -> str:
    """The summary table."""
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.machine()} · {platform.python_implementation()} "
        f"{platform.python_version()} · one run, one machine.",
        "",
        "| benchmark | metric | value | unit | note |",
        "|---|---|---:|---|---|",
    ]
    for name, rows in all_rows.items():
        if not rows:
            lines.append(f"| {name} | — | — | — | {status.get(name, 'no results')} |")
        for row in rows:
            value = row.get("value")
            shown = (
                f"{value:,.3g}"
                if isinstance(value, float) and abs(value) < 10
                else (f"{value:,.0f}" if isinstance(value, (int, float)) else str(value))
            )
            lines.append(
                f"| {row.get('benchmark', name)} | {row.get('metric', '')} | {shown} | "
                f"{row.get('unit', '')} | {row.get('note', '')} |"
            )
    return "\n".join(lines) + "\n"


def plot(name: str, rows: list[dict[str, Any]]) -> Path | None:
    """One horizontal bar chart per unit group of a benchmark module."""
    numeric = [r for r in rows if isinstance(r.get("value"), (int, float))]
    if not numeric:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = sorted({str(r.get("unit", "")) for r in numeric})
    fig, axes = plt.subplots(len(units), 1, figsize=(8, 1.2 + 0.45 * len(numeric)), squeeze=False)
    for ax, unit in zip(axes[:, 0], units, strict=True):
        group = [r for r in numeric if str(r.get("unit", "")) == unit]
        labels = [f"{r.get('benchmark', '')}: {r.get('metric', '')}" for r in group]
        ax.barh(labels, [float(r["value"]) for r in group], color="#3b7dd8")
        ax.set_xlabel(unit)
        ax.invert_yaxis()
    fig.suptitle(f"linewatch bench: {name}")
    fig.tight_layout()
    out = RESULTS / f"{name}.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named (default: all) and summarise."""
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("names", nargs="*", help=f"subset of {discover()}")
    parser.add_argument("--quick", action="store_true", help="short runs (CI)")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the table")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = args.names or discover()
    status: dict[str, str] = {}
    failed = 0
    if not args.summary_only:
        for name in names:
            code, seconds = run_one(name, ["--quick"] if args.quick else [])
            status[name] = f"exit {code} after {seconds:.0f}s" if code else f"ok, {seconds:.0f}s"
            failed += code != 0
    all_rows = {name: load_rows(name) for name in names}
    table = markdown(all_rows, status)
    (RESULTS / "summary.md").write_text(table)
    for name, rows in all_rows.items():
        plot(name, rows)
    print("\n" + table)
    print(f"written: {RESULTS}/summary.md and one PNG per benchmark")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
