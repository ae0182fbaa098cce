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
from linewatch_inference.channels import ChannelBatch
from linewatch_inference.inputs import Curves
from linewatch_inference.package import Manifest

__all__ = ["ModelInput", "prepare"]

ModelInput = Curves | ChannelBatch
"""What a request brings: one curve per entry, or several channels per entry."""


def prepare(curves: ModelInput, manifest: Manifest) -> npt.NDArray[np.float32]:
    """Turn validated curves into the model's input ``[n, input_length]`` float32, or
    ``[n, channels, input_length]`` for a multi-channel model (each channel prepared on
    its own, in the manifest's channel order).

    Raises:
        InvalidArgument: Channels where the model takes one curve, or the reverse, or a
            channel the model takes is missing; and what :func:`_prepare_one` refuses.
    """
    if isinstance(curves, ChannelBatch):
        if not manifest.channels:
            raise InvalidArgument(
                f"model {manifest.name} takes one curve per entry, "
                f"not channels {list(curves.names)}"
            )
        parts = curves.ordered(manifest.channels, model=manifest.name)
        return np.ascontiguousarray(np.stack([_prepare_one(p, manifest) for p in parts], axis=1))
    if manifest.channels:
        raise InvalidArgument(
            f"model {manifest.name} takes channels {manifest.channels} (send channels, "
            "not a single curve)"
        )
    return _prepare_one(curves, manifest)


def _prepare_one(curves: Curves, manifest: Manifest) -> npt.NDArray[np.float32]:
    """Turn validated curves into ``[n, input_length]`` float32.

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
