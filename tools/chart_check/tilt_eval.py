"""Evaluate ``tilt/Tiltfile`` with a Starlark interpreter (starlark-pyo3) and stub builtins.

    .venv-deploy/bin/python -m tools.chart_check.tilt_eval [--no-cluster]

Prints JSON: the recorded calls (``[name, args, kwargs]``) and, for every ``helm(...)``
call, the workload names the chart renders with those values, so that a test can check
that every service is built, deployed and given resources that exist.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tools.chart_check.render import REPO

TILTFILE = REPO / "tilt" / "Tiltfile"
Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def evaluate(no_cluster: bool, tiltfile: Path = TILTFILE) -> dict[str, Any]:
    """Run the Tiltfile against recording stubs; returns calls and rendered workloads."""
    import starlark as sl  # type: ignore[import-not-found]

    calls: list[Call] = []
    helm_workloads: list[list[str]] = []

    def record(name: str, result: Callable[..., Any] | None = None) -> Callable[..., Any]:
        def stub(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, args, kwargs))
            return result(*args, **kwargs) if result else None

        return stub

    def helm_stub(chart: str, **kwargs: Any) -> str:
        workloads = render_workloads(tiltfile.parent / chart, kwargs, tiltfile.parent)
        helm_workloads.append(workloads)
        return f"<helm {chart}>"

    module = sl.Module()
    simple = [
        "docker_build", "k8s_yaml", "k8s_resource", "local_resource", "sync", "run",
        "fall_back_on", "port_forward", "probe", "tcp_socket_action", "http_get_action",
    ]  # fmt: skip
    for name in simple:
        module.add_callable(name, record(name, lambda *a, _n=name, **k: {"_stub": _n}))
    module.add_callable("helm", record("helm", helm_stub))
    module.add_callable("_define_bool", record("config.define_bool"))
    module.add_callable("_parse", lambda: {"no-cluster": no_cluster})
    module.add_callable("_getenv", lambda _key, default="": default)
    glb = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.Print])
    prelude = (
        "config = struct(define_bool=_define_bool, parse=_parse)\nos = struct(getenv=_getenv)\n"
    )
    sl.eval(module, sl.parse("prelude", prelude), glb)

    def load(path: str) -> Any:
        if path != "ext://restart_process":
            raise ValueError(f"Tiltfile loads an unknown extension: {path}")
        ext = sl.Module()
        # Like the real extension: a docker_build with an entrypoint wrapper.
        ext.add_callable("docker_build_with_restart", record("docker_build", None))
        return ext.freeze()

    source = tiltfile.read_text(encoding="utf-8")
    dialect = sl.Dialect.extended()  # Tilt's dialect: top-level if/for, lambdas, f-strings
    dialect.enable_top_level_stmt = True
    ast = sl.parse(str(tiltfile), source, dialect)
    sl.eval(module, ast, glb, sl.FileLoader(load))
    return {
        "calls": [[name, list(args), kwargs] for name, args, kwargs in calls],
        "helm_workloads": helm_workloads,
    }


def render_workloads(chart: Path, kwargs: dict[str, Any], base: Path) -> list[str]:
    """The workload names the chart renders with the Tiltfile's helm() arguments."""
    import helm_python as helm  # type: ignore[import-not-found]

    values: dict[str, Any] = {}
    for path in kwargs.get("values", []):
        values.update(yaml.safe_load((base / path).read_text(encoding="utf-8")) or {})
    loaded = helm.Chart.load(str(chart))
    out = loaded.render(
        values,
        name=kwargs.get("name", "chart"),
        namespace=kwargs.get("namespace", "default"),
        is_install=True,
    )
    names: list[str] = []
    for source, text in out.items():
        if not source.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") in {"Deployment", "StatefulSet"}:
                names.append(str(doc["metadata"]["name"]))
    return sorted(names)


def main(argv: list[str]) -> int:
    """Print the evaluation as JSON."""
    result = evaluate(no_cluster="--no-cluster" in argv)
    json.dump(result, sys.stdout, default=repr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
