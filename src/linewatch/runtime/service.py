"""Process entry point shared by every service: config, logging, telemetry, signals.

A service's ``__main__`` is one line::

    run_service("ingest", IngestConfig, serve)

where ``serve(config, stop)`` runs until the ``stop`` event is set (SIGTERM or SIGINT).
A service with a database passes its migration history too
(``run_service("ingest", IngestConfig, serve, history=HISTORY)``), which adds the command
``python -m linewatch_<svc> migrate [--config ...]``: upgrade the schema and exit (the Helm
hook Job runs it before an install or upgrade).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from linewatch.runtime.config import ServiceConfig, load_config
from linewatch.runtime.errors import ConfigError, LinewatchError
from linewatch.runtime.logs import setup_logging
from linewatch.runtime.telemetry import setup_telemetry, shutdown_telemetry

if TYPE_CHECKING:
    from linewatch.runtime.migrations import MigrationHistory

__all__ = ["run_service", "start_metrics_server"]

C = TypeVar("C", bound=ServiceConfig)

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Collect cyclic garbage less often: the services allocate many short-lived objects
    per message (freed by reference counting), and the default young-generation threshold
    (700) makes the collector run thousands of times a second under load. What was
    loaded at start is frozen out of every collection. Measured on the ingest benchmark:
    about 15 % more messages per second at saturation, memory unchanged (the soak test
    holds RSS flat)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve Prometheus metrics of this process on ``http://host:port/metrics``."""
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise ConfigError(f"metrics_port: cannot listen on {port} ({exc.strerror})") from exc


async def _main(config: C, serve: Callable[[C, asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(config, stop)
    finally:
        shutdown_telemetry()


async def _migrate(config: ServiceConfig, name: str, history: MigrationHistory) -> None:
    from linewatch.runtime.db import Database, default_sqlite_url
    from linewatch.runtime.migrations import migrate

    db = Database(config.database_url or default_sqlite_url(config.data_dir, name))
    try:
        revision = await migrate(db, history)
    finally:
        await db.close()
    print(f"linewatch-{name}: schema at revision {revision}")


def _run_migrate(config: ServiceConfig, name: str, history: MigrationHistory) -> int:
    try:
        asyncio.run(_migrate(config, name, history))
    except ConfigError as exc:
        print(f"linewatch-{name}: configuration error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def run_service(
    name: str,
    model: type[C],
    serve: Callable[[C, asyncio.Event], Awaitable[None]],
    argv: list[str] | None = None,
    *,
    history: MigrationHistory | None = None,
) -> int:
    """Load config, set up logging and telemetry, run ``serve`` until a signal.

    Returns:
        The process exit code: 0 after a clean stop, 2 for a configuration error,
        1 when the service failed.
    """
    parser = argparse.ArgumentParser(prog=f"linewatch-{name}")
    parser.add_argument("--config", help="YAML configuration file")
    if history is not None:
        parser.add_argument(
            "command",
            nargs="?",
            choices=["serve", "migrate"],
            default="serve",
            help="serve (default), or migrate: upgrade the database schema and exit",
        )
    args = parser.parse_args(argv)
    try:
        config = load_config(model, service=name, path=args.config)
    except ConfigError as exc:
        print(f"linewatch-{name}: configuration error: {exc.message}", file=sys.stderr)
        return 2
    setup_logging(name, level=config.log_level, fmt=config.log_format)
    setup_telemetry(name)
    if history is not None and args.command == "migrate":
        return _run_migrate(config, name, history)
    tune_gc()
    try:
        if config.metrics_port:
            start_metrics_server(config.metrics_port, config.metrics_host or config.grpc.host)
        asyncio.run(_main(config, serve))
    except ConfigError as exc:
        log.error("configuration error: %s", exc.message)
        print(f"linewatch-{name}: configuration error: {exc.message}", file=sys.stderr)
        return 2
    except LinewatchError as exc:
        log.error("stopped: %s", exc.message)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
