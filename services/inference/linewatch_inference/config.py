"""Configuration of the inference service (``LINEWATCH_INFERENCE__<KEY>``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from linewatch.runtime.config import GrpcConfig, ServiceConfig
from linewatch.runtime.fetch import AllowedNetworks

__all__ = ["InferenceConfig", "cpu_count", "default_intra_op_threads"]


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity mask, not the whole machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_intra_op_threads(cores: int) -> int:
    """onnxruntime intra-op threads for a machine with ``cores`` cores.

    On two cores or fewer one thread: onnxruntime's pool otherwise spins a whole core
    waiting for work while the other one runs gRPC and Python (measured). Larger machines
    get half their cores (the rest serve gRPC, preprocessing and the shadow), at most 8:
    the curve model is small and gains little beyond that.
    """
    if cores <= 2:
        return 1
    return min(cores // 2, 8)


class InferenceConfig(ServiceConfig):
    """Settings of the inference service; defaults suit ``make run`` on a laptop.

    The model registry (versions, the promoted version per model, promotion history, and
    the files of packages loaded by URL) lives in ``database_url``: empty means
    ``<data_dir>/inference.db`` (SQLite, one replica); replicas share one PostgreSQL
    database and converge on it within ``registry_poll_s``. Verified packages are unpacked
    under ``data_dir/inference`` (a cache each replica refills from the database).
    """

    grpc: GrpcConfig = GrpcConfig(port=50052)
    model_dir: Path = Path("models")
    """Every package found here (a folder with ``manifest.yaml``, or a ``.zip``) loads at start."""
    max_batch_size: int = Field(default=64, ge=1, le=65536)
    """Most curves one onnxruntime run scores (the dynamic batcher's preferred ceiling)."""
    max_queue_delay_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    """How long the batcher waits for more requests before running a partial batch."""
    max_queue_size: int = Field(default=1024, ge=1)
    """Requests waiting per model version; beyond it callers get RESOURCE_EXHAUSTED."""
    max_request_curves: int = Field(default=4096, ge=1)
    """Most curves one request may carry; more is RESOURCE_EXHAUSTED."""
    stream_window: int = Field(default=64, ge=1, le=4096)
    """Batches of one PredictStream being scored at once (back-pressure beyond it)."""
    intra_op_threads: int = Field(default=0, ge=0, le=256)
    """onnxruntime intra-op threads; 0 chooses for the machine (1 on two cores or fewer)."""
    use_cuda: Literal["auto", "on", "off"] = "auto"
    """CUDAExecutionProvider: ``auto`` uses it when onnxruntime has it, ``on`` requires it."""
    shadow_queue_size: int = Field(default=256, ge=1)
    """Batches waiting for the shadow version; beyond it shadow scoring is skipped."""
    serve_linewatch_api: bool = True
    """Serve ``linewatch.v1.InferenceService`` (PredictStream …) beside the Open Inference
    Protocol; off: OIP only, as a Triton or KServe endpoint answers (clients fall back)."""
    registry_poll_s: float = Field(default=1.0, gt=0, le=300)
    """How often a replica reads the registry database to take versions, promotions,
    unloads and shadows made through another replica."""
    download_timeout_s: float = Field(default=120.0, gt=0)
    max_package_mb: int = Field(default=512, ge=1)
    allowed_networks: AllowedNetworks = ()
    """Non-public networks model URLs may reach (CIDRs, or one comma-separated string from
    ``LINEWATCH_INFERENCE__ALLOWED_NETWORKS``); empty: public addresses only."""
    require_signatures: bool = False
    """Refuse model packages loaded by URL without a valid signature by a trusted key
    (with no key trusted, every load by URL is refused: only ``model_dir`` serves)."""
    trusted_keys: dict[str, str] = Field(default_factory=dict)
    """Key id → base64 raw ed25519 public key that model package signatures may be by."""
    trusted_keys_file: Path | None = None
    """A key ring, ``{"keys": [{"id", "ed25519"}]}`` JSON (e.g. a mounted Secret)."""

    def resolved_intra_op_threads(self) -> int:
        """The configured intra-op thread count, or the machine's default when 0."""
        return self.intra_op_threads or default_intra_op_threads(cpu_count())
