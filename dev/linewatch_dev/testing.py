"""Helpers for tests of linewatch and of its services: ports, a private Mosquitto and
PostgreSQL, an OTLP receiver, hypothesis corpora.

Not imported by any service at run time.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from linewatch_dev.broker import EmbeddedBroker, broker_answers

__all__ = [
    "TEST_TOKEN",
    "Mosquitto",
    "OtlpReceiver",
    "Postgres",
    "ReceivedSpan",
    "assert_every_method_guarded",
    "broker_url",
    "call_code",
    "free_port",
    "fuzz_corpus",
    "guarded_methods",
    "mosquitto_binary",
    "operator_channel",
    "operator_client",
    "operator_env",
    "operator_grpc_dict",
    "postgres_bin_dir",
    "secured_grpc",
    "wait_port",
    "write_pki",
]


def fuzz_corpus(strategy: Any, n: int) -> list[Any]:
    """``n`` examples hypothesis draws from ``strategy``: one corpus for one live run
    through real services (a ``@given`` test per example would restart them each time)."""
    from hypothesis import Phase, given, settings

    corpus: list[Any] = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate])
    @given(strategy)
    def draw(example: Any) -> None:
        corpus.append(example)

    draw()
    return corpus


#: The operator token every test server accepts (``secured_grpc``) and ``operator_channel`` sends.
TEST_TOKEN = "test-operator-token"  # noqa: S105


def secured_grpc(**fields: Any) -> Any:
    """A :class:`GrpcConfig` (``fields`` as given) accepting :data:`TEST_TOKEN` as operator
    and calling other services with it."""
    from pydantic import SecretStr

    from linewatch.runtime.config import GrpcAuthConfig, GrpcCaller, GrpcConfig

    fields.setdefault(
        "auth",
        GrpcAuthConfig(
            callers=[GrpcCaller(name="test", role="operator", token=SecretStr(TEST_TOKEN))]
        ),
    )
    fields.setdefault("client", operator_client())
    return GrpcConfig(**fields)


def operator_env(service: str) -> dict[str, str]:
    """Environment variables making ``service`` accept :data:`TEST_TOKEN` as operator and
    send it when it calls others (for services started as child processes)."""
    from linewatch.runtime.grpc_auth import callers_env

    return callers_env(service, {"test": ("operator", TEST_TOKEN)}, TEST_TOKEN)


def operator_grpc_dict(**fields: Any) -> dict[str, Any]:
    """The ``grpc`` section of a YAML/JSON config file doing what :func:`operator_env` does."""
    return {
        **fields,
        "auth": {"callers": [{"name": "test", "role": "operator", "token": TEST_TOKEN}]},
        "client": {"token": TEST_TOKEN},
    }


def operator_client(token: str = TEST_TOKEN) -> Any:
    """A :class:`GrpcClientConfig` sending ``token``."""
    from pydantic import SecretStr

    from linewatch.runtime.config import GrpcClientConfig

    return GrpcClientConfig(token=SecretStr(token))


def operator_channel(target: str, *, token: str = TEST_TOKEN, **kwargs: Any) -> Any:
    """A plaintext grpc.aio channel to ``target`` sending ``token`` on every call."""
    from linewatch.runtime.grpc_auth import open_channel

    return open_channel(target, operator_client(token), **kwargs)


def mosquitto_binary() -> str | None:
    """The mosquitto executable, if installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_answers("127.0.0.1", port, timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


class Mosquitto:
    """A private mosquitto on a free port that a test may kill and restart."""

    def __init__(self, workdir: Path, *, extra_config: str = "") -> None:
        self.binary = mosquitto_binary() or "mosquitto"
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        # Started as root, mosquitto would drop to its own user, which cannot write
        # into the test's private tmp dir: keep the current user.
        user = f"user {getpass.getuser()}\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            "max_queued_messages 100000\n" + user + extra_config
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file first."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


STOCK_LIMITS = "max_inflight_messages 20\nmax_queued_messages 1000\n"
"""Mosquitto's defaults (:class:`Mosquitto` raises the queue; this puts them back)."""


@contextlib.contextmanager
def private_mosquitto(tmp_path: Path, extra_config: str = "") -> Iterator[Mosquitto]:
    """A started :class:`Mosquitto` of the test's own (in ``tmp_path/broker``), killed at
    exit; the test is skipped where mosquitto is not installed."""
    import pytest

    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Mosquitto(workdir, extra_config=extra_config)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def postgres_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, if PostgreSQL is installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return versions[0].parent if versions else None


class Postgres:
    """A private PostgreSQL cluster on a free port that a test may stop and start.

    PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres``
    user (and lives in a directory that user can reach).
    """

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL (initdb, pg_ctl) is not installed")
        self.bin_dir = bin_dir
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="linewatch-pg-"))
        self.data = self.workdir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.workdir, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(  # noqa: S603
            [*self._as, str(self.bin_dir / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir}"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.workdir / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        wait_port(self.port, timeout=30)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop it (``immediate``: like a crash, no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop it if running and delete its files."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop(mode="immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


class OtlpReceiver:
    """A real OTLP/gRPC trace receiver on a free port that keeps every span it gets.

    Point services at it with ``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint``.
    """

    def __init__(self) -> None:
        self.port = 0
        self.spans: list[ReceivedSpan] = []
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        receiver = self

        class _Service(trace_service_pb2_grpc.TraceServiceServicer):
            async def Export(  # noqa: N802 - gRPC method name
                self, request: Any, context: Any
            ) -> Any:
                for resource_spans in request.resource_spans:
                    service = ""
                    for attr in resource_spans.resource.attributes:
                        if attr.key == "service.name":
                            service = attr.value.string_value
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append(
                                ReceivedSpan(
                                    service=service,
                                    name=span.name,
                                    trace_id=span.trace_id.hex(),
                                    span_id=span.span_id.hex(),
                                    parent_span_id=span.parent_span_id.hex(),
                                    kind=int(span.kind),
                                )
                            )
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        """Spans grouped by trace id."""
        out: dict[str, list[ReceivedSpan]] = {}
        for span in self.spans:
            out.setdefault(span.trace_id, []).append(span)
        return out


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One span as the receiver got it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int


@contextlib.asynccontextmanager
async def broker_url() -> AsyncIterator[str]:
    """``LINEWATCH_TEST_MQTT_URL`` (the test session's broker) when set, else the
    machine's broker at 127.0.0.1:1883 if it answers, else an embedded one."""
    if os.environ.get("LINEWATCH_TEST_MQTT_URL"):
        yield os.environ["LINEWATCH_TEST_MQTT_URL"]
        return
    if broker_answers("127.0.0.1", 1883):
        yield "mqtt://127.0.0.1:1883"
        return
    port = free_port()
    async with EmbeddedBroker(port=port):
        yield f"mqtt://127.0.0.1:{port}"


async def guarded_methods(target: str) -> list[tuple[str, bool, bool]]:
    """Every method of ``target`` found by server reflection but health and reflection:
    ``(full method name, client streaming, server streaming)``."""
    import grpc
    from google.protobuf import descriptor_pb2  # type: ignore[import-untyped,unused-ignore]
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from linewatch.runtime.grpc_auth import PUBLIC_SERVICES

    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        reply = await call.read()
        services = [
            s.name for s in reply.list_services_response.service if s.name not in PUBLIC_SERVICES
        ]
        methods: list[tuple[str, bool, bool]] = []
        for name in services:
            await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=name))
            reply = await call.read()
            for raw in reply.file_descriptor_response.file_descriptor_proto:
                fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
                for svc in fd.service:
                    if f"{fd.package}.{svc.name}" != name:
                        continue
                    methods += [
                        (f"/{name}/{m.name}", m.client_streaming, m.server_streaming)
                        for m in svc.method
                    ]
        await call.done_writing()
    return methods


async def call_code(
    target: str, method: tuple[str, bool, bool], token: str | None, timeout: float = 3.0
) -> Any:
    """The status code one call of ``method`` with an empty request gets (``OK`` when it
    succeeds), sent with ``token`` (``None``: no authorization header)."""
    import grpc

    from linewatch.runtime.grpc_auth import open_channel

    name, client_streaming, server_streaming = method

    def identity(data: bytes) -> bytes:
        return data

    async def empty() -> Any:
        # no request message: a server that refuses the call at once must not race the
        # client's first write (under load that surfaced as INTERNAL instead of the code)
        nothing: tuple[bytes, ...] = ()
        for message in nothing:
            yield message

    channel = open_channel(target, operator_client(token) if token is not None else None)
    try:
        kwargs = {"request_serializer": identity, "response_deserializer": identity}
        if client_streaming and server_streaming:
            async for _ in channel.stream_stream(name, **kwargs)(empty(), timeout=timeout):
                pass
        elif client_streaming:
            await channel.stream_unary(name, **kwargs)(empty(), timeout=timeout)
        elif server_streaming:
            async for _ in channel.unary_stream(name, **kwargs)(b"", timeout=timeout):
                pass
        else:
            await channel.unary_unary(name, **kwargs)(b"", timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


async def assert_every_method_guarded(target: str, token: str = TEST_TOKEN) -> list[str]:
    """Call every reflected method of ``target`` without a token, with a wrong one and
    with ``token``: the first two must get UNAUTHENTICATED, the last neither
    UNAUTHENTICATED nor PERMISSION_DENIED. Returns the methods checked."""
    import grpc

    methods = await guarded_methods(target)
    assert methods, f"reflection on {target} lists no method"
    for method in methods:
        for wrong in (None, "not-a-token"):
            code = await call_code(target, method, wrong)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (method[0], wrong, code)
        code = await call_code(target, method, token)
        assert code not in {
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        }, (method[0], code)
    return [m[0] for m in methods]


def write_pki(root: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM
    files under ``root``: keys ``ca``, ``server_cert``, ``server_key``, ``client_cert``,
    ``client_key``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def cert(subject: str, key: Any, issuer: tuple[Any, Any] | None, *, ca: bool = False) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        issuer_name, issuer_key = issuer if issuer is not None else (name, key)
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    files: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("linewatch-test-ca", ca_key, None, ca=True)
    files["ca"] = root / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = cert(f"linewatch-{who}", key, (ca.subject, ca_key))
        files[f"{who}_cert"] = root / f"{who}.pem"
        files[f"{who}_cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        files[f"{who}_key"] = root / f"{who}.key"
        files[f"{who}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def file_server(root: Path) -> Iterator[str]:
    """A real HTTP server for the files under ``root`` (model packages, firmware…): its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
