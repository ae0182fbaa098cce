"""Model input preparation per the manifest: curve length, then normalisation.

Both steps are :mod:`linewatch.model_input` functions, the very code the model was trained
with: :func:`~linewatch.model_input.preprocess` (linear resample + per-curve z-score) and
:func:`~linewatch.model_input.resample` (for ``normalization: none``). They run in the event
loop, per request, so the batcher's worker thread does nothing but onnxruntime runs:
measured on two cores, moving the z-score into the worker thread (once per coalesced
batch) cut streaming throughput by about a quarter, as the model thread is the bottleneck.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from linewatch.model_input import preprocess, resample
from linewatch.runtime.errors import InvalidArgument
from linewatch_inference.inputs import Curves
from linewatch_inference.package import Manifest

__all__ = ["prepare"]


def prepare(curves: Curves, manifest: Manifest) -> npt.NDArray[np.float32]:
    """Turn validated curves into the model's input ``[n, input_length]`` float32.

    Curves of another length are resampled (``resample: linear``) or rejected
    (``resample: reject``); then each is z-scored when ``normalization: zscore``.

    Raises:
        InvalidArgument: A curve has the wrong length for a ``reject`` model, or fewer
            than 2 samples to resample.
    """
    target = manifest.input_length
    if isinstance(curves, np.ndarray):  # equal lengths: one check stands for every curve
        lengths = [int(curves.shape[1])] if curves.shape[1] != target else []
    else:
        lengths = [int(c.shape[0]) for c in curves]
    for index, length in enumerate(lengths):
        if length == target:
            continue
        if manifest.resample == "reject":
            raise InvalidArgument(
                f"curve {index} has {length} samples; model {manifest.name} version "
                f"{manifest.version} takes exactly {target} (it does not resample)"
            )
        if length < 2:
            raise InvalidArgument(f"curve {index} has {length} sample; resampling needs 2")
    if manifest.normalization == "zscore":
        return preprocess(curves, length=target)
    if isinstance(curves, np.ndarray) and curves.shape[1] == target:
        return np.ascontiguousarray(curves, dtype=np.float32)
    return np.stack([resample(c, length=target) for c in curves]).astype(np.float32)
