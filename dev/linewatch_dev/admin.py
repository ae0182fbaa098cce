"""``linewatch admin``: storage report, retention now, vacuum — through the gateway's REST API.

It talks to the gateway (``--url``, default ``http://127.0.0.1:8080``, or
``LINEWATCH_URL``) with a token (``--token`` or ``LINEWATCH_TOKEN``; the report needs a
read token when the gateway requires one, retention and vacuum the write token), never to
a database directly: the services own their databases, and the gateway's token check and
the services' gRPC roles apply as for any other client::

    linewatch admin storage
    linewatch admin retention [--service ingest]
    linewatch admin vacuum [--service sync]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

__all__ = ["add_admin_parser", "format_storage"]

_SERVICES = ("ingest", "sync", "ota")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_storage(body: dict[str, Any]) -> str:
    """The storage report as a table."""
    lines = [f"{'service':<8} {'table':<26} {'rows':>12} {'size':>11} {'partitions':>10}"]
    for svc in body.get("services", []):
        head = (
            f"{svc['service']} ({svc['database']}, schema {svc['schema_revision']}, "
            f"{_size(svc['database_bytes'])})"
        )
        lines.append(head)
        for t in svc.get("tables", []):
            lines.append(
                f"{'':<8} {t['table']:<26} {t['rows']:>12,} {_size(t['bytes']):>11} "
                f"{t['partitions'] or '':>10}"
            )
        for k in svc.get("last_retention", []):
            lines.append(
                f"{'':<8} last retention {k['kind']}: {k['rows_deleted']:,} rows deleted, "
                f"{k['partitions_dropped']} partitions dropped, {k['rows_kept']:,} kept longer"
            )
    for name, why in body.get("errors", {}).items():
        lines.append(f"{name}: no answer ({why})")
    return "\n".join(lines)


def _client(args: argparse.Namespace) -> httpx.Client:
    token = args.token or os.environ.get("LINEWATCH_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=args.url, headers=headers, timeout=args.timeout)


def _request(args: argparse.Namespace, method: str, path: str) -> dict[str, Any] | None:
    params = {"service": args.service} if getattr(args, "service", None) else None
    with _client(args) as client:
        try:
            resp = client.request(method, path, params=params)
        except httpx.HTTPError as exc:
            print(f"linewatch admin: {args.url}: {exc}", file=sys.stderr)
            return None
    if resp.status_code >= 400:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:200]
        print(f"linewatch admin: HTTP {resp.status_code}: {message}", file=sys.stderr)
        return None
    body: dict[str, Any] = resp.json()
    return body


def _cmd_storage(args: argparse.Namespace) -> int:
    body = _request(args, "GET", "/v1/storage")
    if body is None:
        return 1
    print(json.dumps(body, indent=2) if args.json else format_storage(body))
    return 0


def _cmd_retention(args: argparse.Namespace) -> int:
    body = _request(args, "POST", "/v1/storage/retention")
    if body is None:
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    for name, kinds in body["services"].items():
        for k in kinds:
            print(
                f"{name} {k['kind']}: {k['rows_deleted']:,} rows deleted, "
                f"{k['partitions_dropped']} partitions dropped, {k['rows_kept']:,} kept longer "
                f"({k['seconds']:.1f} s)"
            )
    return 0


def _cmd_vacuum(args: argparse.Namespace) -> int:
    body = _request(args, "POST", "/v1/storage/vacuum")
    if body is None:
        return 1
    for name, r in body["services"].items():
        before, after = r["database_bytes_before"], r["database_bytes_after"]
        print(f"{name}: {_size(before)} -> {_size(after)}")
    return 0


def add_admin_parser(sub: Any) -> None:
    """Add ``admin`` and its subcommands to the ``linewatch`` parser."""
    p = sub.add_parser("admin", help="storage report, retention now, vacuum (via the gateway)")
    admin = p.add_subparsers(dest="admin_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("LINEWATCH_URL", "http://127.0.0.1:8080"))
    common.add_argument("--token", default="", help="default: $LINEWATCH_TOKEN")
    common.add_argument("--timeout", type=float, default=600.0)
    common.add_argument("--json", action="store_true", help="print the JSON answer")
    one = argparse.ArgumentParser(add_help=False)
    one.add_argument("--service", choices=_SERVICES, help="one service (default: all)")
    q = admin.add_parser("storage", parents=[common], help="tables, sizes, partitions")
    q.set_defaults(func=_cmd_storage)
    q = admin.add_parser("retention", parents=[common, one], help="apply every TTL now")
    q.set_defaults(func=_cmd_retention)
    q = admin.add_parser("vacuum", parents=[common, one], help="give free space back")
    q.set_defaults(func=_cmd_vacuum)
