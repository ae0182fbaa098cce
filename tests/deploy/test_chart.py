"""The Helm chart and Dockerfiles through tools.chart_check (Helm SDK, k8s schemas, checkov)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.conftest import SERVICES, deploy_json, run_deploy_tool


def test_chart_renders_validates_and_lints_clean_without_checkov() -> None:
    proc = run_deploy_tool("tools.chart_check", "--no-checkov")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "chart_check: PASSED" in proc.stdout
    # the default values and every ci/ values file were rendered and validated
    assert proc.stdout.count("kubernetes 1.30.0 schemas, strict") >= 4


@pytest.mark.slow
def test_chart_check_with_checkov_passes() -> None:
    proc = run_deploy_tool("tools.chart_check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ok] checkov" in proc.stdout


def test_chart_rejects_values_that_break_the_schema() -> None:
    proc = run_deploy_tool(
        "tools.chart_check.render_one",
        "--set-json",
        '{"components": {"ingest": {"replicas": "many"}}}',
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "replicas" in proc.stdout + proc.stderr


def test_default_values_render_five_hardened_deployments_with_probes() -> None:
    objects = deploy_json("tools.chart_check.render_one")["objects"]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    for svc in SERVICES:
        spec = deployments[f"linewatch-{svc}"]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert container["resources"]["limits"]["memory"]
        if svc == "gateway":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        else:
            assert (
                container["readinessProbe"]["grpc"]["port"]
                == container["ports"][0]["containerPort"]
            )
            assert container["livenessProbe"]["grpc"]
    hpas = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert hpas == {"linewatch-inference"}  # ingest: a fixed count of slot replicas
    secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    assert "linewatch-api-token" in secrets
    gateway_env = {
        e["name"]: e
        for e in deployments["linewatch-gateway"]["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert gateway_env["LINEWATCH_GATEWAY__TOKENS"]["value"] == '["$(LINEWATCH_API_TOKEN)"]'
    assert gateway_env["LINEWATCH_GATEWAY__INFERENCE_ADDR"]["value"] == "linewatch-inference:50052"


def test_external_broker_and_database_replace_the_in_chart_ones() -> None:
    values = (
        '{"mosquitto": {"enabled": false}, "mqtt": {"url": "mqtt://emqx:1883"},'
        ' "postgresql": {"enabled": false}, "database": {"url": "postgresql+asyncpg://u:p@db/lw"}}'
    )
    objects = deploy_json("tools.chart_check.render_one", "--set-json", values)["objects"]
    names = {o["metadata"]["name"] for o in objects}
    assert "linewatch-mosquitto" not in names
    assert "linewatch-postgresql" not in names
    ingest = next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "linewatch-ingest"
    )
    env = {
        e["name"]: e.get("value")
        for e in ingest["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LINEWATCH_INGEST__BROKERS__DEFAULT__URL"] == "mqtt://emqx:1883"
    assert env["LINEWATCH_INGEST__DATABASE_URL"] == "postgresql+asyncpg://u:p@db/lw"


def test_inference_replicas_share_the_database_and_ingest_balances_over_them() -> None:
    objects = deploy_json("tools.chart_check.render_one")["objects"]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}

    def env(name: str) -> dict[str, Any]:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e for e in container["env"]}

    assert "LINEWATCH_INFERENCE__DATABASE_URL" in env("linewatch-inference")
    ingest = env("linewatch-ingest")
    assert (
        ingest["LINEWATCH_INGEST__INFERENCE__TARGET"]["value"]
        == "dns:///linewatch-inference-headless:50052"
    )
    assert int(ingest["LINEWATCH_INGEST__INFERENCE__STREAMS"]["value"]) >= 2
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert services["linewatch-inference-headless"]["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        # SQLite (no PostgreSQL anywhere) with two ingest replicas
        ({"postgresql": {"enabled": False}}, "SQLite is one process's database"),
        # ingest replicas hold numbered slots: a fixed count
        ({"components": {"ingest": {"autoscaling": {"enabled": True}}}}, "autoscaling is refused"),
        # two OTA replicas on one ReadWriteOnce firmware volume
        ({"components": {"ota": {"replicas": 2}}}, "ReadWriteOnce"),
    ],
)
def test_chart_refuses_replica_counts_that_are_not_correct(
    values: dict[str, object], reason: str
) -> None:
    proc = run_deploy_tool("tools.chart_check.render_one", "--set-json", json.dumps(values))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert reason in proc.stdout + proc.stderr


def test_default_ingest_replicas_get_their_count_and_no_autoscaler() -> None:
    objects = deploy_json("tools.chart_check.render_one")["objects"]
    (config_map,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "linewatch-ingest"
    ]
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "linewatch-ingest"
    ]
    assert "replicas: 2" in config_map["data"]["ingest.yaml"]
    assert deployment["spec"]["replicas"] == 2
    hpas = {o["metadata"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert "linewatch-ingest" not in hpas


def _migrate_jobs(*args: str) -> dict[str, Any]:
    objects = deploy_json("tools.chart_check.render_one", *args)["objects"]
    return {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "Job" and o["metadata"]["name"].endswith("-migrate")
    }


def test_a_hook_job_migrates_each_database_before_upgrades() -> None:
    jobs = _migrate_jobs()
    assert set(jobs) == {f"linewatch-{s}-migrate" for s in ("ingest", "inference", "sync", "ota")}
    for svc in ("ingest", "inference", "sync", "ota"):
        job = jobs[f"linewatch-{svc}-migrate"]
        # in-chart PostgreSQL exists only after the install: upgrades only
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["migrate", "--config", f"/etc/linewatch/{svc}.yaml"]
        env = {e["name"] for e in container["env"]}
        assert f"LINEWATCH_{svc.upper()}__DATABASE_URL" in env
        assert container["readinessProbe"]["exec"]["command"] == ["false"]
    external = _migrate_jobs(
        "--set-json",
        '{"postgresql": {"enabled": false}, "database": {"url": "postgresql+asyncpg://u:p@db/lw"}}',
    )
    hooks = {j["metadata"]["annotations"]["helm.sh/hook"] for j in external.values()}
    assert hooks == {"pre-install,pre-upgrade"}
    # SQLite (one replica of each service): each migrates its own file at start
    one_each = {
        "postgresql": {"enabled": False},
        "components": {
            "ingest": {"replicas": 1},
            "inference": {"replicas": 1, "autoscaling": {"enabled": False}},
        },
    }
    assert _migrate_jobs("--set-json", json.dumps(one_each)) == {}
