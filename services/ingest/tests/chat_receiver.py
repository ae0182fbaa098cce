"""A real local HTTP server that answers like each chat platform's webhook.

It checks the format of every body and, where the platform signs, the signature (with
its own implementation of the documented algorithms, not the one under test), and answers
as the platform does: Feishu ``{"code": 0}`` or ``{"code": 19021}`` (sign mismatch),
DingTalk ``{"errcode": 0}`` or ``310000``, WeCom ``{"errcode": 0}`` or ``40008``, Slack
``ok`` or HTTP 400 ``invalid_payload``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass
class Call:
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    accepted: bool


def _sign_ok(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected, given)


def check(fmt: str, secret: str, query: dict[str, str], body: dict[str, Any]) -> bool:
    """Whether the platform ``fmt`` would accept this call."""
    if fmt == "feishu":
        if secret:
            ts = body.get("timestamp", "")
            if not str(ts).isdigit() or abs(time.time() - int(ts)) > 3600:
                return False
            key = f"{ts}\n{secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if not _sign_ok(expected, body.get("sign")):
                return False
        card = body.get("card", {})
        return (
            body.get("msg_type") == "interactive"
            and isinstance(card.get("header", {}).get("title", {}).get("content"), str)
            and card["elements"][0]["text"]["tag"] == "lark_md"
        )
    if fmt == "dingtalk":
        if secret:
            ts = query.get("timestamp", "")
            if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3_600_000:
                return False
            msg = f"{ts}\n{secret}".encode()
            digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
            if not _sign_ok(base64.b64encode(digest).decode(), query.get("sign")):
                return False
        md = body.get("markdown", {})
        return body.get("msgtype") == "markdown" and bool(md.get("title")) and bool(md.get("text"))
    if fmt == "wecom":
        content = body.get("markdown", {}).get("content")
        return body.get("msgtype") == "markdown" and isinstance(content, str) and bool(content)
    if fmt == "slack":
        return isinstance(body.get("text"), str) and bool(body["text"])
    return body.get("event") in {"alarm.raised", "alarm.cleared", "alarm.escalated"}


_ANSWERS = {
    "feishu": (b'{"code":0,"msg":"success"}', b'{"code":19021,"msg":"sign match fail"}'),
    "dingtalk": (b'{"errcode":0,"errmsg":"ok"}', b'{"errcode":310000,"errmsg":"sign not match"}'),
    "wecom": (b'{"errcode":0,"errmsg":"ok"}', b'{"errcode":40008,"errmsg":"invalid message"}'),
}


class ChatReceiver:
    """Serves ``/<name>`` for each ``hooks[name] = (format, secret)``."""

    def __init__(self, hooks: dict[str, tuple[str, str]]) -> None:
        self.hooks = hooks
        self.calls: list[Call] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ChatReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def accepted(self, name: str) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.path == f"/{name}" and c.accepted]

    def refused(self, name: str) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.path == f"/{name}" and not c.accepted]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, target, _ = line.decode().split(" ", 2)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length)) if length else {}
                parts = urllib.parse.urlsplit(target)
                query = dict(urllib.parse.parse_qsl(parts.query))
                fmt, secret = self.hooks.get(parts.path.lstrip("/"), ("generic", ""))
                ok = check(fmt, secret, query, body)
                self.calls.append(Call(parts.path, query, body, ok))
                status, ctype = "200 OK", "application/json"
                if fmt in _ANSWERS:
                    payload = _ANSWERS[fmt][0 if ok else 1]
                elif fmt == "slack":
                    payload, ctype = (
                        (b"ok", "text/plain") if ok else (b"invalid_payload", "text/plain")
                    )
                    status = "200 OK" if ok else "400 Bad Request"
                else:
                    payload = b"{}"
                    status = "200 OK" if ok else "400 Bad Request"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        finally:
            writer.close()
