"""SyncConfig: defaults the launcher relies on, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from linewatch_sync.config import SyncConfig

from linewatch.runtime.config import load_config
from linewatch.runtime.errors import ConfigError


def test_defaults() -> None:
    config = load_config(SyncConfig, service="sync", environ={})
    assert config.grpc.port == 50053
    assert config.topics == ("sync", "sync-single-work", "holo-file-sync")
    assert config.resolved_cache_dir() == Path(".linewatch/cache")
    assert config.allowed_content_types == ("image/*",)
    assert config.allowed_networks == ()  # public addresses only


def test_allowed_networks_from_one_comma_separated_variable() -> None:
    env = {"LINEWATCH_SYNC__ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128,10.1.2.3"}
    config = load_config(SyncConfig, service="sync", environ=env)
    assert config.allowed_networks == ("127.0.0.0/8", "::1/128", "10.1.2.3/32")
    with pytest.raises(ConfigError, match="allowed_networks"):
        load_config(
            SyncConfig, service="sync", environ={"LINEWATCH_SYNC__ALLOWED_NETWORKS": "10.0.0.0/99"}
        )


def test_environment_overrides() -> None:
    config = load_config(
        SyncConfig,
        service="sync",
        environ={
            "LINEWATCH_SYNC__TOPICS": "[a/sync, b/sync]",
            "LINEWATCH_SYNC__CONCURRENCY": "4",
            "LINEWATCH_SYNC__ALLOWED_HOSTS": "['*.example.com']",
            "LINEWATCH_SYNC__CACHE_DIR": "/srv/cache",
        },
    )
    assert config.topics == ("a/sync", "b/sync")
    assert config.concurrency == 4
    assert config.allowed_hosts == ("*.example.com",)
    assert config.resolved_cache_dir() == Path("/srv/cache")


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"LINEWATCH_SYNC__CONCURRENCY": "0"}, "concurrency"),
        ({"LINEWATCH_SYNC__TOPICS": "[]"}, "topics"),
        ({"LINEWATCH_SYNC__LEASE_S": "10", "LINEWATCH_SYNC__TOTAL_TIMEOUT_S": "20"}, "lease_s"),
        ({"LINEWATCH_SYNC__NOPE": "1"}, "nope"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(SyncConfig, service="sync", environ=env)
