"""MQTT over TLS against a real mosquitto: a CA and server certificate made here (with the
``cryptography`` package), one listener with a password file (``mosquitto_passwd``) and one
that requires client certificates."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.errors import ConfigError, Unavailable
from linewatch.runtime.mqtt import MqttClient, MqttMessage
from linewatch_dev.testing import free_port, mosquitto_binary, wait_port


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class TlsBroker:
    password_port: int
    mtls_port: int
    ca: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def url(self, port: int) -> str:
        return f"mqtts://127.0.0.1:{port}"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    binary = mosquitto_binary()
    passwd_tool = shutil.which("mosquitto_passwd")
    if binary is None or passwd_tool is None:
        pytest.skip("mosquitto / mosquitto_passwd not installed")
    ca_key, server_key, client_key, other_key = _key(), _key(), _key(), _key()
    ca = _cert("linewatch test CA", ca_key, ca=True)
    server = _cert("localhost", server_key, ca.subject, ca_key, server=True)
    client = _cert("device-1", client_key, ca.subject, ca_key)
    other_ca = _cert("some other CA", other_key, ca=True)
    for name, cert in {"ca": ca, "server": server, "client": client, "other": other_ca}.items():
        _write_cert(cert, tmp_path / f"{name}.pem")
    _write_key(server_key, tmp_path / "server.key")
    _write_key(client_key, tmp_path / "client.key")
    passwd = tmp_path / "passwd"
    subprocess.run([passwd_tool, "-b", "-c", str(passwd), "plant-user", "s3cret-pass"], check=True)
    passwd.chmod(0o600)
    password_port, mtls_port = free_port(), free_port()
    tls = (
        f"cafile {tmp_path}/ca.pem\ncertfile {tmp_path}/server.pem\nkeyfile {tmp_path}/server.key\n"
    )
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings true\n"
        f"user {getpass.getuser()}\n"
        f"listener {password_port} 127.0.0.1\n{tls}"
        f"allow_anonymous false\npassword_file {passwd}\n"
        f"listener {mtls_port} 127.0.0.1\n{tls}"
        "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
    )
    log = tmp_path / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=out)
    try:
        wait_port(password_port)
        wait_port(mtls_port)
    except TimeoutError:
        proc.kill()
        proc.wait()
        pytest.fail(f"mosquitto with TLS did not start: {log.read_text()}")
    yield TlsBroker(
        password_port,
        mtls_port,
        tmp_path / "ca.pem",
        tmp_path / "client.pem",
        tmp_path / "client.key",
        tmp_path / "other.pem",
    )
    proc.kill()
    proc.wait()


async def _round_trip(config: MqttConfig, topic: str) -> MqttMessage:
    got: asyncio.Queue[MqttMessage] = asyncio.Queue()

    async def handler(message: MqttMessage) -> None:
        await got.put(message)

    async with MqttClient(config, clean_start=True) as client:
        assert client.protocol_version == 5
        await client.subscribe(topic, handler)
        await client.publish(topic, b"over tls", user_properties=[("k", "v")])
        return await asyncio.wait_for(got.get(), 10)


async def test_tls_with_username_and_password(tls_broker: TlsBroker) -> None:
    config = MqttConfig(
        url=tls_broker.url(tls_broker.password_port),
        ca_file=str(tls_broker.ca),
        username="plant-user",
        password="s3cret-pass",
    )
    message = await _round_trip(config, "tls/password")
    assert message.payload == b"over tls"
    assert message.user_property("k") == "v"


async def test_wrong_password_is_refused_clearly(tls_broker: TlsBroker) -> None:
    config = MqttConfig(
        url=tls_broker.url(tls_broker.password_port),
        ca_file=str(tls_broker.ca),
        username="plant-user",
        password="wrong",
    )
    with pytest.raises(Unavailable, match=r"refused the connection: (bad user name|not auth)"):
        await MqttClient(config).connect(timeout=5)
    anonymous = MqttConfig(url=config.url, ca_file=config.ca_file)
    with pytest.raises(Unavailable, match="refused the connection"):
        await MqttClient(anonymous).connect(timeout=5)


async def test_broker_certificate_is_verified(tls_broker: TlsBroker) -> None:
    url = tls_broker.url(tls_broker.password_port)
    base = MqttConfig(url=url, username="plant-user", password="s3cret-pass")
    # signed by a CA we do not trust: refused
    with pytest.raises(Unavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        await MqttClient(base.model_copy(update={"ca_file": str(tls_broker.other_ca)})).connect(
            timeout=5
        )
    # the system's CAs do not know it either
    with pytest.raises(Unavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        await MqttClient(base).connect(timeout=5)
    # unless told not to check (lab brokers only)
    message = await _round_trip(base.model_copy(update={"tls_insecure": True}), "tls/insecure")
    assert message.payload == b"over tls"


async def test_client_certificate(tls_broker: TlsBroker) -> None:
    url = tls_broker.url(tls_broker.mtls_port)
    config = MqttConfig(
        url=url,
        ca_file=str(tls_broker.ca),
        cert_file=str(tls_broker.client_cert),
        key_file=str(tls_broker.client_key),
    )
    message = await _round_trip(config, "tls/mtls")
    assert message.payload == b"over tls"
    with pytest.raises(Unavailable):
        await MqttClient(MqttConfig(url=url, ca_file=str(tls_broker.ca))).connect(timeout=5)


def test_tls_settings_are_checked_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not mqtts://"):
        MqttClient(MqttConfig(url="mqtt://127.0.0.1:1883", ca_file="/x/ca.pem"))
    with pytest.raises(ConfigError, match="ca_file"):
        MqttClient(MqttConfig(url="mqtts://127.0.0.1", ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(ConfigError, match="cert_file"):
        MqttClient(MqttConfig(url="mqtts://127.0.0.1", cert_file=str(tmp_path / "none.pem")))
    with pytest.raises(ConfigError, match="without cert_file"):
        MqttClient(MqttConfig(url="mqtts://127.0.0.1", key_file=str(tmp_path / "k.pem")))
