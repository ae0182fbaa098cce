"""OpenTelemetry set-up from the standard ``OTEL_*`` variables, and MQTT propagation.

Traces and metrics go to an OTLP endpoint only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
the per-signal ``..._TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``) is set; the protocol is
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` default, or ``http/protobuf``). Sampling,
resource attributes and the service name follow the SDK's own variables
(``OTEL_TRACES_SAMPLER``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``). Spans are
always created (so logs and verdicts carry trace ids); with no endpoint nothing leaves
the process.

MQTT 5 carries W3C trace context as user properties (``traceparent``, ``tracestate``):
:func:`inject_user_properties` and :func:`extract_user_properties` do the conversion.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = [
    "context_from_traceparent",
    "current_traceparent",
    "extract_user_properties",
    "inject_user_properties",
    "setup_telemetry",
    "shutdown_telemetry",
    "trace_id_hex",
]

_providers: list[TracerProvider | MeterProvider] = []


def _endpoint(signal: str) -> str | None:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def _protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )


def setup_telemetry(service: str) -> None:
    """Install the tracer and meter providers for this process (idempotent).

    Args:
        service: the default ``service.name`` when ``OTEL_SERVICE_NAME`` is unset.
    """
    if _providers or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    resource = Resource.create({"service.name": f"linewatch-{service}"}).merge(
        OTELResourceDetector().detect()
    )
    if name := os.environ.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource.create({"service.name": name}))

    tracer_provider = TracerProvider(resource=resource)
    if _endpoint("TRACES"):
        if _protocol("TRACES").startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )

            tracer_provider.add_span_processor(BatchSpanProcessor(HttpSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            tracer_provider.add_span_processor(BatchSpanProcessor(GrpcSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    _providers.append(tracer_provider)

    if _endpoint("METRICS"):
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        if _protocol("METRICS").startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetricExporter,
            )

            reader = PeriodicExportingMetricReader(HttpMetricExporter())
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            reader = PeriodicExportingMetricReader(GrpcMetricExporter())
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        metrics.set_meter_provider(meter_provider)
        _providers.append(meter_provider)


def shutdown_telemetry() -> None:
    """Flush and stop the providers (call on shutdown)."""
    while _providers:
        _providers.pop().shutdown()


def trace_id_hex(span: trace.Span | None = None) -> str:
    """The 32-hex-digit trace id of ``span`` (default: the current span), or ``""``."""
    ctx = (span or trace.get_current_span()).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def inject_user_properties(
    ctx: otel_context.Context | None = None,
) -> list[tuple[str, str]]:
    """The current (or given) trace context as MQTT 5 user properties."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return list(carrier.items())


def extract_user_properties(
    user_properties: Iterable[Sequence[str]] | Mapping[str, str] | None,
) -> otel_context.Context:
    """A context continuing the trace found in MQTT 5 user properties (if any)."""
    carrier: dict[str, str] = {}
    if isinstance(user_properties, Mapping):
        carrier.update(user_properties)
    elif user_properties:
        for pair in user_properties:
            if len(pair) == 2:
                carrier[str(pair[0]).lower()] = str(pair[1])
    return propagate.extract(carrier)


def current_traceparent(ctx: otel_context.Context | None = None) -> str:
    """The W3C ``traceparent`` of the current (or given) context, or ``""`` (to store
    with work that continues later, e.g. a queued job)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context:
    """A context continuing a stored ``traceparent`` (an empty one starts a new trace)."""
    return propagate.extract({"traceparent": traceparent} if traceparent else {})
