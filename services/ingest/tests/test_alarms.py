"""Alarm webhooks against a real local HTTP receiver: fired once, retried, cleared."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from linewatch_ingest.alarms import feishu_sign
from linewatch_ingest.app import running
from linewatch_ingest.config import AlarmRuleConfig
from linewatch_ingest.store import Query

from linewatch.runtime.config import MqttConfig
from linewatch.runtime.mqtt import MqttClient

from .conftest import Inference, curve_payload, demo_rule, eventually, ingest_config


class WebhookReceiver:
    """A minimal real HTTP/1.1 server recording JSON POST bodies by path."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, path, _ = line.decode().split(" ", 2)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.attempts += 1
                if self.attempts <= self.fail_first:
                    status, payload = "500 Internal Server Error", b'{"code":1}'
                else:
                    self.requests.append((path, body))
                    status, payload = "200 OK", b'{"code":0,"msg":"success"}'
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        finally:
            writer.close()


async def test_alarm_fires_once_is_retried_and_clears(
    mqtt_url: str, database_url: str, topic_prefix: str, inference: Inference
) -> None:
    p = topic_prefix
    async with WebhookReceiver(fail_first=1) as hook:
        rules = [
            demo_rule(
                p,
                alarm=AlarmRuleConfig(threshold=3, window_s=2, webhook_url=hook.url("/generic")),
            ),
            demo_rule(
                p,
                name="lark",
                source_topic=f"{p}/+/+/lark",
                output_topic=f"{p}/lark-out/{{2}}",
                alarm=AlarmRuleConfig(
                    threshold=2,
                    window_s=2,
                    webhook_url=hook.url("/feishu"),
                    webhook_format="feishu",
                    webhook_secret="s3cret",
                ),
            ),
        ]
        config = ingest_config(
            mqtt_url=mqtt_url,
            database_url=database_url,
            inference=inference,
            prefix=p,
            rules=rules,
        )
        async with (
            running(config) as ingest,
            MqttClient(MqttConfig(url=mqtt_url), clean_start=True) as pub,
        ):
            for name in ("demo", "lark"):
                worker = ingest.controller.worker(name)
                assert worker is not None
                await worker.client.wait_connected(5)
            await asyncio.sleep(0.2)
            # 6 defective curves from one device, 1 from another, good ones in between
            for i in range(6):
                await pub.publish(
                    f"{p}/A/bad-dev/telemetry", curve_payload("bad-dev", kind="spike", seed=i)
                )
                await pub.publish(f"{p}/A/good-dev/telemetry", curve_payload("good-dev", seed=i))
            await pub.publish(f"{p}/A/other/telemetry", curve_payload("other", kind="step"))
            for _ in range(2):
                await pub.publish(f"{p}/A/lark-dev/lark", curve_payload("lark-dev", kind="noise"))

            async def both_sent() -> bool:
                return bool(hook.bodies("/generic")) and bool(hook.bodies("/feishu"))

            assert await eventually(both_sent, timeout=15)
            (raised,) = hook.bodies("/generic")
            assert raised["event"] == "alarm.raised"
            assert raised["device_id"] == "bad-dev"
            assert raised["rule"] == "demo"
            assert raised["count"] >= 3
            assert raised["threshold"] == 3
            (lark,) = hook.bodies("/feishu")
            assert lark["msg_type"] == "interactive"
            assert "lark-dev" in lark["card"]["elements"][0]["text"]["content"]
            assert lark["sign"] == feishu_sign(int(lark["timestamp"]), "s3cret")
            assert hook.attempts == 3  # the first call failed and was retried

            async def recorded_sent() -> bool:
                # the receiver has the body before the engine records the delivery
                active = await ingest.store.query_alarms(Query(state="active"))
                return {a.delivery for a in active.rows} == {"sent"}

            assert await eventually(recorded_sent, timeout=10)
            active = await ingest.store.query_alarms(Query(state="active"))
            assert sorted(a.device_id for a in active.rows) == ["bad-dev", "lark-dev"]

            # the condition ends: no more defects within the window
            async def cleared() -> bool:
                return len(hook.bodies("/generic")) == 2 and len(hook.bodies("/feishu")) == 2

            assert await eventually(cleared, timeout=15)
            assert hook.bodies("/generic")[1]["event"] == "alarm.cleared"
            assert hook.bodies("/generic")[1]["alarm_id"] == raised["alarm_id"]
            assert "CLEARED" in hook.bodies("/feishu")[1]["card"]["header"]["title"]["content"]
            rows = (await ingest.store.query_alarms(Query())).rows
            assert len(rows) == 2
            assert {r.state for r in rows} == {"cleared"}
            assert all(r.cleared_at_ms >= r.raised_at_ms for r in rows)
            await asyncio.sleep(1.2)
            assert len(hook.requests) == 4  # nothing more: one raise, one clear each
