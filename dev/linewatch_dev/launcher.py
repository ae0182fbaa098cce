"""``linewatch up``: the whole stack on one machine, supervised.

Starts the MQTT broker if none answers at 127.0.0.1:1883 (the embedded one), then every
service that exists in this checkout (inference first, gateway last) and the simulator,
each as its own process. Prints where everything listens, stops everything cleanly on
Ctrl-C (SIGTERM to each, then SIGKILL after a grace period), and says clearly what is
wrong when a port is taken or a service dies.

gRPC: every service accepts ``dev-token`` as an operator token; the gateway and ingest
get their own random tokens (role ``gateway``; ``ingest`` may only score), made at
each start and never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from linewatch.runtime.grpc_auth import callers_env
from linewatch_dev.broker import broker_answers
from linewatch_dev.services import load

__all__ = ["Component", "LaunchError", "plan", "up"]

GRACE_S = 10.0
#: The write token of `make run`; printed at start, never used by the Helm chart.
DEV_TOKEN = "dev-token"  # noqa: S105


class LaunchError(Exception):
    """The stack cannot start; the message says why."""


@dataclass
class Component:
    """One supervised process."""

    name: str
    argv: list[str]
    port: int | None = None
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None


#: Name -> port, in start order (services.toml).
SERVICE_PORTS = {svc.name: svc.port for svc in load()}


def available_services() -> list[str]:
    """The services whose code exists in this checkout, in start order."""
    return [
        name
        for name in SERVICE_PORTS
        if importlib.util.find_spec(f"linewatch_{name}") is not None
        and importlib.util.find_spec(f"linewatch_{name}.app") is not None
    ]


#: Server → the internal callers it accepts besides the operator and the gateway.
_CLIENTS = {"inference": ("ingest",), "ota": ("ingest",), "ingest": ("ota",)}


def _ota_env(prefix: str) -> dict[str, str]:
    # the demo telemetry feeds the device inventory (read-only)
    env = {f"{prefix}DEVICES__TELEMETRY_TOPICS": "[plant/+/+/telemetry]"}
    if "ingest" in available_services():  # starts after ota: the rollout gate waits for it
        env[f"{prefix}INGEST_ADDR"] = f"127.0.0.1:{SERVICE_PORTS['ingest']}"
    return env


def plan(
    *, data_dir: Path, simulator: bool, broker_port: int = 1883, token: str = DEV_TOKEN
) -> list[Component]:
    """The processes ``up`` starts, in order."""
    py = sys.executable
    comps: list[Component] = []
    mqtt_url = f"mqtt://127.0.0.1:{broker_port}"
    if not broker_answers("127.0.0.1", broker_port):
        comps.append(
            Component(
                "broker",
                [py, "-m", "linewatch_dev.cli", "broker", "--port", str(broker_port)],
                port=broker_port,
                url=f"{mqtt_url} (embedded, MQTT 3.1.1)",
            )
        )
    common = {"PYTHONUNBUFFERED": "1"}
    internal = {name: secrets.token_urlsafe(24) for name in ("gateway", "ingest", "ota")}
    for name in available_services():
        port = SERVICE_PORTS[name]
        prefix = f"LINEWATCH_{name.upper()}__"
        env = {
            **common,
            f"{prefix}LOG_FORMAT": "text",
            f"{prefix}DATA_DIR": str(data_dir),
        }
        callers = {"operator": ("operator", token), "gateway": ("gateway", internal["gateway"])}
        # ingest → inference (scoring), ota (alarm commands); ota → ingest (rollout gate)
        for caller in _CLIENTS.get(name, ()):
            callers[caller] = (caller, internal[caller])
        env.update(callers_env(name, callers, internal.get(name, "")))
        if name == "gateway":
            env[f"{prefix}TOKENS"] = f"[{token}]"
            url = f"http://localhost:{port}  (dashboard; write token: {token})"
        else:
            url = f"grpc://127.0.0.1:{port}  (gRPC token: {token})"
        if name == "ingest":
            env[f"{prefix}BROKERS__DEFAULT__URL"] = mqtt_url
            if "ota" in available_services():  # alarm rules' device commands
                env[f"{prefix}DEVICES_ADDR"] = f"127.0.0.1:{SERVICE_PORTS['ota']}"
        elif name in {"sync", "ota"}:
            env[f"{prefix}MQTT__URL"] = mqtt_url
        # the demo fetches from (and posts webhooks to) this machine; a deployment allows
        # nothing non-public
        networks = {"sync": "", "inference": "", "ingest": "WEBHOOK__"}.get(name)
        if networks is not None and f"{prefix}{networks}ALLOWED_NETWORKS" not in os.environ:
            env[f"{prefix}{networks}ALLOWED_NETWORKS"] = "127.0.0.0/8"
        if name == "ota":
            env.update(_ota_env(prefix))
        comps.append(Component(name, [py, "-m", f"linewatch_{name}"], port, url, env))
    if simulator and "ota" in available_services():
        comps.append(
            Component(
                "device-simulator",
                [py, "-m", "linewatch_dev.cli", "devices", "simulate", "--broker", mqtt_url,
                 "--devices", "6"],
                url="devices dev-0000…dev-0005 answering devices/<id>/commands",
                env=common,
            )
        )  # fmt: skip
    if simulator:
        comps.append(
            Component(
                "simulator",
                [py, "-m", "linewatch_dev.cli", "simulate", "--broker", mqtt_url, "--rate", "10"],
                url="publishing plant/<line>/sim-*/telemetry",
                env=common,
            )
        )
    return comps


def grpcurl_hint(comps: list[Component], token: str = DEV_TOKEN) -> str:
    """How to call a service with grpcurl (health and ``list`` need no token)."""
    ports = {c.name: c.port for c in comps}
    port = ports.get("ingest") or SERVICE_PORTS["ingest"]
    return (
        f"\ngRPC needs `authorization: Bearer {token}` (operator) on every call but health "
        "and reflection, e.g.\n"
        f"  grpcurl -plaintext 127.0.0.1:{port} list\n"
        f"  grpcurl -plaintext -H 'authorization: Bearer {token}' "
        f"127.0.0.1:{port} linewatch.v1.IngestService/GetIngestStatus"
    )


def _check_ports(comps: list[Component]) -> None:
    taken = [c for c in comps if c.port is not None and broker_answers("127.0.0.1", c.port)]
    if taken:
        lines = ", ".join(f"{c.name} needs port {c.port}" for c in taken)
        raise LaunchError(
            f"port already in use: {lines}. Stop whatever listens there "
            "(`ss -ltnp` shows it) or run only what is missing."
        )


async def _wait_listening(comp: Component, timeout: float = 60.0) -> None:
    assert comp.proc is not None
    if comp.port is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if comp.proc.returncode is not None:
            raise LaunchError(f"{comp.name} exited with code {comp.proc.returncode} at start")
        if await asyncio.to_thread(broker_answers, "127.0.0.1", comp.port, 0.2):
            return
        await asyncio.sleep(0.2)
    raise LaunchError(f"{comp.name} did not listen on port {comp.port} within {timeout:.0f}s")


async def _stop_all(comps: list[Component]) -> None:
    running = [c for c in reversed(comps) if c.proc is not None and c.proc.returncode is None]
    for comp in running:
        assert comp.proc is not None
        with contextlib.suppress(ProcessLookupError):
            comp.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(comp.proc.wait(), GRACE_S)
        except TimeoutError:
            print(f"linewatch: {comp.name} did not stop in {GRACE_S:.0f}s; killing it", flush=True)
            with contextlib.suppress(ProcessLookupError):
                comp.proc.kill()
            await comp.proc.wait()


async def up(*, data_dir: Path = Path(".linewatch"), simulator: bool = True) -> int:
    """Run the stack until Ctrl-C or until a component dies; returns the exit code."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    comps = plan(data_dir=data_dir, simulator=simulator)
    _check_ports(comps)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        for comp in comps:
            comp.proc = await asyncio.create_subprocess_exec(
                *comp.argv, env={**os.environ, **comp.env}, start_new_session=True
            )
            await _wait_listening(comp)
        print("\nlinewatch is up:", flush=True)
        for comp in comps:
            print(f"  {comp.name:10} {comp.url}", flush=True)
        if "gateway" not in {c.name for c in comps}:
            print("  (no gateway in this checkout yet: no dashboard)", flush=True)
        print(grpcurl_hint(comps), flush=True)
        print("Ctrl-C stops everything.\n", flush=True)
        waits = {asyncio.ensure_future(c.proc.wait()): c for c in comps if c.proc is not None}
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        for fut in done:
            if fut in waits and not stop.is_set():
                comp = waits[fut]
                print(
                    f"linewatch: {comp.name} died (exit code {fut.result()}); "
                    "stopping the rest. Its log is above.",
                    flush=True,
                )
                code = 1
        stopper.cancel()
        for fut in waits:
            fut.cancel()
    except LaunchError as exc:
        print(f"linewatch: {exc}", flush=True)
        code = 1
    finally:
        print("linewatch: stopping …", flush=True)
        await _stop_all(comps)
        print("linewatch: stopped.", flush=True)
    return code
