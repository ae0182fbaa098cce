"""onnxruntime sessions: execution providers and thread settings chosen once, here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linewatch.runtime.errors import ConfigError, InvalidArgument

__all__ = ["CPU", "CUDA", "ModelSession", "available_providers", "choose_providers"]

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(available: Sequence[str], use_cuda: str) -> list[str]:
    """The providers to open a session with, best first.

    Args:
        available: What onnxruntime offers (``onnxruntime.get_available_providers()``).
        use_cuda: ``auto`` (CUDA first when offered), ``on`` (CUDA required) or ``off``.

    Returns:
        ``[CUDAExecutionProvider, CPUExecutionProvider]`` or ``[CPUExecutionProvider]``;
        the CPU provider is always last so any node CUDA lacks still runs.

    Raises:
        ConfigError: ``use_cuda`` is ``on`` but this onnxruntime has no CUDA provider.
    """
    has_cuda = CUDA in available
    if use_cuda == "on" and not has_cuda:
        raise ConfigError(
            "use_cuda: on, but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available) or 'none'}); install onnxruntime-gpu"
        )
    if use_cuda != "off" and has_cuda:
        return [CUDA, CPU]
    return [CPU]


class ModelSession:
    """One onnxruntime session for one model file, run from worker threads.

    Args:
        path: The ``.onnx`` file.
        input_name: The input tensor (float32 ``[batch, length]``).
        output_name: The output tensor (float32 ``[batch, n_classes]``).
        intra_op_threads: Threads of the intra-op pool (1 means none are spun up).
        providers: From :func:`choose_providers`.

    Raises:
        InvalidArgument: The file is not a loadable model or lacks the named tensors.
    """

    def __init__(
        self,
        path: Path,
        *,
        input_name: str,
        output_name: str,
        intra_op_threads: int,
        providers: Sequence[str],
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # An idle pool must not spin a core the gRPC side needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session: Any = ort.InferenceSession(
                str(path), sess_options=options, providers=list(providers)
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidArgument(f"not a loadable ONNX model: {first[:300]}") from exc
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if input_name not in inputs:
            raise InvalidArgument(f"the model has no input {input_name!r} (inputs: {inputs})")
        if output_name not in outputs:
            raise InvalidArgument(f"the model has no output {output_name!r} (outputs: {outputs})")
        self.input_name = input_name
        self.output_name = output_name
        self.providers: list[str] = list(self._session.get_providers())

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Score ``[n, length]`` float32 curves; returns ``[n, n_classes]`` float32.

        Blocking (releases the GIL inside onnxruntime): call it from a worker thread.
        """
        (out,) = self._session.run([self.output_name], {self.input_name: batch})
        result: npt.NDArray[np.float32] = np.asarray(out, dtype=np.float32)
        return result
