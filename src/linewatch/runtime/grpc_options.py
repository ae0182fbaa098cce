"""gRPC channel and server options, in one place: keepalive that servers and clients agree on.

A grpc server by default allows a client's keepalive ping only every 5 minutes, and none
while no call is open; a client pinging more often (every 30 s, to notice a dead peer) gets
``GOAWAY too_many_pings`` after two strikes, and its next calls fail with UNAVAILABLE for
a moment (``/readyz`` flaps). Here the server allows a ping every
:data:`SERVER_MIN_PING_INTERVAL_MS`, with or without calls, and every client pings every
:data:`CLIENT_KEEPALIVE_TIME_MS` (not more often), so no ping is ever a strike.

>>> grpc.aio.server(options=server_options(max_message_bytes))
>>> grpc.aio.insecure_channel(target, options=channel_options(max_message_bytes))
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CLIENT_KEEPALIVE_TIMEOUT_MS",
    "CLIENT_KEEPALIVE_TIME_MS",
    "MAX_FRAME_SIZE",
    "SERVER_MIN_PING_INTERVAL_MS",
    "ChannelOption",
    "channel_options",
    "server_options",
]

ChannelOption = tuple[str, int | str]

SERVER_MIN_PING_INTERVAL_MS = 10_000
"""The shortest interval between a client's pings that a server accepts."""

CLIENT_KEEPALIVE_TIME_MS = 30_000
"""How often a client pings an idle connection (≥ what the servers accept)."""

CLIENT_KEEPALIVE_TIMEOUT_MS = 10_000
"""How long a client waits for a ping's answer before it treats the connection as dead."""

SERVER_KEEPALIVE_TIME_MS = 60_000
"""How often a server pings an idle client (to drop connections of vanished clients)."""

SERVER_KEEPALIVE_TIMEOUT_MS = 20_000

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

MAX_FRAME_SIZE = 4 * 1024 * 1024
"""HTTP/2 frame size of every server and channel (the 16 KiB default cuts a batch of curves
into hundreds of frames; over TLS that tripled a batch's round trip)."""

assert CLIENT_KEEPALIVE_TIME_MS >= SERVER_MIN_PING_INTERVAL_MS


def server_options(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, extra: Sequence[ChannelOption] = ()
) -> list[ChannelOption]:
    """Options for every linewatch gRPC server."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_time_ms", SERVER_KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", SERVER_KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.max_frame_size", MAX_FRAME_SIZE),
        *extra,
    ]


def channel_options(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, extra: Sequence[ChannelOption] = ()
) -> list[ChannelOption]:
    """Options for every linewatch gRPC client channel (to a linewatch server or an OIP one)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", CLIENT_KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        # without this a client stops pinging after two pings on a connection without data
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.max_frame_size", MAX_FRAME_SIZE),
        *extra,
    ]
