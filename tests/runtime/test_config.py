from pathlib import Path

import pytest
from pydantic import Field

from linewatch.runtime.config import GrpcConfig, MqttConfig, ServiceConfig, load_config
from linewatch.runtime.errors import ConfigError


class DemoConfig(ServiceConfig):
    mqtt: MqttConfig = MqttConfig()
    batch_size: int = Field(default=32, ge=1)
    topics: list[str] = ["sync"]


def test_defaults_without_file_or_env() -> None:
    cfg = load_config(DemoConfig, service="demo", environ={})
    assert cfg.batch_size == 32
    assert cfg.grpc == GrpcConfig()


def test_yaml_then_env_override_nested(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text("batch_size: 8\ngrpc:\n  port: 50099\nmqtt:\n  url: mqtt://a:1883\n")
    env = {
        "LINEWATCH_DEMO__GRPC__PORT": "50100",
        "LINEWATCH_DEMO__TOPICS": "[a, b]",
        "LINEWATCH_OTHER__BATCH_SIZE": "1",
    }
    cfg = load_config(DemoConfig, service="demo", path=path, environ=env)
    assert cfg.batch_size == 8
    assert cfg.grpc.port == 50100
    assert cfg.mqtt.url == "mqtt://a:1883"
    assert cfg.topics == ["a", "b"]


def test_config_path_from_env(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text("batch_size: 3\n")
    cfg = load_config(DemoConfig, service="demo", environ={"LINEWATCH_DEMO_CONFIG": str(path)})
    assert cfg.batch_size == 3


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("batch_size: 0\n", {}, "batch_size"),
        ("grpc:\n  port: 70000\n", {}, "grpc.port"),
        ("unknown_key: 1\n", {}, "unknown_key"),
        ("batch_size: [1\n", {}, "not valid YAML at line"),
        ("- a\n- b\n", {}, "top level must be a mapping"),
        ("", {"LINEWATCH_DEMO__BATCH_SIZE": "many"}, "batch_size"),
        ("", {"LINEWATCH_DEMO__MQTT__KEEPALIVE_S": "1"}, "mqtt.keepalive_s"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str], needle: str) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(DemoConfig, service="demo", path=path, environ=env)
    message = info.value.message
    assert needle in message
    assert "\n" not in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(DemoConfig, service="demo", path=tmp_path / "nope.yaml", environ={})
