"""Acknowledging an alarm over REST, through the real gateway and the real ingest pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from linewatch_gateway.auth import token_subject

from .conftest import READ_TOKEN, WRITE_TOKEN, auth


async def _active_alarm(client: httpx.AsyncClient, stack: Any) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            # a defective curve (again, until the rule's subscription is up)
            await stack.publish([("d0", "A", "spike")])
            for _ in range(10):
                body = (await client.get("/v1/alarms", params={"state": "active"})).json()
                if body["items"]:
                    item: dict[str, Any] = body["items"][0]
                    return item
                await asyncio.sleep(0.1)


async def test_ack_records_the_token_subject_once(client: httpx.AsyncClient, stack: Any) -> None:
    alarm = await _active_alarm(client, stack)
    assert alarm["acknowledged"] is False
    assert alarm["kind"] == "verdicts"
    assert alarm["severity"] == "warning"
    path = f"/v1/alarms/{alarm['id']}/ack"
    assert (await client.post(path, json={"note": "x"})).status_code == 401
    assert (
        await client.post(path, json={"note": "x"}, headers=auth(READ_TOKEN))
    ).status_code == 403
    too_long = await client.post(path, json={"note": "n" * 1001}, headers=auth())
    assert too_long.status_code == 422
    done = await client.post(path, json={"note": "die changed"}, headers=auth())
    assert done.status_code == 200, done.text
    acked = done.json()
    assert acked["acknowledged"] is True
    assert acked["acknowledged_by"] == token_subject(WRITE_TOKEN)
    assert WRITE_TOKEN not in done.text
    assert acked["ack_note"] == "die changed"
    assert acked["acknowledged_at"]
    again = await client.post(path, json={}, headers=auth())
    assert again.status_code == 409
    assert token_subject(WRITE_TOKEN) in again.json()["error"]["message"]
    missing = await client.post("/v1/alarms/999999/ack", json={}, headers=auth())
    assert missing.status_code == 404
    listed = (await client.get("/v1/alarms", params={"state": "active"})).json()["items"]
    assert listed[0]["acknowledged_by"] == token_subject(WRITE_TOKEN)
