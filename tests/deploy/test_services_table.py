"""services.toml is the one table of services; everything that lists them agrees with it.

The launcher, scripts/build-images.sh, scripts/image-smoke-test.sh and the Makefile read
the table; the Helm chart's values, each service's configuration defaults, pyproject and
the Tiltfile (tests/deploy/test_tiltfile.py) are checked against it here.
"""

from __future__ import annotations

import importlib
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from linewatch_dev.launcher import SERVICE_PORTS
from linewatch_dev.services import Service, load

REPO = Path(__file__).resolve().parents[2]
TABLE = load()
NAMES = [s.name for s in TABLE]


def test_the_table_lists_every_service_folder_and_nothing_else() -> None:
    folders = sorted(p.name for p in (REPO / "services").iterdir() if p.is_dir())
    assert sorted(NAMES) == folders
    for svc in TABLE:
        assert svc.package == f"linewatch_{svc.name}"
        assert (REPO / "services" / svc.name / svc.package / "__main__.py").is_file()
        assert (REPO / svc.requirements).is_file()
        assert (REPO / "requirements" / f"{svc.name}.in").is_file()


def test_one_dockerfile_builds_every_image() -> None:
    assert (REPO / "deploy" / "docker" / "Dockerfile").is_file()
    strays = [
        str(p.relative_to(REPO))
        for p in [*REPO.glob("services/**/Dockerfile"), *REPO.glob("Dockerfile*")]
    ]
    assert strays == [], "one Dockerfile: deploy/docker/Dockerfile, build args per service"
    text = (REPO / "deploy" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    copies = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
    assert [c for c in copies if c.startswith(("dev", "tests", "bench", "tools"))] == []
    for arg in ("SERVICE", "PORT", "PROTOCOL", "REQUIREMENTS", "MODELS"):
        assert f"ARG {arg}" in text


def test_build_args_come_from_the_table() -> None:
    script = REPO / "dev" / "linewatch_dev" / "services.py"
    names = subprocess.run(
        ["python3", str(script)], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert names == NAMES
    for svc in TABLE:
        row = subprocess.run(
            ["python3", str(script), svc.name],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert dict(line.split("=", 1) for line in row.splitlines()) == {
            "package": svc.package,
            "port": str(svc.port),
            "protocol": svc.protocol,
            "requirements": svc.requirements,
            "models": "true" if svc.models else "false",
        }


def test_the_makefile_and_the_launcher_read_the_table() -> None:
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "p: ; @echo $(SERVICES)", "p"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == NAMES
    assert {s.name: s.port for s in TABLE} == SERVICE_PORTS


def _config_class(svc: Service) -> type[BaseModel]:
    module = importlib.import_module(f"{svc.package}.config")
    (cls,) = [
        v
        for k, v in vars(module).items()
        if k.lower() == f"{svc.name}config" and isinstance(v, type)
    ]
    assert issubclass(cls, BaseModel)
    return cls


@pytest.mark.parametrize("svc", TABLE, ids=NAMES)
def test_config_defaults_listen_where_the_table_says(svc: Service) -> None:
    fields = _config_class(svc).model_fields
    if svc.grpc_port is not None:
        assert fields["grpc"].default.port == svc.grpc_port
    else:
        assert fields["grpc"].default.port == 0, "no gRPC server of its own"
    if svc.http_port is not None:
        assert fields["http_port"].default == svc.http_port
    elif "http_port" in fields:
        assert fields["http_port"].default == 0, "an HTTP port not in the table is off"


def test_the_chart_values_have_one_component_per_service_on_its_port() -> None:
    values = yaml.safe_load(
        (REPO / "deploy" / "helm" / "linewatch" / "values.yaml").read_text(encoding="utf-8")
    )
    components = values["components"]
    assert set(components) == set(NAMES)
    for svc in TABLE:
        comp = components[svc.name]
        assert comp["port"] == svc.port, svc.name
        assert comp["protocol"] == svc.protocol, svc.name
        # A service's in-cluster address keys point at services it calls, and only those.
        assert set(comp.get("addresses", {}).values()) == set(svc.clients_of), svc.name


def test_pyproject_packages_every_service() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    hatch = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    for svc in TABLE:
        assert f"services/{svc.name}/{svc.package}" in hatch["packages"]
        assert f"services/{svc.name}" in hatch["dev-mode-dirs"]
    assert "dev" in hatch["dev-mode-dirs"]
