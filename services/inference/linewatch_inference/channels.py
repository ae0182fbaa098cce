"""Multi-channel models: several curves of one cycle (pressure, force …) scored together.

A manifest names its input channels with the optional key ``channels: [pressure, force]``;
such a model's ONNX input is float32 ``[batch, n_channels, input_length]``, each channel
resampled to ``input_length`` and normalised on its own, in the manifest's order.
Requests carry the channel names they send (``CurveBatch.channels``, any order; each
curve has a length per channel) or, over the Open Inference Protocol, a tensor
``[batch, n_channels, samples]`` already in the manifest's order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linewatch.runtime.errors import InvalidArgument
from linewatch_inference.inputs import check_finite, decode_curves

__all__ = [
    "MAX_CHANNELS",
    "ChannelBatch",
    "check_channel_names",
    "decode_channel_batch",
    "decode_channel_tensor",
    "input_shape",
]

MAX_CHANNELS = 64
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def check_channel_names(names: Sequence[str], *, where: str) -> None:
    """Unique names of 1..64 letters, digits, ``_.-``; at most :data:`MAX_CHANNELS`.

    Raises:
        InvalidArgument: naming ``where``.
    """
    if len(names) > MAX_CHANNELS:
        raise InvalidArgument(f"{where}: {len(names)} channels, at most {MAX_CHANNELS}")
    for name in names:
        if not _NAME.match(name):
            raise InvalidArgument(
                f"{where}: channel name {name[:70]!r} must be 1..64 letters, digits, '_.-'"
            )
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{where}: channel names must be unique")


@dataclass(frozen=True, slots=True)
class ChannelBatch:
    """Curves of several channels: per channel name, the curves of the batch in order."""

    names: tuple[str, ...]
    curves: tuple[list[npt.NDArray[np.float32]], ...]
    """One list per channel (``names`` order), one 1-D curve per batch entry."""

    def __len__(self) -> int:
        return len(self.curves[0]) if self.curves else 0

    def ordered(self, wanted: Sequence[str], *, model: str) -> list[list[npt.NDArray[np.float32]]]:
        """The channels in the model's order.

        Raises:
            InvalidArgument: a channel the model takes is missing.
        """
        missing = [name for name in wanted if name not in self.names]
        if missing:
            raise InvalidArgument(
                f"model {model} takes channels {list(wanted)}; the batch lacks {missing} "
                f"(it has {list(self.names)})"
            )
        return [self.curves[self.names.index(name)] for name in wanted]


def decode_channel_batch(
    samples: bytes, lengths: Sequence[int], names: Sequence[str], *, max_curves: int
) -> ChannelBatch:
    """Decode a ``CurveBatch`` with ``channels``: ``len(names)`` lengths per curve.

    Raises:
        InvalidArgument: bad names, lengths not a multiple of the channel count, or what
            :func:`~linewatch_inference.inputs.decode_curves` refuses.
        ResourceExhausted: more than ``max_curves`` curves.
    """
    check_channel_names(names, where="batch.channels")
    c = len(names)
    if len(lengths) % c:
        raise InvalidArgument(
            f"batch.lengths: {len(lengths)} entries for {c} channels (one per curve and channel)"
        )
    decoded = decode_curves(samples, lengths, max_curves=max_curves * c)
    flat = list(decoded) if isinstance(decoded, np.ndarray) else decoded
    return ChannelBatch(tuple(names), tuple(flat[i::c] for i in range(c)))


def decode_channel_tensor(
    data: bytes | Sequence[float],
    shape: Sequence[int],
    names: Sequence[str],
    *,
    name: str,
    max_curves: int,
) -> ChannelBatch:
    """Decode an OIP FP32 tensor ``[batch, n_channels, samples]`` (manifest channel order).

    Raises:
        InvalidArgument: another shape, a size mismatch, NaN/inf.
        ResourceExhausted: more than ``max_curves`` curves.
    """
    dims = list(shape)
    if len(dims) != 3 or any(d <= 0 for d in dims) or dims[1] != len(names):
        raise InvalidArgument(
            f"input {name!r} must have shape [batch, {len(names)} channels {list(names)}, "
            f"samples], got {dims}"
        )
    n, c, length = dims
    if n > max_curves:
        from linewatch.runtime.errors import ResourceExhausted

        raise ResourceExhausted(f"the batch holds {n} curves; at most {max_curves} per request")
    size = n * c * length
    if isinstance(data, bytes):
        if len(data) != size * 4:
            raise InvalidArgument(
                f"input {name!r}: shape {dims} needs {size * 4} bytes of FP32, got {len(data)}"
            )
        flat = np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)
    else:
        if len(data) != size:
            raise InvalidArgument(
                f"input {name!r}: shape {dims} needs {size} values, got {len(data)}"
            )
        flat = np.asarray(data, dtype=np.float32)
    check_finite(flat, np.arange(1, n * c + 1, dtype=np.int64) * length)
    x = flat.reshape(n, c, length)
    return ChannelBatch(tuple(names), tuple(list(x[:, i, :]) for i in range(c)))


def input_shape(channels: Sequence[str], input_length: int, batch: int) -> tuple[int, ...]:
    """The ONNX input shape of a model for ``batch`` curves."""
    if channels:
        return (batch, len(channels), input_length)
    return (batch, input_length)
