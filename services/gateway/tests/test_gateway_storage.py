"""GET /v1/storage and the storage writes, through the real ingest, sync and OTA services."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from linewatch_ingest.schema import HISTORY

from linewatch_dev.cli import main

from .conftest import READ_TOKEN, WRITE_TOKEN, LiveGateway


async def test_storage_report_retention_and_vacuum(
    client: httpx.AsyncClient, write_headers: dict[str, str], read_only_headers: dict[str, str]
) -> None:
    resp = await client.get("/v1/storage", headers=read_only_headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["errors"] == {}
    by_name = {s["service"]: s for s in body["services"]}
    assert set(by_name) == {"ingest", "sync", "ota"}
    ingest = by_name["ingest"]
    assert ingest["schema_revision"] == HISTORY.head()
    assert {t["table"] for t in ingest["tables"]} >= {"ingest_telemetry", "ingest_verdict"}
    assert ingest["database_bytes"] > 0

    resp = await client.post("/v1/storage/retention", headers=read_only_headers)
    assert resp.status_code == 403
    resp = await client.post("/v1/storage/retention?service=ingest", headers=write_headers)
    assert resp.status_code == 200, resp.text
    kinds = {k["kind"] for k in resp.json()["services"]["ingest"]}
    assert kinds == {"telemetry", "verdicts", "dead_letters", "alarms"}
    resp = await client.post("/v1/storage/retention?service=nope", headers=write_headers)
    assert resp.status_code in (400, 422)

    resp = await client.post("/v1/storage/vacuum?service=sync", headers=write_headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["services"]["sync"]["database_bytes_after"] > 0


async def test_the_admin_command_reports_runs_retention_and_vacuums(
    live: LiveGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """``linewatch admin`` against a real gateway on a port (a thread: the CLI is sync)."""
    base = ["--url", live.url, "--token", WRITE_TOKEN]
    code = await asyncio.to_thread(main, ["admin", "storage", *base])
    out = capsys.readouterr().out
    assert code == 0
    assert "ingest (" in out
    assert "ingest_telemetry" in out
    code = await asyncio.to_thread(main, ["admin", "retention", "--service", "ota", *base])
    assert code == 0
    assert "ota commands: 0 rows deleted" in capsys.readouterr().out
    code = await asyncio.to_thread(main, ["admin", "vacuum", "--service", "ingest", *base])
    assert code == 0
    assert "ingest: " in capsys.readouterr().out
    bad = ["--url", live.url, "--token", READ_TOKEN]
    code = await asyncio.to_thread(main, ["admin", "vacuum", *bad])
    assert code == 1
    assert "HTTP 403" in capsys.readouterr().err
