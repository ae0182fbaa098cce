"""The Tiltfile, evaluated by a Starlark interpreter with stub Tilt builtins."""

from __future__ import annotations

from typing import Any

from linewatch_dev.services import load
from tests.deploy.conftest import SERVICES, deploy_json


def _calls(result: dict[str, Any], name: str) -> list[tuple[list[Any], dict[str, Any]]]:
    return [(args, kwargs) for call, args, kwargs in result["calls"] if call == name]


def test_cluster_mode_builds_every_service_with_live_update() -> None:
    result = deploy_json("tools.chart_check.tilt_eval")
    builds = {args[0]: kwargs for args, kwargs in _calls(result, "docker_build")}
    assert set(builds) == {f"linewatch-{svc}" for svc in SERVICES}
    for svc in SERVICES:
        kwargs = builds[f"linewatch-{svc}"]
        assert kwargs["dockerfile"] == "../deploy/docker/Dockerfile"
        synced = [step for step in kwargs["live_update"] if step == {"_stub": "sync"}]
        assert len(synced) == 2, f"{svc}: live_update must sync the shared and own code"
        assert kwargs["entrypoint"][:3] == ["python", "-m", f"linewatch_{svc}"]
    syncs = [args for args, _ in _calls(result, "sync")]
    for svc in SERVICES:
        assert [
            f"../services/{svc}/linewatch_{svc}",
            f"/app/services/{svc}/linewatch_{svc}",
        ] in syncs


def test_cluster_mode_deploys_the_chart_and_every_resource_exists() -> None:
    result = deploy_json("tools.chart_check.tilt_eval")
    helm_calls = _calls(result, "helm")
    assert len(helm_calls) == 1
    args, kwargs = helm_calls[0]
    assert args[0] == "../deploy/helm/linewatch"
    assert kwargs["values"] == ["values-dev.yaml"]
    assert len(_calls(result, "k8s_yaml")) == 1
    (workloads,) = result["helm_workloads"]
    resources = {args[0]: kwargs for args, kwargs in _calls(result, "k8s_resource")}
    for svc in SERVICES:
        assert f"linewatch-{svc}" in workloads, f"the chart renders no workload for {svc}"
        assert f"linewatch-{svc}" in resources
        assert resources[f"linewatch-{svc}"]["port_forwards"]
        assert resources[f"linewatch-{svc}"]["labels"] == ["linewatch"]
    assert set(resources) <= set(workloads), "k8s_resource names a workload the chart lacks"


def test_no_cluster_mode_serves_every_service_locally() -> None:
    result = deploy_json("tools.chart_check.tilt_eval", "--no-cluster")
    assert not _calls(result, "docker_build")
    assert not _calls(result, "k8s_yaml")
    local = {args[0]: kwargs for args, kwargs in _calls(result, "local_resource")}
    assert set(local) == {"broker", *SERVICES}
    for svc in SERVICES:
        assert local[svc]["serve_cmd"].endswith(f"-m linewatch_{svc}")
        assert "broker" in local[svc]["resource_deps"]


def test_the_tiltfile_agrees_with_the_services_table() -> None:
    """Ports, start order, dependencies and build args as in services.toml."""
    table = {svc.name: svc for svc in load()}
    result = deploy_json("tools.chart_check.tilt_eval")
    builds = [args[0] for args, _ in _calls(result, "docker_build")]
    assert builds == [f"linewatch-{name}" for name in table], "start order"
    for args, kwargs in _calls(result, "docker_build"):
        svc = table[args[0].removeprefix("linewatch-")]
        assert kwargs["build_args"] == {
            "SERVICE": svc.name,
            "PORT": str(svc.port),
            "PROTOCOL": svc.protocol,
            "MODELS": "true" if svc.models else "false",
        }
    forwards = {kwargs["name"]: args for args, kwargs in _calls(result, "port_forward")}
    for svc in table.values():
        assert forwards[svc.name] == [svc.port, svc.port]
    resources = {args[0]: kwargs for args, kwargs in _calls(result, "k8s_resource")}
    for svc in table.values():
        deps = set(resources[f"linewatch-{svc.name}"]["resource_deps"])
        assert deps == {f"linewatch-{c}" for c in svc.calls} | {"linewatch-mosquitto"}
    local = deploy_json("tools.chart_check.tilt_eval", "--no-cluster")
    probes = [args for args, _ in _calls(local, "tcp_socket_action")]
    assert probes == [[1883], *([svc.port] for svc in table.values())]
