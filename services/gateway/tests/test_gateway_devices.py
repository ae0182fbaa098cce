"""Devices over REST and SSE: commands answered by simulated devices through the real OTA."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from linewatch_dev.devices_simulator import CommandBehaviour, CommandFleet

from .conftest import auth
from .test_gateway_sse import collect, streams_connected


async def _wait_state(http: httpx.AsyncClient, device: str, cid: str, state: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            resp = await http.get(f"/v1/devices/{device}/commands/{cid}", headers=auth())
            assert resp.status_code == 200, resp.text
            if resp.json()["state"] == state:
                return dict(resp.json())
            await asyncio.sleep(0.05)


async def test_commands_and_inventory_over_rest(live: Any) -> None:
    stack = live.stack
    fleet = CommandFleet(
        mqtt_url=stack.mqtt_url,
        device_ids=["gw-dev-1", "gw-dev-2"],
        topic_root=f"{stack.topic_root}/devices",
        behaviours={"gw-dev-2": CommandBehaviour.OFFLINE},
    )
    await fleet.start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            body = {"name": "power_on", "params": {"level": 2}, "timeout_s": 30, "expires_s": 60}
            # writes need the write token
            assert (await http.post("/v1/devices/gw-dev-1/commands", json=body)).status_code == 401
            resp = await http.post("/v1/devices/gw-dev-1/commands", json=body, headers=auth())
            assert resp.status_code == 202, resp.text
            created = resp.json()
            assert created["state"] == "queued"
            done = await _wait_state(http, "gw-dev-1", created["id"], "succeeded")
            assert done["params"] == {"level": 2}
            assert done["result"] == {"name": "power_on", "device": "gw-dev-1"}
            listed = (await http.get("/v1/devices/gw-dev-1/commands", headers=auth())).json()
            assert [c["id"] for c in listed["items"]] == [created["id"]]
            ok = await http.get("/v1/devices/gw-dev-1/commands?state=succeeded", headers=auth())
            assert len(ok.json()["items"]) == 1
            # the offline device's command waits; cancel it, then cancelling again is a conflict
            waiting = (
                await http.post("/v1/devices/gw-dev-2/commands", json=body, headers=auth())
            ).json()
            cancel = f"/v1/devices/gw-dev-2/commands/{waiting['id']}/cancel"
            resp = await http.post(cancel, headers=auth())
            assert resp.json()["state"] == "cancelled"
            resp = await http.post(cancel, headers=auth())
            assert resp.status_code == 409
            assert resp.json()["error"]["code"] == "failed_precondition"
            # bad input is refused at the edge
            bad = await http.post(
                "/v1/devices/gw-dev-1/commands", json={"name": ""}, headers=auth()
            )
            assert bad.status_code == 422
            assert (
                await http.get("/v1/devices/no-such/commands/abc", headers=auth())
            ).status_code == 404
            # the inventory
            device = (await http.get("/v1/devices/gw-dev-1", headers=auth())).json()
            assert device["online"] is True
            assert device["status"] == "online"
            assert device["pending_commands"] == 0
            assert device["open_alarms"] == []
            # a defective curve through the real pipeline raises the stack rule's alarm
            await stack.publish([("gw-dev-1", "A", "spike")])
            async with asyncio.timeout(30):
                while True:
                    device = (await http.get("/v1/devices/gw-dev-1", headers=auth())).json()
                    if device["open_alarms"]:
                        break
                    await asyncio.sleep(0.1)
            (open_alarm,) = device["open_alarms"]
            assert (open_alarm["rule"], open_alarm["state"]) == ("line", "active")
            assert device["points"] == ["pressure"]
            page = (await http.get("/v1/devices?prefix=gw-dev-", headers=auth())).json()
            assert [d["device_id"] for d in page["items"]] == ["gw-dev-1"]
            assert (await http.get("/v1/devices/never-seen", headers=auth())).status_code == 404
            spec = (await http.get("/openapi.json")).json()
            for path in ("/v1/devices", "/v1/devices/{device_id}",
                         "/v1/devices/{device_id}/commands",
                         "/v1/devices/{device_id}/commands/{command_id}",
                         "/v1/devices/{device_id}/commands/{command_id}/cancel"):  # fmt: skip
                assert path in spec["paths"], path
    finally:
        with contextlib.suppress(Exception):
            await fleet.stop()


async def test_command_events_stream(live: Any) -> None:
    stack = live.stack
    fleet = CommandFleet(
        mqtt_url=stack.mqtt_url,
        device_ids=["gw-live-1"],
        topic_root=f"{stack.topic_root}/devices",
    )
    await fleet.start()
    try:
        await streams_connected(live.url)
        url = f"{live.url}/v1/stream/commands?device=gw-live-1"
        events = asyncio.create_task(collect(url, 3, headers=auth(), timeout=30))
        await asyncio.sleep(0.5)  # the client's subscription (a missed event fails the test)
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            resp = await http.post(
                "/v1/devices/gw-live-1/commands", json={"name": "blink"}, headers=auth()
            )
            assert resp.status_code == 202
        got = await events
        states = [json.loads(e["data"])["state"] for e in got]
        assert states == ["queued", "sent", "succeeded"]
        assert {e["event"] for e in got} == {"command"}
    finally:
        with contextlib.suppress(Exception):
            await fleet.stop()


async def test_alarm_commands_in_rules(client: httpx.AsyncClient) -> None:
    rule = {
        "name": "acting",
        "source_topic": "plant/+/+/acting",
        "model": "curve-quality",
        "output_topic": "plant/{1}/{2}/acted",
        "alarm": {
            "threshold": 3,
            "window_s": 60,
            "on_raise": {"name": "stop_press", "params": {"why": "defects"}},
            "on_clear": {"name": "resume", "devices": ["plc-1"]},
            "command_cooldown_s": 30,
        },
    }
    made = await client.post("/v1/rules", json=rule, headers=auth())
    assert made.status_code == 201, made.text
    got = (await client.get("/v1/rules/acting", headers=auth())).json()
    alarm = got["alarm"]
    assert alarm["on_raise"]["name"] == "stop_press"
    assert json.loads(alarm["on_raise"]["params_json"]) == {"why": "defects"}
    assert alarm["on_raise"]["devices"] == []
    assert alarm["on_clear"]["devices"] == ["plc-1"]
    assert alarm["command_cooldown_s"] == 30
    bad = dict(rule, name="bad", alarm={"threshold": 1, "on_raise": {"name": ""}})
    assert (await client.post("/v1/rules", json=bad, headers=auth())).status_code == 422
    await client.delete("/v1/rules/acting", headers=auth())
