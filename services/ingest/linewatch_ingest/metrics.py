"""Prometheus metrics of the ingest service (served by ``run_service`` on ``metrics_port``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric

__all__ = [
    "BATCH_SIZE",
    "DEAD_LETTERS",
    "DROPPED",
    "DUPLICATES",
    "ERRORS",
    "LATENCY",
    "POST_QUEUE",
    "PRE_QUEUE",
    "RECEIVED",
    "VERDICTS",
    "WEBHOOKS",
    "BatchHistogram",
]

RECEIVED = Counter("linewatch_ingest_received_total", "Messages received", ["rule"])
VERDICTS = Counter("linewatch_ingest_verdicts_total", "Verdicts published", ["rule", "label"])
DEAD_LETTERS = Counter("linewatch_ingest_dead_letters_total", "Messages dead-lettered", ["rule"])
DUPLICATES = Counter(
    "linewatch_ingest_duplicates_total",
    "Redeliveries ((device_id, msg_id, ts) handled before) acknowledged without scoring",
    ["rule"],
)
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


class BatchHistogram:
    """A Prometheus histogram observed a batch of values at a time: one numpy pass per
    batch instead of a locked update per value (per message, that cost more than the
    rest of the bookkeeping). Exported at scrape time like any histogram."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)  # the last: +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # the scrape runs in the metrics server's thread
        registry.register(self)

    def observe_many(self, values: Sequence[float]) -> None:
        """Count each of ``values``."""
        data = np.asarray(values, dtype=np.float64)
        # a value equal to a bound belongs to that bucket (Prometheus' "le")
        counts = np.bincount(
            np.searchsorted(self._bounds, data, side="left"), minlength=len(self._counts)
        )
        total = float(data.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        buckets = [
            (repr(float(bound)), int(n))
            for bound, n in zip(self._bounds, cumulative[:-1], strict=True)
        ]
        buckets.append(("+Inf", int(cumulative[-1])))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )


LATENCY = BatchHistogram(
    "linewatch_ingest_latency_seconds",
    "Receive to verdict published and archived",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOKS = Counter("linewatch_ingest_webhooks_total", "Alarm webhook calls", ["outcome"])
