"""``linewatch.v1.InferenceService``: the streaming path ingest uses, and the registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from linewatch.runtime.errors import InvalidArgument, LinewatchError
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_inference.callers import caller_name
from linewatch_inference.catalog import PromotionRow
from linewatch_inference.channels import decode_channel_batch
from linewatch_inference.inputs import decode_curves
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.preprocessing import ModelInput
from linewatch_inference.registry import ModelEntry, Registry, ServedVersion
from linewatch_inference.scoring import Scorer
from linewatch_inference.shadow import ShadowScorer

tracer = trace.get_tracer(__name__)

__all__ = ["InferenceApi", "model_message", "promotion_message"]

Context = Any  # grpc.aio.ServicerContext


def _version_message(served: ServedVersion) -> pb.ModelVersion:
    m = served.manifest
    message = pb.ModelVersion(
        version=m.version,
        state=pb.MODEL_STATE_READY,
        sha256=served.sha256,
        input_length=m.input_length,
        labels=m.labels,
        ok_labels=m.ok_labels,
        source_url=served.source_url,
        channels=m.channels,
        loaded_by=served.loaded_by,
    )
    message.loaded_at.FromDatetime(served.loaded_at)
    return message


def model_message(entry: ModelEntry) -> pb.Model:
    """The registry's view of one model as a ``linewatch.v1.Model``."""
    versions = [_version_message(v) for v in entry.versions.values()]
    for message in versions:
        message.reason = entry.failures.get(message.version, "")
    for failed, reason in entry.failures.items():
        if failed not in entry.versions:
            versions.append(
                pb.ModelVersion(version=failed, state=pb.MODEL_STATE_FAILED, reason=reason)
            )
    latest = entry.latest()
    return pb.Model(
        name=entry.name,
        latest_version=latest.version if latest else "",
        versions=versions,
        shadow_version=entry.shadow,
        promoted_version=entry.promoted,
        promoted_ready=entry.promoted_ready(),
    )


def promotion_message(row: PromotionRow) -> pb.Promotion:
    """One promotion as a ``linewatch.v1.Promotion``."""
    message = pb.Promotion(
        name=row.name, from_version=row.from_version, to_version=row.to_version, by=row.by
    )
    message.at.FromDatetime(row.at)
    return message


def _scores(
    served: ServedVersion, probabilities: npt.NDArray[np.float32], *, packed: bool = False
) -> pb.BatchScores:
    labels = served.manifest.labels
    if packed:
        return pb.BatchScores(
            model=served.name,
            version=served.version,
            labels=labels,
            probabilities_f32=np.ascontiguousarray(probabilities, dtype="<f4").tobytes(),
            ok_labels=[label for label in labels if label in served.manifest.ok_labels],
        )
    ok = [label in served.manifest.ok_labels for label in labels]
    result = pb.BatchScores(model=served.name, version=served.version, labels=labels)
    add = result.scores.add
    for top, row in zip(
        np.argmax(probabilities, axis=1).tolist(), probabilities.tolist(), strict=True
    ):
        add(label=labels[top], ok=ok[top], probabilities=row)
    return result


class InferenceApi(pb_grpc.InferenceServiceServicer):
    """The ``linewatch.v1.InferenceService`` servicer.

    Args:
        registry: The model registry.
        scorer: Scores curves (validation, preprocessing, batching, shadow).
        shadow: Agreement statistics.
        metrics: Request counters.
        max_request_curves: Most curves per batch.
        stream_window: Batches of one stream scored at once.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        scorer: Scorer,
        shadow: ShadowScorer,
        metrics: InferenceMetrics,
        max_request_curves: int,
        stream_window: int,
    ) -> None:
        self._registry = registry
        self._scorer = scorer
        self._shadow = shadow
        self._metrics = metrics
        self._max_curves = max_request_curves
        self._window = stream_window

    async def _score_batch(
        self, batch: pb.CurveBatch, api: str, *, packed: bool = False
    ) -> pb.BatchScores:
        try:
            if not batch.model:
                raise InvalidArgument("batch.model is required")
            curves: ModelInput = (
                decode_channel_batch(
                    batch.samples_f32,
                    list(batch.lengths),
                    list(batch.channels),
                    max_curves=self._max_curves,
                )
                if batch.channels
                else decode_curves(
                    batch.samples_f32, list(batch.lengths), max_curves=self._max_curves
                )
            )
            served, probabilities = await self._scorer.score(batch.model, batch.version, curves)
        except LinewatchError as exc:
            self._metrics.requests.labels(api=api, code=exc.grpc_code.name).inc()
            raise
        self._metrics.requests.labels(api=api, code="OK").inc()
        return _scores(served, probabilities, packed=packed)

    async def Predict(  # noqa: N802 - gRPC method name
        self, request: pb.PredictRequest, context: Context
    ) -> pb.PredictResponse:
        """Score one batch."""
        return pb.PredictResponse(result=await self._score_batch(request.batch, "predict"))

    async def PredictStream(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[pb.PredictStreamRequest], context: Context
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        """Score batches as they arrive; answer each as soon as it is scored.

        At most ``stream_window`` batches are in flight; the reader waits for a slot
        before reading more, so a fast client is slowed by gRPC flow control rather than
        queued without bound. A failed batch is answered with its error; the stream stays.
        """
        slots = asyncio.Semaphore(self._window)
        done: asyncio.Queue[pb.PredictStreamResponse | None] = asyncio.Queue()

        async def handle(request: pb.PredictStreamRequest) -> None:
            # Each batch continues the caller's trace from its own trace_context.
            parent = propagate.extract(dict(request.trace_context))
            try:
                with tracer.start_as_current_span(
                    "linewatch.v1.InferenceService/PredictStream batch",
                    context=parent,
                    kind=SpanKind.SERVER,
                    attributes={
                        "rpc.system": "grpc",
                        "rpc.service": "linewatch.v1.InferenceService",
                        "rpc.method": "PredictStream",
                        "linewatch.model": request.batch.model,
                        "linewatch.batch_size": len(request.batch.lengths),
                    },
                ):
                    result = await self._score_batch(
                        request.batch, "stream", packed=request.packed_scores
                    )
                response = pb.PredictStreamResponse(batch_id=request.batch_id, result=result)
            except LinewatchError as exc:
                response = pb.PredictStreamResponse(
                    batch_id=request.batch_id,
                    error_code=exc.grpc_code.value[0],
                    error_message=exc.message,
                )
            done.put_nowait(response)

        async def read() -> None:
            try:
                async with asyncio.TaskGroup() as group:
                    async for request in request_iterator:
                        await slots.acquire()
                        group.create_task(handle(request))
            finally:
                done.put_nowait(None)

        reader = asyncio.create_task(read(), name="predict-stream-reader")
        try:
            while (response := await done.get()) is not None:
                slots.release()
                yield response
            await reader  # surfaces a reader failure (e.g. the client cancelled)
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            elif not reader.cancelled():
                # the stream was closed first (client gone, server stopping): the reader's
                # error says only that, and asyncio would log it as never retrieved
                reader.exception()

    async def ListModels(  # noqa: N802 - gRPC method name
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        """Every model with every version."""
        return pb.ListModelsResponse(models=[model_message(e) for e in self._registry.models()])

    async def GetModel(  # noqa: N802 - gRPC method name
        self, request: pb.GetModelRequest, context: Context
    ) -> pb.GetModelResponse:
        """One model."""
        return pb.GetModelResponse(model=model_message(self._registry.entry(request.name)))

    async def LoadModel(  # noqa: N802 - gRPC method name
        self, request: pb.LoadModelRequest, context: Context
    ) -> pb.LoadModelResponse:
        """Download, verify and serve a package."""
        served = await self._registry.load_url(
            request.url,
            sha256=request.sha256,
            md5_base64=request.md5_base64,
            manifest=request.manifest,
            signature=request.signature,
            by=caller_name(),
        )
        return pb.LoadModelResponse(
            model=model_message(self._registry.entry(served.name)), version=served.version
        )

    async def PromoteModel(  # noqa: N802 - gRPC method name
        self, request: pb.PromoteModelRequest, context: Context
    ) -> pb.PromoteModelResponse:
        """Make a loaded version the promoted one (rollback: promote an older one)."""
        if not request.version:
            raise InvalidArgument("version is required")
        row = await self._registry.promote(request.name, request.version, by=caller_name())
        return pb.PromoteModelResponse(
            model=model_message(self._registry.entry(request.name)),
            promotion=promotion_message(row),
        )

    async def ListPromotions(  # noqa: N802 - gRPC method name
        self, request: pb.ListPromotionsRequest, context: Context
    ) -> pb.ListPromotionsResponse:
        """Every promotion of a model, newest first."""
        rows = await self._registry.promotions(request.name)
        return pb.ListPromotionsResponse(promotions=[promotion_message(r) for r in rows])

    async def UnloadModel(  # noqa: N802 - gRPC method name
        self, request: pb.UnloadModelRequest, context: Context
    ) -> pb.UnloadModelResponse:
        """Stop serving a version, or the whole model."""
        await self._registry.unload(request.name, request.version)
        return pb.UnloadModelResponse()

    async def SetShadow(  # noqa: N802 - gRPC method name
        self, request: pb.SetShadowRequest, context: Context
    ) -> pb.SetShadowResponse:
        """Attach or detach a shadow version."""
        entry = await self._registry.set_shadow(request.name, request.shadow_version)
        return pb.SetShadowResponse(model=model_message(entry))

    async def GetShadowStats(  # noqa: N802 - gRPC method name
        self, request: pb.GetShadowStatsRequest, context: Context
    ) -> pb.GetShadowStatsResponse:
        """How often the shadow agreed with the served version."""
        stats = self._shadow.stats(request.name)
        entry = self._registry.entry(request.name)
        return pb.GetShadowStatsResponse(
            name=request.name,
            version=stats.primary_version or entry.promoted,
            shadow_version=stats.shadow_version,
            compared=stats.compared,
            agreed=stats.agreed,
            agreement_rate=stats.agreement_rate,
        )
