"""The Grafana dashboard in deploy/ graphs metrics the services really export.

Every metric a panel queries must exist (under its exported name: counters end in
``_total``, histograms are read through ``_bucket``/``_sum``/``_count``) and every label
it groups by must be one of that metric's labels.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Metric

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "linewatch-dashboard.json"
MODULES = [
    "linewatch_ingest.metrics",
    "linewatch_sync.metrics",
    "linewatch_ota.metrics",
    "linewatch_gateway.sse",
    "linewatch_gateway.middleware",
]
_NAME = re.compile(r"\b(linewatch_[a-z_]+)")
_BY = re.compile(r"by \(([^)]*)\)\s*\((?:rate|increase)?\(?\s*(linewatch_[a-z_]+)")


def _exported() -> dict[str, set[str]]:
    """Exported sample names → label names, over every service's metrics."""
    for module in MODULES:
        importlib.import_module(module)
    from linewatch_inference.metrics import InferenceMetrics

    inference = CollectorRegistry()
    InferenceMetrics(inference)
    out: dict[str, set[str]] = {}
    for registry in (REGISTRY, inference):
        family: Metric
        for family in registry.collect():
            if not family.name.startswith("linewatch"):
                continue
            labels = set().union(*(s.labels.keys() for s in family.samples)) - {"le"}
            for suffix in ("", "_total", "_bucket", "_sum", "_count", "_created"):
                out[family.name + suffix] = labels
    return out


def _exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_dashboard_is_valid_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"]
    assert dash["title"] == "linewatch"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    graphs = [p for p in dash["panels"] if p["type"] == "timeseries"]
    assert len(graphs) >= 15
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in graphs)


def test_every_queried_metric_and_label_exists() -> None:
    exported = _exported()
    # labels of metrics without samples yet are not collected: read them off the code
    for name, labels in list(exported.items()):
        if not labels:
            exported[name] = _declared_labels(name)
    for expr in _exprs():
        for name in _NAME.findall(expr):
            assert name in exported, f"{name} (in {expr!r}) is not exported by any service"
        for by, name in _BY.findall(expr):
            wanted = {label.strip() for label in by.split(",")} - {"le"}
            assert wanted <= exported[name], f"{expr!r}: {name} has labels {exported[name]}"


def _declared_labels(name: str) -> set[str]:
    base = re.sub(r"_(total|bucket|sum|count|created)$", "", name)
    for module in MODULES:
        importlib.import_module(module)
    from linewatch_inference.metrics import InferenceMetrics

    inference = CollectorRegistry()
    InferenceMetrics(inference)
    for registry in (REGISTRY, inference):
        for collector in list(registry._collector_to_names):
            if getattr(collector, "_name", None) in (base, name):
                return set(getattr(collector, "_labelnames", ()))
    return set()
