"""Validation of curves as they arrive: float32 bytes and lengths, checked at the edge."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from linewatch.runtime.errors import InvalidArgument, ResourceExhausted

__all__ = ["Curves", "check_finite", "decode_curves", "decode_tensor"]

Curves = npt.NDArray[np.float32] | list[npt.NDArray[np.float32]]
"""Equal-length curves as one ``[n, samples]`` array, or a list of 1-D curves."""


def _check_count(n: int, max_curves: int) -> None:
    if n == 0:
        raise InvalidArgument("the batch holds no curves")
    if n > max_curves:
        raise ResourceExhausted(
            f"the batch holds {n} curves; at most {max_curves} are accepted per request (split it)"
        )


def check_finite(flat: npt.NDArray[np.float32], ends: npt.NDArray[np.int64]) -> None:
    """Reject NaN or infinite samples, naming the first curve that has one.

    Args:
        flat: Every curve's samples, concatenated.
        ends: Cumulative sample counts (the end offset of each curve).

    Raises:
        InvalidArgument: A sample is NaN or infinite.
    """
    finite = np.isfinite(flat)
    if finite.all():
        return
    bad = int(np.argmin(finite))
    curve = int(np.searchsorted(ends, bad, side="right"))
    start = int(ends[curve - 1]) if curve else 0
    raise InvalidArgument(
        f"curve {curve} has a NaN or infinite sample (sample {bad - start}); "
        "every sample must be a finite number"
    )


def decode_curves(samples: bytes, lengths: Sequence[int], *, max_curves: int) -> Curves:
    """Decode little-endian float32 ``samples`` split by ``lengths``.

    Raises:
        InvalidArgument: Byte count not a multiple of 4, lengths not summing to the
            samples, an empty curve, or a NaN/inf sample.
        ResourceExhausted: More than ``max_curves`` curves.
    """
    _check_count(len(lengths), max_curves)
    if len(samples) % 4:
        raise InvalidArgument(
            f"samples_f32 holds {len(samples)} bytes, not a multiple of 4 (float32 samples)"
        )
    counts = np.asarray(lengths, dtype=np.int64)
    if (counts <= 0).any():
        raise InvalidArgument(f"curve {int(np.argmax(counts <= 0))} has no samples")
    total = int(counts.sum())
    if total * 4 != len(samples):
        raise InvalidArgument(
            f"lengths sum to {total} samples ({total * 4} bytes) but samples_f32 holds "
            f"{len(samples)} bytes ({len(samples) // 4} samples)"
        )
    flat = np.frombuffer(samples, dtype="<f4").astype(np.float32, copy=False)
    ends = np.cumsum(counts)
    check_finite(flat, ends)
    if (counts == counts[0]).all():
        return flat.reshape(len(counts), int(counts[0]))
    return list(np.split(flat, ends[:-1]))


def decode_tensor(
    data: bytes | Sequence[float], shape: Sequence[int], *, name: str, max_curves: int
) -> npt.NDArray[np.float32]:
    """Decode an Open Inference Protocol FP32 input tensor of shape ``[n, samples]``.

    ``data`` is the raw little-endian bytes (``raw_input_contents``) or the typed
    ``fp32_contents``.

    Raises:
        InvalidArgument: A shape that is not ``[n, samples]``, a size mismatch, NaN/inf.
        ResourceExhausted: More than ``max_curves`` curves.
    """
    dims = list(shape)
    if len(dims) != 2 or any(d <= 0 for d in dims):
        raise InvalidArgument(
            f"input {name!r} must have shape [batch, samples] with positive sizes, got {dims}"
        )
    n, length = dims
    _check_count(n, max_curves)
    if isinstance(data, bytes):
        if len(data) != n * length * 4:
            raise InvalidArgument(
                f"input {name!r}: shape {dims} needs {n * length * 4} bytes of FP32, "
                f"raw_input_contents holds {len(data)}"
            )
        flat = np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)
    else:
        if len(data) != n * length:
            raise InvalidArgument(
                f"input {name!r}: shape {dims} needs {n * length} values, "
                f"fp32_contents holds {len(data)}"
            )
        flat = np.asarray(data, dtype=np.float32)
    check_finite(flat, np.arange(1, n + 1, dtype=np.int64) * length)
    return flat.reshape(n, length)
