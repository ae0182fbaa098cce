"""The state machine and the device message validation, as pure functions."""

from __future__ import annotations

import json

import pytest
from linewatch_ota.device_protocol import InvalidMessage, parse_message
from linewatch_ota.download_server import parse_range
from linewatch_ota.statemachine import can_transition, on_progress, on_verify

SHA = "ab" * 32


def test_legal_transitions_only() -> None:
    assert can_transition("queued", "notified")
    assert can_transition("notified", "downloading")
    assert can_transition("installing", "succeeded")
    assert not can_transition("queued", "downloading")
    assert not can_transition("installing", "downloading")
    for terminal in ("succeeded", "failed", "cancelled"):
        assert not can_transition(terminal, "notified")
        assert not can_transition(terminal, "failed")


def test_progress_moves_forward_only() -> None:
    t = on_progress("notified", 0, "downloading", 10)
    assert t is not None
    assert (t.state, t.percent) == ("downloading", 10)
    assert on_progress("downloading", 50, "downloading", 50) is None  # duplicate
    assert on_progress("downloading", 50, "downloading", 40) is None  # out of order
    assert on_progress("installing", 0, "downloading", 90) is None  # backwards
    assert on_progress("succeeded", 100, "installing", 0) is None  # after the end
    assert on_progress("queued", 0, "downloading", 5) is None  # never notified


def test_verify_outcomes() -> None:
    ok = on_verify(
        "installing", ok=True, sha256=SHA, version="2", expected_sha256=SHA, expected_version="2"
    )
    assert ok is not None
    assert ok.state == "succeeded"
    bad = on_verify(
        "installing",
        ok=True,
        sha256="cd" * 32,
        version="2",
        expected_sha256=SHA,
        expected_version="2",
    )
    assert bad is not None
    assert bad.state == "failed"
    assert "sha256 mismatch" in bad.reason
    no = on_verify(
        "notified", ok=False, sha256=SHA, version="2", expected_sha256=SHA, expected_version="2"
    )
    assert no is not None
    assert no.state == "failed"
    again = on_verify(
        "failed", ok=True, sha256=SHA, version="2", expected_sha256=SHA, expected_version="2"
    )
    assert again is None


def test_parse_valid_messages() -> None:
    msg = parse_message(
        "ota", "ota/dev-1/progress", b'{"update_id":"u1","state":"downloading","percent":42}'
    )
    assert (msg.device_id, msg.kind) == ("dev-1", "progress")
    req = parse_message("a/b/ota", "a/b/ota/dev-2/request", b'{"current_version":"1.2.0"}')
    assert req.device_id == "dev-2"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("ota/dev-1/progress", b"not json", "not JSON"),
        ("ota/dev-1/progress", b"[1]", "JSON object"),
        ("ota/dev-1/progress", b'{"update_id":"u","state":"done","percent":1}', "state"),
        ("ota/dev-1/progress", b'{"update_id":"u","state":"installing","percent":101}', "percent"),
        (
            "ota/dev-1/verify",
            json.dumps({"update_id": "u", "version": "1", "sha256": "xyz", "ok": True}).encode(),
            "sha256",
        ),
        (
            "ota/dev-1/verify",
            json.dumps({"update_id": "u", "version": "1", "sha256": SHA, "ok": "yes"}).encode(),
            "ok",
        ),
        ("ota/dev-1/other", b"{}", "expected"),
        ("elsewhere/dev-1/verify", b"{}", "not under"),
    ],
)
def test_parse_rejects_with_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        parse_message("ota", topic, payload)


def test_parse_range() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 10)
    assert parse_range("bytes=90-", 100) == (90, 100)
    assert parse_range("bytes=-10", 100) == (90, 100)
    assert parse_range("bytes=95-200", 100) == (95, 100)
    assert parse_range("bytes=100-", 100) is None
    with pytest.raises(ValueError, match="Range"):
        parse_range("bytes=1-2,5-6", 100)
