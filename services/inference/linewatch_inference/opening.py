"""Opening a staged package: an onnxruntime session, a warm-up run checked against the
manifest, and the version's dynamic batcher (blocking; the registry runs it in a thread)."""

from __future__ import annotations

import numpy as np

from linewatch.runtime.errors import InvalidArgument
from linewatch_inference.batcher import DynamicBatcher
from linewatch_inference.channels import input_shape
from linewatch_inference.config import InferenceConfig
from linewatch_inference.index import ServedVersion
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.session import ModelSession
from linewatch_inference.staging import Staged

__all__ = ["open_version"]


def open_version(
    staged: Staged,
    *,
    config: InferenceConfig,
    metrics: InferenceMetrics,
    threads: int,
    providers: list[str],
    loaded_by: str = "",
) -> ServedVersion:
    """Open a session and check a warm-up run against the manifest (blocking).

    Raises:
        InvalidArgument: The model fails on its input or answers the wrong shape.
    """
    m = staged.manifest
    session = ModelSession(
        staged.package_dir / m.file,
        input_name=m.input_name,
        output_name=m.output_name,
        intra_op_threads=threads,
        providers=providers,
    )
    try:
        shape = input_shape(m.channels, m.input_length, 2)
        out = session.run(np.zeros(shape, dtype=np.float32))
    except Exception as exc:
        raise InvalidArgument(
            f"model {m.name} version {m.version} fails on a {list(shape)} input: "
            f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc!r}"
        ) from exc
    if out.shape != (2, len(m.labels)):
        raise InvalidArgument(
            f"model {m.name} version {m.version}: output {m.output_name!r} has shape "
            f"{list(out.shape)} for 2 curves; the manifest's {len(m.labels)} labels need "
            f"[2, {len(m.labels)}]"
        )
    batcher = DynamicBatcher(
        session.run,
        model=m.name,
        version=m.version,
        max_batch_size=config.max_batch_size,
        max_queue_delay_s=config.max_queue_delay_ms / 1000.0,
        max_queue_size=config.max_queue_size,
        metrics=metrics,
    )
    return ServedVersion(
        m,
        session,
        batcher,
        staged.sha256,
        staged.package_dir,
        staged.source_url,
        loaded_by=loaded_by,
    )
