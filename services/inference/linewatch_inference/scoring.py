"""Scoring: input length per the manifest, the batcher, and the shadow hand-off.

Both APIs (linewatch.v1 and the Open Inference Protocol) score through :class:`Scorer`, so
validation and preprocessing are the same whichever way a curve arrives.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from linewatch.runtime.errors import LinewatchError, Unavailable
from linewatch_inference.batcher import BatcherClosed
from linewatch_inference.preprocessing import ModelInput, prepare
from linewatch_inference.registry import Registry, ServedVersion
from linewatch_inference.shadow import ShadowScorer

__all__ = ["Scorer"]

log = logging.getLogger(__name__)

_SWAP_RETRIES = 5


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
        self, model: str, version: str, curves: ModelInput
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
            self._shadow.submit(served.name, served.version, curves, probabilities)
            return served, probabilities
        raise Unavailable(f"model {model} is being swapped repeatedly; retry")
