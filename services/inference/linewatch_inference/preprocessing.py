"""Model input preparation: curve lengths per the manifest, normalisation per batch.

Both are :mod:`linewatch.curves` functions, the very code the model was trained with:
:func:`~linewatch.curves.resample` for curves of another length (in the event loop, per
request, only when needed) and :func:`~linewatch.curves.preprocess` for the z-score (in
the batcher's worker thread, once per coalesced batch).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from linewatch.curves import preprocess, resample
from linewatch.runtime.errors import InvalidArgument
from linewatch_inference.batcher import RunFn
from linewatch_inference.inputs import Curves
from linewatch_inference.package import Manifest
from linewatch_inference.session import ModelSession

__all__ = ["fit_length", "model_runner"]


def fit_length(curves: Curves, manifest: Manifest) -> npt.NDArray[np.float32]:
    """Bring validated curves to the model's input length: ``[n, input_length]`` float32.

    Curves of another length are resampled (``resample: linear``, with
    :func:`linewatch.curves.resample`) or rejected (``resample: reject``). Normalisation
    is left to :func:`model_runner`, which applies it to a whole coalesced batch.

    Raises:
        InvalidArgument: A curve has the wrong length for a ``reject`` model, or fewer
            than 2 samples to resample.
    """
    target = manifest.input_length
    if isinstance(curves, np.ndarray):  # equal lengths: one check stands for every curve
        if curves.shape[1] == target:
            return np.ascontiguousarray(curves, dtype=np.float32)
        lengths = [int(curves.shape[1])]
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
    return np.stack([resample(c, length=target) for c in curves]).astype(np.float32)


def model_runner(session: ModelSession, manifest: Manifest) -> RunFn:
    """The batcher's run function: normalise per the manifest, then run the session.

    Runs in the batcher's worker thread on a whole coalesced batch, so the per-curve
    z-score (:func:`linewatch.curves.preprocess`, the training code) costs the event loop
    nothing.
    """
    length = manifest.input_length
    if manifest.normalization == "none":
        return session.run

    def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return session.run(preprocess(batch, length=length))

    return run
