"""Render the chart once with values given as JSON and print the objects as JSON.

    .venv-deploy/bin/python -m tools.chart_check.render_one [--set-json '{"a": 1}']

Exit status 1 (and the Helm error on stderr) when the values or templates are rejected.
"""

from __future__ import annotations

import argparse
import json
import sys

from tools.chart_check import render


def main(argv: list[str]) -> int:
    """Render and print; 1 on a Helm error."""
    parser = argparse.ArgumentParser(prog="python -m tools.chart_check.render_one")
    parser.add_argument("--set-json", default="{}", help="values as a JSON object")
    args = parser.parse_args(argv)
    try:
        rendered = render.render(json.loads(args.set_json), "--set-json")
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    json.dump({"objects": rendered.objects}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
