"""The rendered NetworkPolicies allow exactly the calls the services make (ingress and
egress), metrics only from the monitoring namespace, and the broker and the database
open no connection."""

from __future__ import annotations

from typing import Any

from tests.deploy.conftest import deploy_json

COMPONENT = "app.kubernetes.io/component"

#: (caller, callee, port): every connection inside the release the services make.
INTENDED = {
    ("gateway", "ingest", 50051),
    ("gateway", "inference", 50052),
    ("gateway", "sync", 50053),
    ("gateway", "ota", 50054),
    ("ingest", "inference", 50052),
    ("ingest", "ota", 50054),  # alarm actions send device commands
    ("ota", "ingest", 50051),  # the rollout quality gate and idle windows (verdict counts)
    ("ingest", "mosquitto", 1883),
    ("sync", "mosquitto", 1883),
    ("ota", "mosquitto", 1883),
    ("ingest", "postgresql", 5432),
    ("inference", "postgresql", 5432),  # the model registry
    ("sync", "postgresql", 5432),
    ("ota", "postgresql", 5432),
    ("db-roles", "postgresql", 5432),  # the job applying files/postgres-roles.sql
}


def _policies(*args: str) -> dict[str, dict[str, Any]]:
    objects = deploy_json("tools.chart_check.render_one", *args)["objects"]
    return {
        o["spec"]["podSelector"]["matchLabels"][COMPONENT]: o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }


def _ports(rule: dict[str, Any]) -> list[int]:
    return [p["port"] for p in rule.get("ports", [])]


def _pairs(policies: dict[str, dict[str, Any]]) -> tuple[set[Any], set[Any]]:
    """The (caller, callee, port) triples in-release pod selectors allow, as the callees'
    ingress and as the callers' egress see them."""
    ingress: set[tuple[str, str, int]] = set()
    egress: set[tuple[str, str, int]] = set()
    for name, spec in policies.items():
        for rule in spec.get("ingress", []):
            for peer in rule.get("from", []):
                caller = peer.get("podSelector", {}).get("matchLabels", {}).get(COMPONENT)
                if caller is not None and "namespaceSelector" not in peer:
                    ingress |= {(caller, name, port) for port in _ports(rule)}
        for rule in spec.get("egress", []):
            for peer in rule.get("to", []):
                callee = peer.get("podSelector", {}).get("matchLabels", {}).get(COMPONENT)
                if callee is not None and "namespaceSelector" not in peer:
                    egress |= {(name, callee, port) for port in _ports(rule)}
    return ingress, egress


def test_policies_allow_exactly_the_call_pairs() -> None:
    policies = _policies()
    assert set(policies) >= {"gateway", "ingest", "inference", "sync", "ota"}
    assert {"mosquitto", "postgresql"} <= set(policies)
    for name in ("gateway", "ingest", "inference", "sync", "ota", "mosquitto", "postgresql"):
        assert policies[name]["policyTypes"] == ["Ingress", "Egress"], name
    ingress, egress = _pairs(policies)
    assert ingress == INTENDED
    assert egress == INTENDED
    # nobody but the gateway and ingest reaches inference; only the gateway and ota reach ingest
    assert {c for c, callee, _ in ingress if callee == "inference"} == {"gateway", "ingest"}
    assert {c for c, callee, _ in ingress if callee == "ingest"} == {"gateway", "ota"}
    # the broker and the database open no connection
    assert policies["mosquitto"]["egress"] == []
    assert policies["postgresql"]["egress"] == []


def test_metrics_only_from_the_monitoring_namespace_and_dns_and_fetchers() -> None:
    policies = _policies(
        "--set-json",
        '{"networkPolicy": {"monitoring": {"namespaceSelector": '
        '{"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}}}',
    )
    for name in ("gateway", "ingest", "inference", "sync", "ota"):
        spec = policies[name]
        metrics = [r for r in spec["ingress"] if _ports(r) == [9464]]
        assert len(metrics) == 1, name
        assert metrics[0]["from"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}
        ]
        # every other ingress rule names its peers, except the gateway's public port
        for rule in spec["ingress"]:
            if name != "gateway" or _ports(rule) != [8080]:
                assert rule.get("from"), (name, rule)
        external = [
            peer for rule in spec["egress"] for peer in rule.get("to", []) if "ipBlock" in peer
        ]
        if name in {"sync", "inference", "ingest"}:
            assert external, name
            assert all("10.0.0.0/8" in p["ipBlock"]["except"] for p in external)
        else:
            assert not external, name
        for rule in spec["egress"]:
            assert rule.get("to"), (name, rule)  # no egress rule to anywhere


def test_external_broker_and_database_egress() -> None:
    values = (
        '{"mosquitto": {"enabled": false}, "mqtt": {"url": "mqtt://emqx:1883"},'
        ' "postgresql": {"enabled": false}, "database": {"url": "postgresql+asyncpg://u:p@db/lw"},'
        ' "networkPolicy": {"externalBroker": {"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}}}'
    )
    policies = _policies("--set-json", values)
    assert "mosquitto" not in policies
    assert "postgresql" not in policies
    ota = policies["ota"]["egress"]
    broker = [r for r in ota if _ports(r) == [1883, 8883]]
    assert broker == [
        {
            "ports": [{"port": 1883, "protocol": "TCP"}, {"port": 8883, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}],
        }
    ]


def test_grpc_mtls_values_wire_every_server_and_client() -> None:
    values = '{"grpcTls": {"enabled": true, "secretName": "grpc-tls"}}'
    objects = deploy_json("tools.chart_check.render_one", "--set-json", values)["objects"]
    configs = {
        o["metadata"]["labels"][COMPONENT]: o["data"]
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get(COMPONENT)
    }
    import yaml

    for name in ("ingest", "inference", "sync", "ota"):
        grpc = yaml.safe_load(configs[name][f"{name}.yaml"])["grpc"]
        assert grpc["tls"]["client_ca_file"] == "/etc/linewatch/tls/ca.crt", name
        assert grpc["health_port"] == 50060
    gateway = yaml.safe_load(configs["gateway"]["gateway.yaml"])["grpc"]
    assert gateway["client"]["cert_file"] == "/etc/linewatch/tls/tls.crt"
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    probe = deployments["linewatch-inference"]["spec"]["template"]["spec"]["containers"][0]
    assert probe["readinessProbe"]["grpc"]["port"] == 50060
