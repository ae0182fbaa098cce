"""Deploy tests run the tools of ``.venv-deploy`` (``make deploy-setup``) in a subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from linewatch_dev.services import load

REPO = Path(__file__).resolve().parents[2]
DEPLOY_PY = REPO / ".venv-deploy" / "bin" / "python"
#: The service names, in start order (services.toml).
SERVICES = [svc.name for svc in load()]


def run_deploy_tool(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``.venv-deploy/bin/python -m <args>`` in the repository root."""
    if not DEPLOY_PY.exists():
        pytest.skip(".venv-deploy is missing: run `make deploy-setup` (or `make chart`)")
    return subprocess.run(
        [str(DEPLOY_PY), "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def deploy_json(*args: str) -> Any:
    """Run a deploy tool that prints JSON and return the parsed output."""
    proc = run_deploy_tool(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
