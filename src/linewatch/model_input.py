"""The curve model's input contract: resample a curve, then z-score it.

:func:`preprocess` is the model's input transformation (linear resample to the model's
input length, then per-curve z-score); the inference service and the training script
(``tools/model/train.py``) both call it, so they cannot drift apart. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["preprocess", "resample"]

_STD_FLOOR = 1e-6
"""The smallest standard deviation a curve is divided by (a flat curve stays finite)."""


def resample(curve: npt.ArrayLike, *, length: int) -> npt.NDArray[np.float64]:
    """Linearly resample a 1-D curve to ``length`` samples spanning the same time.

    Args:
        curve: 1-D sequence of at least 2 samples.
        length: Target number of samples (at least 2).

    Returns:
        float64 array of ``length`` samples; first and last samples are kept.

    Raises:
        ValueError: ``curve`` is not 1-D or either length is below 2.
    """
    x = np.asarray(curve, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"a curve must be 1-D, got shape {x.shape}")
    if x.shape[0] < 2 or length < 2:
        raise ValueError(f"resampling needs at least 2 samples (got {x.shape[0]} -> {length})")
    if x.shape[0] == length:
        return x.copy()
    src = np.linspace(0.0, 1.0, x.shape[0])
    dst = np.linspace(0.0, 1.0, length)
    out: npt.NDArray[np.float64] = np.interp(dst, src, x)
    return out


def preprocess(
    batch: Sequence[npt.ArrayLike] | npt.NDArray[np.generic], *, length: int
) -> npt.NDArray[np.float32]:
    """Turn raw curves into the model's input: resample, then z-score each curve.

    Every curve is linearly resampled to ``length`` samples (curves already that long are
    left as they are), then normalised as ``(x - mean) / max(std, 1e-6)``.

    Args:
        batch: A 2-D array ``[n, samples]`` or a sequence of 1-D curves whose lengths may
            differ.
        length: The model's input length.

    Returns:
        float32 array ``[n, length]``.

    Raises:
        ValueError: A curve is not 1-D or shorter than 2 samples, or ``length`` < 2.
    """
    if length < 2:
        raise ValueError(f"length must be at least 2, got {length}")
    if isinstance(batch, np.ndarray):
        if batch.ndim != 2:
            raise ValueError(f"a batch array must be 2-D [n, samples], got shape {batch.shape}")
        if batch.shape[1] < 2:
            raise ValueError(f"resampling needs at least 2 samples (got {batch.shape[1]})")
    if isinstance(batch, np.ndarray) and batch.shape[1] == length:
        out = np.asarray(batch, dtype=np.float64)
    else:
        out = np.empty((len(batch), length), dtype=np.float64)
        for i, curve in enumerate(batch):
            out[i] = resample(curve, length=length)
    mean = out.mean(axis=1, keepdims=True)
    std = np.maximum(out.std(axis=1, keepdims=True), _STD_FLOOR)
    normalised: npt.NDArray[np.float32] = ((out - mean) / std).astype(np.float32)
    return normalised
