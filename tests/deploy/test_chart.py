"""The Helm chart and Dockerfiles through tools.chart_check (Helm SDK, k8s schemas, checkov)."""

from __future__ import annotations

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
    assert hpas == {"linewatch-ingest", "linewatch-inference"}
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


def _migrate_jobs(*args: str) -> dict[str, Any]:
    objects = deploy_json("tools.chart_check.render_one", *args)["objects"]
    return {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "Job" and o["metadata"]["name"].endswith("-migrate")
    }


def test_a_hook_job_migrates_each_database_before_upgrades() -> None:
    jobs = _migrate_jobs()
    assert set(jobs) == {f"linewatch-{s}-migrate" for s in ("ingest", "sync", "ota")}
    for svc in ("ingest", "sync", "ota"):
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
    assert _migrate_jobs("--set-json", '{"postgresql": {"enabled": false}}') == {}
