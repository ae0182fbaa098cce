"""Scoring: preprocessing per the manifest, the batcher, and the shadow hand-off.

Both APIs (linewatch.v1 and the Open Inference Protocol) score through :class:`Scorer`, so
validation and preprocessing are the same whichever way a curve arrives. Preprocessing is
:func:`linewatch.curves.preprocess`, the very function the model was trained with.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from linewatch.curves import preprocess, resample
from linewatch.runtime.errors import InvalidArgument, LinewatchError, Unavailable
from linewatch_inference.batcher import BatcherClosed
from linewatch_inference.inputs import Curves
from linewatch_inference.package import Manifest
from linewatch_inference.registry import Registry, ServedVersion
from linewatch_inference.shadow import ShadowScorer

__all__ = ["Scorer", "prepare"]

log = logging.getLogger(__name__)

_SWAP_RETRIES = 5


def prepare(curves: Curves, manifest: Manifest) -> npt.NDArray[np.float32]:
    """Turn validated curves into the model's input ``[n, input_length]``.

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


class Scorer:
    """Scores curves with a model version, hot-swap safe.

    Args:
        registry: Where versions are resolved.
        shadow: Receives every scored batch for the model's shadow, if any.
    """

    def __init__(self, registry: Registry, shadow: ShadowScorer) -> None:
        self._registry = registry
        self._shadow = shadow

    async def score(
        self, model: str, version: str, curves: Curves
    ) -> tuple[ServedVersion, npt.NDArray[np.float32]]:
        """Score ``curves`` with ``model`` at ``version`` (empty: latest).

        Returns:
            The version that scored them and the probabilities ``[n, n_labels]``.

        Raises:
            NotFound: Unknown model or version.
            InvalidArgument: Curves the model cannot take.
            ResourceExhausted: The version's queue is full.
        """
        for _ in range(_SWAP_RETRIES):
            served = self._registry.resolve(model, version)
            inputs = prepare(curves, served.manifest)
            try:
                probabilities = await served.batcher.infer(inputs)
            except BatcherClosed:
                continue  # swapped out between resolve and submit: the new one takes it
            except LinewatchError:
                raise
            except Exception as exc:
                log.exception("onnxruntime run failed")
                raise Unavailable(
                    f"model {model} version {served.version} failed to run: {exc}"
                ) from exc
            self._shadow.submit(served.name, served.version, inputs, probabilities)
            return served, probabilities
        raise Unavailable(f"model {model} is being swapped repeatedly; retry")
