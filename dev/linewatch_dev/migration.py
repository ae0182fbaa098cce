"""``python -m linewatch_dev.migration <svc> "message"``: write the next revision (autogenerate).

Run by ``make migration SERVICE=<svc> MSG="..."``. The revision compares the service's
SQLModel metadata with its history's head (on a scratch SQLite database); review the file
it writes (renames and data moves need hand edits; PostgreSQL-only DDL is written by hand).
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
from pathlib import Path

from linewatch.runtime.migrations import MigrationHistory, autogenerate


def history_of(service: str) -> MigrationHistory:
    """The migration history of a service (``linewatch_<svc>.schema.HISTORY``)."""
    module = importlib.import_module(f"linewatch_{service}.schema")
    history: MigrationHistory = module.HISTORY
    return history


def main(argv: list[str] | None = None) -> int:
    """Write one revision; prints its path."""
    parser = argparse.ArgumentParser(prog="make migration")
    parser.add_argument("service")
    parser.add_argument("message")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = autogenerate(history_of(args.service), args.message, Path(tmp) / "scratch.db")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
