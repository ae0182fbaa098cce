import asyncio
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from linewatch.runtime import telemetry
from linewatch_dev.testing import OtlpReceiver


def test_user_properties_round_trip() -> None:
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("parent") as span:
        props = telemetry.inject_user_properties()
        trace_id = telemetry.trace_id_hex(span)
    assert len(trace_id) == 32
    assert "traceparent" in {name for name, _ in props}
    ctx = telemetry.extract_user_properties(props)
    remote = trace.get_current_span(ctx).get_span_context()
    assert format(remote.trace_id, "032x") == trace_id
    # Upper-case keys (some devices send them) are accepted too.
    ctx = telemetry.extract_user_properties([(k.upper(), v) for k, v in props])
    assert trace.get_current_span(ctx).get_span_context().trace_id == remote.trace_id


def test_extract_without_context_is_empty() -> None:
    ctx = telemetry.extract_user_properties([("other", "x")])
    assert not trace.get_current_span(ctx).get_span_context().is_valid


async def test_spans_exported_to_otlp_endpoint() -> None:
    """setup_telemetry exports to the endpoint named by the standard OTEL variable."""
    receiver = OtlpReceiver()
    await receiver.start()
    try:
        code = (
            "from linewatch.runtime.telemetry import setup_telemetry, shutdown_telemetry\n"
            "from opentelemetry import trace\n"
            "setup_telemetry('probe')\n"
            "with trace.get_tracer('t').start_as_current_span('probe-span'): pass\n"
            "shutdown_telemetry()\n"
        )
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        env.pop("OTEL_SDK_DISABLED", None)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=env)
        assert await proc.wait() == 0
        names = {(s.service, s.name) for s in receiver.spans}
        assert ("linewatch-probe", "probe-span") in names
    finally:
        await receiver.stop()
