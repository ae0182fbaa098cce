"""``python -m tools.chart_check``: lint, render and validate the chart; lint Dockerfiles."""

from tools.chart_check.cli import main

raise SystemExit(main())
