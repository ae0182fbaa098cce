"""GET /v1/storage and the storage writes, through the real ingest, sync and OTA services."""

from __future__ import annotations

import httpx


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
    assert ingest["schema_revision"] == "0002"
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
