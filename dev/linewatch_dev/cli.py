"""The ``linewatch`` command: ``up``, ``simulate``, ``broker``, ``ota simulate``,
``devices simulate``, ``train``, ``admin`` (storage, retention, vacuum)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _run_until_signal(factory: Callable[[asyncio.Event], Awaitable[Any]]) -> Any:
    async def runner() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await factory(stop)

    return asyncio.run(runner())


def _cmd_up(args: argparse.Namespace) -> int:
    from linewatch_dev.launcher import up

    simulator = os.environ.get("LINEWATCH_SIMULATOR", "1") != "0" and not args.no_simulator
    return int(asyncio.run(up(data_dir=Path(args.data_dir), simulator=simulator)))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from linewatch.runtime.errors import Unavailable
    from linewatch_dev.simulator import SimulatorConfig, run_simulator

    config = SimulatorConfig(
        mqtt_url=args.broker,
        rate=args.rate,
        defect_rate=args.defect_rate,
        lines=args.lines,
        devices_per_line=args.devices,
        count=args.count,
        seed=args.seed,
    )
    try:
        sent = _run_until_signal(lambda stop: run_simulator(config, stop))
    except Unavailable as exc:
        print(f"linewatch simulate: {exc.message}", file=sys.stderr)
        return 1
    print(f"simulator: {sent} curves sent", file=sys.stderr)
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    from linewatch_dev.broker import EmbeddedBroker

    broker = EmbeddedBroker(host=args.host, port=args.port)
    try:
        _run_until_signal(broker.serve_forever)
    except OSError as exc:
        why = exc.strerror or exc
        print(f"linewatch broker: cannot listen on {args.port}: {why}", file=sys.stderr)
        return 1
    return 0


def _cmd_ota_simulate(args: argparse.Namespace) -> int:
    from linewatch_dev.ota_simulator import simulate

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            simulate(mqtt_url=args.broker, devices=args.devices, fail_share=args.fail_share)
        )
    return 0


def _cmd_devices_simulate(args: argparse.Namespace) -> int:
    from linewatch_dev.devices_simulator import simulate

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            simulate(
                mqtt_url=args.broker,
                devices=args.devices,
                fail_share=args.fail_share,
                slow_share=args.slow_share,
            )
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="linewatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="run the whole stack on this machine")
    p.add_argument("--data-dir", default=".linewatch")
    p.add_argument("--no-simulator", action="store_true", help="same as LINEWATCH_SIMULATOR=0")
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("simulate", help="publish simulated process curves")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--rate", type=float, default=20.0, help="curves per second (0: flat out)")
    p.add_argument("--defect-rate", type=float, default=0.1)
    p.add_argument("--lines", type=int, default=2)
    p.add_argument("--devices", type=int, default=3, help="devices per line")
    p.add_argument("--count", type=int, default=0, help="stop after N curves (0: never)")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("broker", help="run the embedded MQTT broker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.set_defaults(func=_cmd_broker)

    p = sub.add_parser("ota", help="OTA tools")
    ota = p.add_subparsers(dest="ota_command", required=True)
    p = ota.add_parser("simulate", help="devices that follow the OTA protocol")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--fail-share", type=float, default=0.0)
    p.set_defaults(func=_cmd_ota_simulate)

    p = sub.add_parser("devices", help="device-command tools")
    devices = p.add_subparsers(dest="devices_command", required=True)
    p = devices.add_parser("simulate", help="devices that answer commands (some slow, failing)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--fail-share", type=float, default=0.1)
    p.add_argument("--slow-share", type=float, default=0.1)
    p.set_defaults(func=_cmd_devices_simulate)

    from linewatch_dev.train.command import add_parser as add_train

    add_train(sub)

    from linewatch_dev.admin import add_admin_parser

    add_admin_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``linewatch`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
