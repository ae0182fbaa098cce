"""Lint and render the chart with Helm's own Go SDK (helm-python-sdk), offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "linewatch"
KUBE_VERSION = "1.30.0"
RELEASE = "linewatch"
NAMESPACE = "linewatch"

#: helm lint severities (helm.sh/helm/v4/pkg/lint/support).
_WARNING = 2


@dataclass(frozen=True)
class Rendered:
    """One rendering of the chart: the values file used and the objects it produced."""

    values_name: str
    objects: list[dict[str, Any]]
    manifest: str


def values_files(chart: Path = CHART) -> list[Path | None]:
    """The default values (``None``) followed by every ``ci/*.yaml`` file, sorted."""
    return [None, *sorted((chart / "ci").glob("*.yaml"))]


def load_values(path: Path | None) -> dict[str, Any] | None:
    """Read one values file (``None`` stands for the chart's defaults)."""
    if path is None:
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    return cast(dict[str, Any], data)


def lint(values: dict[str, Any] | None, chart: Path = CHART) -> list[str]:
    """Run ``helm lint --strict`` through the SDK; returns the findings (warnings and up)."""
    import helm_python as helm  # type: ignore[import-not-found]

    report = helm.lint(
        str(chart),
        values,
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSION}",
    )
    found = [
        f"{m.get('path', '')}: {m.get('error', '')}"
        for m in report.get("messages", [])
        if int(m.get("severity", 0)) >= _WARNING
    ]
    found.extend(str(e) for e in report.get("errors", []) or [])
    return found


def render(values: dict[str, Any] | None, values_name: str, chart: Path = CHART) -> Rendered:
    """Render the chart as ``helm install`` would (offline: ``lookup`` finds nothing)."""
    import helm_python as helm

    loaded = helm.Chart.load(str(chart))
    loaded.validate_schema(values)
    manifests = cast(
        dict[str, str],
        loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True),
    )
    objects: list[dict[str, Any]] = []
    parts: list[str] = []
    for source in sorted(manifests):
        if not source.endswith((".yaml", ".yml")):
            continue
        text = manifests[source]
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"{values_name}: {source}: a document is not a mapping")
            objects.append(doc)
            parts.append(f"# Source: {source}\n" + yaml.safe_dump(doc, sort_keys=False))
    return Rendered(values_name, objects, "---\n".join(parts))
