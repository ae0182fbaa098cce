"""Execution providers and thread counts: CUDA first when present, CPU otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from linewatch_inference.config import InferenceConfig, default_intra_op_threads
from linewatch_inference.session import (
    CPU,
    CUDA,
    ModelSession,
    available_providers,
    choose_providers,
)

from linewatch.runtime.errors import ConfigError, InvalidArgument
from linewatch_dev.inference_testing import LENGTH, onnx_bytes


def test_cuda_first_when_offered() -> None:
    offered = ["TensorrtExecutionProvider", CUDA, CPU]
    assert choose_providers(offered, "auto") == [CUDA, CPU]
    assert choose_providers(offered, "on") == [CUDA, CPU]
    assert choose_providers(offered, "off") == [CPU]


def test_cpu_fallback_without_cuda() -> None:
    assert choose_providers([CPU], "auto") == [CPU]
    assert choose_providers(["AzureExecutionProvider", CPU], "off") == [CPU]
    with pytest.raises(ConfigError, match="use_cuda: on"):
        choose_providers([CPU], "on")


def test_real_session_on_this_machine(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_bytes())
    providers = choose_providers(available_providers(), "auto")
    session = ModelSession(
        path,
        input_name="curve",
        output_name="probabilities",
        intra_op_threads=1,
        providers=providers,
    )
    # What onnxruntime actually uses: CUDA first when this build has it, else the CPU.
    assert session.providers[-1] == CPU
    assert session.providers[0] == (CUDA if CUDA in available_providers() else CPU)
    out = session.run(np.zeros((3, LENGTH), dtype=np.float32))
    assert out.shape == (3, 3)
    assert out.dtype == np.float32
    with pytest.raises(InvalidArgument, match="no input 'x'"):
        ModelSession(
            path,
            input_name="x",
            output_name="probabilities",
            intra_op_threads=1,
            providers=providers,
        )


def test_thread_defaults_for_the_machine() -> None:
    assert default_intra_op_threads(1) == 1
    assert default_intra_op_threads(2) == 1
    assert default_intra_op_threads(4) == 2
    assert default_intra_op_threads(64) == 8
    assert InferenceConfig(intra_op_threads=3).resolved_intra_op_threads() == 3
    assert InferenceConfig().grpc.port == 50052
