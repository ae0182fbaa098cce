"""The Open Inference Protocol v2 (``inference.GRPCInferenceService``), as Triton serves it.

Wire-compatible with Triton's and KServe's clients: one FP32 input named after the
manifest's ``input_name`` (``curve``) of shape ``[batch, samples]``, given either as
``raw_input_contents`` or as typed ``fp32_contents``; one FP32 output (``probabilities``,
``[batch, n_labels]``) returned in ``raw_output_contents`` like Triton does. The
repository extension loads by URL with the parameters ``url``, ``sha256`` or ``md5``
(base64 of the md5 digest, the legacy form), ``signature`` (ed25519 over the sha256,
where signatures are required) and, for a bare ``.onnx``, ``manifest``; without ``url`` it
(re)loads the model's packages from ``model_dir``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.errors import InvalidArgument, LinewatchError, NotFound
from linewatch_inference.callers import caller_name
from linewatch_inference.channels import decode_channel_tensor, input_shape
from linewatch_inference.inputs import decode_tensor
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.package import version_key
from linewatch_inference.preprocessing import ModelInput
from linewatch_inference.registry import Registry
from linewatch_inference.scoring import Scorer

__all__ = ["SERVER_NAME", "OipServicer"]

Context = Any  # grpc.aio.ServicerContext

SERVER_NAME = "linewatch-inference"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["model_repository", "model_configuration"]


def _server_version() -> str:
    try:
        return metadata.version("linewatch")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0"


def _param(params: Any, *names: str) -> str:
    """A string (or bytes) repository parameter by the first of ``names`` present."""
    for name in names:
        if name in params:
            p = params[name]
            kind = p.WhichOneof("parameter_choice")
            if kind == "string_param":
                return str(p.string_param)
            if kind == "bytes_param":
                return bytes(p.bytes_param).decode("utf-8", errors="strict")
            raise InvalidArgument(f"parameter {name!r} must be a string")
    return ""


class OipServicer(oip_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over the registry.

    Args:
        registry: The model registry.
        scorer: Scores curves (validation, preprocessing, batching, shadow).
        metrics: Request counters.
        max_request_curves: Most curves per request.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        scorer: Scorer,
        metrics: InferenceMetrics,
        max_request_curves: int,
    ) -> None:
        self._registry = registry
        self._scorer = scorer
        self._metrics = metrics
        self._max_curves = max_request_curves
        self._version = _server_version()
        self.ready = True
        """False while the server drains on shutdown (ServerReady answers it)."""

    async def ServerLive(  # noqa: N802 - gRPC method name
        self, request: oip.ServerLiveRequest, context: Context
    ) -> oip.ServerLiveResponse:
        """The process answers."""
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802 - gRPC method name
        self, request: oip.ServerReadyRequest, context: Context
    ) -> oip.ServerReadyResponse:
        """Ready once started, until shutdown begins."""
        return oip.ServerReadyResponse(ready=self.ready)

    async def ModelReady(  # noqa: N802 - gRPC method name
        self, request: oip.ModelReadyRequest, context: Context
    ) -> oip.ModelReadyResponse:
        """Whether this replica serves the model's promoted version (with a version:
        that version)."""
        try:
            entry = self._registry.entry(request.name)
        except NotFound:
            return oip.ModelReadyResponse(ready=False)
        if request.version:
            return oip.ModelReadyResponse(ready=request.version in entry.versions)
        return oip.ModelReadyResponse(ready=entry.promoted_ready())

    async def ServerMetadata(  # noqa: N802 - gRPC method name
        self, request: oip.ServerMetadataRequest, context: Context
    ) -> oip.ServerMetadataResponse:
        """Name, version and protocol extensions."""
        return oip.ServerMetadataResponse(
            name=SERVER_NAME, version=self._version, extensions=EXTENSIONS
        )

    async def ModelMetadata(  # noqa: N802 - gRPC method name
        self, request: oip.ModelMetadataRequest, context: Context
    ) -> oip.ModelMetadataResponse:
        """Versions and the input/output tensors of a model."""
        served = self._registry.resolve(request.name, request.version)
        entry = self._registry.entry(request.name)
        m = served.manifest
        tensor = oip.ModelMetadataResponse.TensorMetadata
        return oip.ModelMetadataResponse(
            name=m.name,
            versions=sorted(entry.versions, key=version_key),
            platform=PLATFORM,
            inputs=[
                tensor(
                    name=m.input_name,
                    datatype="FP32",
                    shape=list(input_shape(m.channels, m.input_length, -1)),
                )
            ],
            outputs=[tensor(name=m.output_name, datatype="FP32", shape=[-1, len(m.labels)])],
        )

    async def ModelInfer(  # noqa: N802 - gRPC method name
        self, request: oip.ModelInferRequest, context: Context
    ) -> oip.ModelInferResponse:
        """Score the ``curve`` tensor; answer ``probabilities`` as raw FP32 bytes."""
        try:
            response = await self._infer(request)
        except LinewatchError as exc:
            self._metrics.requests.labels(api="oip", code=exc.grpc_code.name).inc()
            raise
        self._metrics.requests.labels(api="oip", code="OK").inc()
        return response

    async def _infer(self, request: oip.ModelInferRequest) -> oip.ModelInferResponse:
        served = self._registry.resolve(request.model_name, request.model_version)
        m = served.manifest
        if len(request.inputs) != 1:
            raise InvalidArgument(
                f"model {m.name} takes exactly one input ({m.input_name!r}), "
                f"got {len(request.inputs)}"
            )
        tensor = request.inputs[0]
        if tensor.name != m.input_name:
            raise InvalidArgument(
                f"unknown input {tensor.name!r}; model {m.name} takes {m.input_name!r}"
            )
        if tensor.datatype != "FP32":
            raise InvalidArgument(
                f"input {tensor.name!r} has datatype {tensor.datatype or '(none)'}; "
                "model takes FP32"
            )
        for wanted in request.outputs:
            if wanted.name != m.output_name:
                raise InvalidArgument(
                    f"unknown output {wanted.name!r}; model {m.name} has {m.output_name!r}"
                )
        if request.raw_input_contents:
            if len(request.raw_input_contents) != 1:
                raise InvalidArgument(
                    f"raw_input_contents has {len(request.raw_input_contents)} entries for 1 input"
                )
            data: bytes | list[float] = bytes(request.raw_input_contents[0])
        else:
            data = list(tensor.contents.fp32_contents)
        curves: ModelInput = (
            decode_channel_tensor(
                data, list(tensor.shape), m.channels, name=tensor.name, max_curves=self._max_curves
            )
            if m.channels
            else decode_tensor(
                data, list(tensor.shape), name=tensor.name, max_curves=self._max_curves
            )
        )
        served, probabilities = await self._scorer.score(m.name, request.model_version, curves)
        out = np.ascontiguousarray(probabilities, dtype="<f4")
        return oip.ModelInferResponse(
            model_name=served.name,
            model_version=served.version,
            id=request.id,
            outputs=[
                oip.ModelInferResponse.InferOutputTensor(
                    name=served.manifest.output_name, datatype="FP32", shape=list(out.shape)
                )
            ],
            raw_output_contents=[out.tobytes()],
        )

    async def RepositoryIndex(  # noqa: N802 - gRPC method name
        self, request: oip.RepositoryIndexRequest, context: Context
    ) -> oip.RepositoryIndexResponse:
        """Every model version with its state (READY or UNAVAILABLE and why)."""
        index = oip.RepositoryIndexResponse.ModelIndex
        models = []
        for entry in self._registry.models():
            for version in sorted(entry.versions, key=version_key):
                models.append(
                    index(
                        name=entry.name,
                        version=version,
                        state="READY",
                        reason=entry.failures.get(version, ""),
                    )
                )
            if request.ready:
                continue
            for version, reason in entry.failures.items():
                if version not in entry.versions:
                    models.append(
                        index(name=entry.name, version=version, state="UNAVAILABLE", reason=reason)
                    )
        return oip.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(  # noqa: N802 - gRPC method name
        self, request: oip.RepositoryModelLoadRequest, context: Context
    ) -> oip.RepositoryModelLoadResponse:
        """Load by URL (``url`` + ``sha256``/``md5`` [+ ``manifest``]) or from ``model_dir``."""
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        params = request.parameters
        url = _param(params, "url")
        if url:
            await self._registry.load_url(
                url,
                sha256=_param(params, "sha256"),
                md5_base64=_param(params, "md5", "md5_base64"),
                manifest=_param(params, "manifest"),
                expected_name=request.model_name,
                signature=_param(params, "signature"),
                by=caller_name(),
            )
        else:
            await self._registry.load_dir_package(request.model_name, by=caller_name())
        return oip.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(  # noqa: N802 - gRPC method name
        self, request: oip.RepositoryModelUnloadRequest, context: Context
    ) -> oip.RepositoryModelUnloadResponse:
        """Unload every version of the model, or the one in parameter ``version``."""
        await self._registry.unload(request.model_name, _param(request.parameters, "version"))
        return oip.RepositoryModelUnloadResponse()
