"""The external linters: checkov over the rendered manifests, hadolint over Dockerfiles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.chart_check.render import REPO, Rendered


def _tool(name: str) -> str:
    """A tool installed beside this interpreter (the .venv-deploy), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (run `make deploy-setup`)")
    return found


def dockerfiles(repo: Path = REPO) -> list[Path]:
    """The Dockerfiles: deploy/docker/Dockerfile builds every service (and any stray one
    under services/ is linted too; tests/deploy fails on it)."""
    return sorted((repo / "deploy").rglob("Dockerfile")) + sorted(
        (repo / "services").glob("*/Dockerfile")
    )


def hadolint(files: list[Path]) -> list[str]:
    """hadolint (its default rules, failure threshold: info) over ``files``."""
    if not files:
        return ["no Dockerfile found"]
    proc = subprocess.run(  # noqa: S603 - fixed argv, our own files
        [_tool("hadolint"), "--failure-threshold", "info", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return []
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def checkov(renders: list[Rendered], workdir: Path) -> tuple[int, list[str], list[str]]:
    """checkov (Kubernetes framework, offline) over every rendering.

    Returns:
        (passed count, failures, skips with their justification).
    """
    for i, rendered in enumerate(renders):
        out = workdir / f"{i:02d}-{Path(rendered.values_name).stem}.yaml"
        out.write_text(rendered.manifest, encoding="utf-8")
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [
            _tool("checkov"),
            "--directory",
            str(workdir),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        data: Any = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return (
            0,
            [f"checkov did not report JSON (exit {proc.returncode}): {proc.stderr[-2000:]}"],
            [],
        )
    reports = data if isinstance(data, list) else [data]
    passed = 0
    failures: list[str] = []
    skips: list[str] = []
    for report in reports:
        results = report.get("results", {})
        passed += len(results.get("passed_checks", []))
        for check in results.get("failed_checks", []):
            failures.append(
                f"{check['check_id']} {check['resource']} ({Path(check['file_path']).name}): "
                f"{check['check_name']}"
            )
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment", "")
            skips.append(f"{check['check_id']} {check['resource']}: {reason}")
    if proc.returncode not in (0, 1):
        failures.append(f"checkov exited {proc.returncode}: {proc.stderr[-2000:]}")
    return passed, failures, skips
