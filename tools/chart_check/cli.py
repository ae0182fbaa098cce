"""The ``make chart`` driver: every check, a summary, exit status 1 on any finding."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tools.chart_check import external, render, validate


def _report(title: str, findings: list[str]) -> bool:
    status = "ok" if not findings else f"{len(findings)} problem(s)"
    print(f"[{status}] {title}")
    for finding in findings:
        print(f"    {finding}")
    return not findings


def main(argv: list[str] | None = None) -> int:
    """Run the checks; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m tools.chart_check", description=__doc__)
    parser.add_argument("--chart", type=Path, default=render.CHART)
    parser.add_argument("--no-checkov", action="store_true", help="skip checkov (slow)")
    parser.add_argument("--no-hadolint", action="store_true", help="skip hadolint")
    args = parser.parse_args(argv)
    started = time.monotonic()
    ok = True
    renders: list[render.Rendered] = []
    for path in render.values_files(args.chart):
        label = "default values" if path is None else str(path.relative_to(args.chart))
        try:
            values = render.load_values(path)
            ok &= _report(f"helm lint --strict ({label})", render.lint(values, args.chart))
            rendered = render.render(values, label, args.chart)
        except Exception as exc:
            ok &= _report(f"helm render ({label})", [f"{type(exc).__name__}: {exc}"])
            continue
        renders.append(rendered)
        kinds = sorted({str(o.get("kind")) for o in rendered.objects})
        print(f"[ok] helm render ({label}): {len(rendered.objects)} objects: {', '.join(kinds)}")
        ok &= _report(
            f"kubernetes {render.KUBE_VERSION} schemas, strict ({label})",
            validate.schema_errors(rendered.objects),
        )
        ok &= _report(
            f"hardening and probes ({label})", validate.hardening_errors(rendered.objects)
        )
    if not args.no_checkov and renders:
        with tempfile.TemporaryDirectory(prefix="chart-check-") as tmp:
            passed, failures, skips = external.checkov(renders, Path(tmp))
        ok &= _report(f"checkov --skip-download ({passed} checks passed)", failures)
        print(f"    {len(skips)} skip(s), each justified in the chart:")
        for skip in sorted({s.split(" ", 1)[0] + " " + s.split(": ", 1)[-1] for s in skips}):
            print(f"      {skip}")
    if not args.no_hadolint:
        files = external.dockerfiles()
        names = ", ".join(str(f.relative_to(render.REPO)) for f in files)
        ok &= _report(f"hadolint ({names})", external.hadolint(files))
    print(f"chart_check: {'PASSED' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
