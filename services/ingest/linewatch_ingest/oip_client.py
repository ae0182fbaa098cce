"""Scoring through plain Open Inference Protocol v2 ``ModelInfer`` (Triton, KServe, linewatch).

Such a server takes the model's input tensor as it is and knows nothing of labels, so
ingest does what the linewatch server otherwise does: each curve (each channel of a
multi-channel curve, on its own) is resampled to the model's input length and z-scored
(:func:`linewatch.model_input.preprocess`, the code the model was trained with), the batch is
sent as one FP32 tensor ``[batch, input_length]`` (``[batch, channels, input_length]``)
in ``raw_input_contents``, and the probabilities are read back with the labels from
configuration (:class:`~linewatch_ingest.config.OipModel`). The input and output names
and the input length come from ``ModelMetadata`` unless configured.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np
import numpy.typing as npt

from linewatch.model_input import preprocess, resample
from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    LinewatchError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from linewatch_ingest.config import OipModel

__all__ = ["OipClient", "OipResult", "split_channels"]

_ERRORS: dict[grpc.StatusCode, type[LinewatchError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}

OipResult = tuple[str, str, npt.NDArray[np.float32]]
"""(model, version, probabilities [n, labels]) as the server answered."""


def split_channels(
    samples_f32: bytes, lengths: Sequence[int], channels: int
) -> list[list[npt.NDArray[np.float32]]]:
    """Per curve its channels (``channels`` consecutive entries of ``lengths`` each).

    Raises:
        InvalidArgument: the lengths do not match the samples or the channel count.
    """
    flat = np.frombuffer(samples_f32, dtype="<f4").astype(np.float32, copy=False)
    counts = np.asarray(lengths, dtype=np.int64)
    if int(counts.sum()) != len(flat) or len(counts) % max(channels, 1):
        raise InvalidArgument("lengths do not match the samples and channels")
    parts = np.split(flat, np.cumsum(counts)[:-1])
    c = max(channels, 1)
    return [parts[i : i + c] for i in range(0, len(parts), c)]


class OipClient:
    """``inference.GRPCInferenceService.ModelInfer`` over a channel it is given."""

    def __init__(
        self, channel: grpc.aio.Channel, models: dict[str, OipModel], *, timeout_s: float
    ) -> None:
        self._stub = oip_grpc.GRPCInferenceServiceStub(channel)
        self._models = models
        self._timeout = timeout_s
        self._meta: dict[tuple[str, str], tuple[str, str, int]] = {}

    async def _call(self, method: str, request: object) -> object:
        try:
            return await getattr(self._stub, method)(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            error = _ERRORS.get(exc.code(), Unavailable)
            raise error(f"inference (OIP {method}): {exc.details() or exc.code().name}") from exc

    async def _metadata(self, model: str, version: str, spec: OipModel) -> tuple[str, str, int]:
        """(input name, output name, input length) of a model version."""
        key = (model, version)
        known = self._meta.get(key)
        if known is not None:
            return known
        meta = await self._call(
            "ModelMetadata", oip.ModelMetadataRequest(name=model, version=version)
        )
        assert isinstance(meta, oip.ModelMetadataResponse)
        if not meta.inputs or not meta.outputs:
            raise FailedPrecondition(f"inference (OIP): model {model} reports no input or output")
        length = spec.input_length or int(meta.inputs[0].shape[-1])
        if length < 2:
            raise FailedPrecondition(
                f"inference.models.{model}.input_length: the server reports no fixed input "
                "length; configure it"
            )
        known = (
            spec.input_name or meta.inputs[0].name,
            spec.output_name or meta.outputs[0].name,
            length,
        )
        self._meta[key] = known
        return known

    def _prepare(
        self,
        spec: OipModel,
        length: int,
        samples_f32: bytes,
        lengths: Sequence[int],
        channels: Sequence[str],
    ) -> npt.NDArray[np.float32]:
        if bool(spec.channels) != bool(channels):
            want = f"channels {list(spec.channels)}" if spec.channels else "one curve (values)"
            raise InvalidArgument(f"the model takes {want}")
        curves = split_channels(samples_f32, lengths, len(channels))
        if any(len(part) < 2 for curve in curves for part in curve):
            raise InvalidArgument("a curve has fewer than 2 samples; resampling needs 2")

        def norm(batch: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
            if spec.normalization == "zscore":
                return preprocess(batch, length=length)
            return np.stack([resample(c, length=length) for c in batch]).astype(np.float32)

        if not channels:
            return norm([curve[0] for curve in curves])
        missing = [name for name in spec.channels if name not in channels]
        if missing:
            raise InvalidArgument(
                f"the model takes channels {list(spec.channels)}; missing {missing}"
            )
        order = [list(channels).index(name) for name in spec.channels]
        return np.stack([norm([curve[i] for curve in curves]) for i in order], axis=1)

    async def predict(
        self,
        *,
        model: str,
        version: str,
        samples_f32: bytes,
        lengths: Sequence[int],
        channels: Sequence[str] = (),
    ) -> OipResult:
        """Score one batch with one ``ModelInfer`` call.

        Raises:
            FailedPrecondition: the model has no labels configured.
            InvalidArgument: curves the model cannot take (or the server refused them).
            Unavailable: the server is down or answered something unreadable.
        """
        spec = self._models.get(model)
        if spec is None:
            raise FailedPrecondition(
                f"inference.models.{model}: labels needed to score {model!r} through OIP"
            )
        input_name, output_name, length = await self._metadata(model, version, spec)
        x = np.ascontiguousarray(
            self._prepare(spec, length, samples_f32, lengths, channels), dtype="<f4"
        )
        request = oip.ModelInferRequest(
            model_name=model,
            model_version=version,
            inputs=[
                oip.ModelInferRequest.InferInputTensor(
                    name=input_name, datatype="FP32", shape=list(x.shape)
                )
            ],
            outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=output_name)],
            raw_input_contents=[x.tobytes()],
        )
        response = await self._call("ModelInfer", request)
        assert isinstance(response, oip.ModelInferResponse)
        n = x.shape[0]
        if response.raw_output_contents:
            probs = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
        elif response.outputs:
            probs = np.asarray(response.outputs[0].contents.fp32_contents, dtype=np.float32)
        else:
            raise Unavailable("inference (OIP): the answer has no output")
        if len(probs) != n * len(spec.labels):
            raise Unavailable(
                f"inference (OIP): {len(probs)} scores for {n} curves of {len(spec.labels)} labels"
            )
        return (
            response.model_name or model,
            response.model_version or version,
            probs.astype(np.float32).reshape(n, len(spec.labels)),
        )
