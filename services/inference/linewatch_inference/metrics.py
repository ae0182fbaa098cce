"""Prometheus metrics of the inference service, grouped in one object per server."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["InferenceMetrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class InferenceMetrics:
    """The service's metrics, registered in ``registry`` (the process default if omitted).

    Tests give each server its own :class:`CollectorRegistry` so several can run in one
    process.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = REGISTRY if registry is None else registry
        self.registry = reg
        self.requests = Counter(
            "linewatch_inference_requests",
            "Scoring requests by API and outcome (a gRPC status code name).",
            ["api", "code"],
            registry=reg,
        )
        self.curves = Counter(
            "linewatch_inference_curves",
            "Curves scored, by model and version.",
            ["model", "version"],
            registry=reg,
        )
        self.batch_size = Histogram(
            "linewatch_inference_batch_size",
            "Curves per onnxruntime run (after dynamic batching).",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.batch_requests = Histogram(
            "linewatch_inference_batch_requests",
            "Requests coalesced into one onnxruntime run.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "linewatch_inference_queue_depth",
            "Requests waiting in a model version's batcher queue.",
            ["model", "version"],
            registry=reg,
        )
        self.latency = Histogram(
            "linewatch_inference_request_latency_seconds",
            "Time from a request entering the batcher to its scores being ready.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.run_seconds = Histogram(
            "linewatch_inference_run_seconds",
            "Duration of one onnxruntime run.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.versions_loaded = Gauge(
            "linewatch_inference_model_versions_loaded",
            "Model versions currently served, by model.",
            ["model"],
            registry=reg,
        )
        self.loads = Counter(
            "linewatch_inference_model_loads",
            "Model package loads by outcome (ok, failed).",
            ["outcome"],
            registry=reg,
        )
        self.shadow = Counter(
            "linewatch_inference_shadow_curves",
            "Curves scored by a shadow version, by outcome (agreed, disagreed, dropped).",
            ["model", "outcome"],
            registry=reg,
        )
