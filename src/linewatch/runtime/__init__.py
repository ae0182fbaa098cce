"""The shared runtime every linewatch service stands on.

Modules: :mod:`~linewatch.runtime.config` (YAML + env configuration),
:mod:`~linewatch.runtime.logs` (structured logging), :mod:`~linewatch.runtime.telemetry`
(OpenTelemetry from ``OTEL_*``), :mod:`~linewatch.runtime.grpc_server` (grpc.aio server with
health, reflection and error mapping), :mod:`~linewatch.runtime.grpc_options` (keepalive
that clients and servers agree on), :mod:`~linewatch.runtime.mqtt` (the MQTT client, over
:mod:`~linewatch.runtime.mqtt_codec` and :mod:`~linewatch.runtime.mqtt_session`),
:mod:`~linewatch.runtime.db` (async SQLAlchemy/SQLModel), :mod:`~linewatch.runtime.errors`
(the exception hierarchy), :mod:`~linewatch.runtime.service` (process entry point),
:mod:`~linewatch.runtime.fetch` (SSRF-safe HTTP fetching), :mod:`~linewatch.runtime.content`
(raster images by magic bytes), :mod:`~linewatch.runtime.signatures` (ed25519 key rings,
canonical JSON),
:mod:`~linewatch.runtime.intake` (the one MQTT intake: parse → batch → commit → acknowledge,
dead letters), :mod:`~linewatch.runtime.retry` (capped backoff),
:mod:`~linewatch.runtime.jsonguard` (JSON nesting limit).
"""
