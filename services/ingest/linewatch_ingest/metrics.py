"""Prometheus metrics of the ingest service (served by ``run_service`` on ``metrics_port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SIZE",
    "DEAD_LETTERS",
    "DROPPED",
    "ERRORS",
    "LATENCY",
    "POST_QUEUE",
    "PRE_QUEUE",
    "RECEIVED",
    "VERDICTS",
    "WEBHOOKS",
]

RECEIVED = Counter("linewatch_ingest_received_total", "Messages received", ["rule"])
VERDICTS = Counter("linewatch_ingest_verdicts_total", "Verdicts published", ["rule", "label"])
DEAD_LETTERS = Counter("linewatch_ingest_dead_letters_total", "Messages dead-lettered", ["rule"])
DROPPED = Counter(
    "linewatch_ingest_dropped_total", "QoS 0 messages dropped: queue_size waiting", ["rule"]
)
ERRORS = Counter(
    "linewatch_ingest_errors_total", "Failures retried (inference, publish, archive)", ["stage"]
)
PRE_QUEUE = Gauge("linewatch_ingest_pre_queue", "Validated messages waiting for a batch", ["rule"])
POST_QUEUE = Gauge(
    "linewatch_ingest_post_queue", "Messages being scored, published or archived", ["rule"]
)
BATCH_SIZE = Histogram(
    "linewatch_ingest_batch_size",
    "Curves per inference batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
LATENCY = Histogram(
    "linewatch_ingest_latency_seconds",
    "Receive to verdict published and archived",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOKS = Counter("linewatch_ingest_webhooks_total", "Alarm webhook calls", ["outcome"])
