"""Client of ``linewatch.v1.InferenceService.PredictStream``: long-lived bidi streams.

Batches from every rule share the streams (``streams`` of them, one by default), each
tagged with its own ``batch_id``; answers may come back in any order and are matched by
id. When a stream breaks (the inference replica restarted or went away, the network
dropped) every batch written to it fails with :class:`~linewatch.runtime.errors.Unavailable`
(every waiting batch, when no other stream is open) and a fresh stream is opened with
capped backoff; callers resend (the pipeline retries a batch until it is scored, it never
drops one). A batch without an answer within ``timeout_s`` fails the same way.

Replicas: a ``dns:///<headless service>:<port>`` target resolves to every replica's
address and the channel balances calls over them round robin (``round_robin`` LB policy);
with ``streams`` ≥ the replica count each stream lands on its own replica, batches go to
whichever stream is free, and a replica going away costs only the batches on its stream.

With ``protocol="oip"``, or ``"auto"`` once the server answers the stream with
UNIMPLEMENTED (a Triton or KServe endpoint, or a linewatch server with the linewatch.v1
API switched off), each batch is one Open Inference Protocol ``ModelInfer`` call instead
(:mod:`linewatch_ingest.oip_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import numpy.typing as npt
from opentelemetry import propagate

from linewatch.runtime.config import GrpcClientConfig
from linewatch.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    LinewatchError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from linewatch.runtime.grpc_auth import open_channel
from linewatch.v1 import inference_pb2, inference_pb2_grpc
from linewatch_ingest.config import OipModel
from linewatch_ingest.oip_client import OipClient

__all__ = ["BatchResult", "InferenceClient"]

log = logging.getLogger(__name__)

_CODE_ERRORS: dict[int, type[LinewatchError]] = {
    grpc.StatusCode.INVALID_ARGUMENT.value[0]: InvalidArgument,
    grpc.StatusCode.NOT_FOUND.value[0]: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION.value[0]: FailedPrecondition,
}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Scores of one batch: per curve the label (its index), ok flag and probabilities."""

    model: str
    version: str
    labels: tuple[str, ...]
    probabilities: npt.NDArray[np.float32]
    """One row of ``len(labels)`` per curve."""
    label_index: list[int]
    ok: list[bool]

    @classmethod
    def from_proto(cls, result: inference_pb2.BatchScores, curves: int) -> BatchResult:
        """Read packed scores (or, from an inference service that does not pack them yet,
        one Score per curve).

        Raises:
            Unavailable: the scores do not match the batch.
        """
        labels = tuple(result.labels)
        if not result.scores:
            probabilities = np.frombuffer(result.probabilities_f32, dtype="<f4")
            if not labels or len(probabilities) != curves * len(labels):
                raise Unavailable(
                    f"inference: {len(probabilities)} probabilities for {curves} curves "
                    f"of {len(labels)} labels"
                )
            probabilities = probabilities.reshape(curves, len(labels))
            index = probabilities.argmax(axis=1).tolist()
            ok_labels = set(result.ok_labels)
            ok_by_index = [label in ok_labels for label in labels]
            return cls(
                result.model, result.version, labels, probabilities, index,
                [ok_by_index[i] for i in index],
            )  # fmt: skip
        if len(result.scores) != curves:
            raise Unavailable(f"inference: {len(result.scores)} scores for {curves} curves")
        try:
            index = [labels.index(score.label) for score in result.scores]
        except ValueError as exc:
            raise Unavailable(f"inference: a score's label is not in {labels}") from exc
        return cls(
            result.model,
            result.version,
            labels,
            np.array([list(score.probabilities) for score in result.scores], dtype=np.float32),
            index,
            [score.ok for score in result.scores],
        )


class InferenceClient:
    """Multiplexes batches over one ``PredictStream`` and keeps it open."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 10.0,
        max_inflight: int = 64,
        retry_max_delay_s: float = 5.0,
        protocol: str = "auto",
        models: Mapping[str, OipModel] | None = None,
        client: GrpcClientConfig | None = None,
        streams: int = 1,
        rebalance_s: float = 0.0,
    ) -> None:
        self.target = target
        self.streams = max(1, streams)
        self.rebalance_s = rebalance_s
        self.client = client
        self.protocol = protocol
        self._models = dict(models or {})
        self._oip: OipClient | None = None
        self.use_oip = protocol == "oip"
        """Whether batches go through OIP ``ModelInfer`` (configured, or fallen back to)."""
        self.timeout_s = timeout_s
        self.retry_max_delay_s = retry_max_delay_s
        self._slots = asyncio.Semaphore(max_inflight)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[inference_pb2.PredictStreamResponse]] = {}
        self._outbox: asyncio.Queue[inference_pb2.PredictStreamRequest] = asyncio.Queue()
        self._channel: grpc.aio.Channel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        self._open_streams = 0
        self.last_error = ""
        self.reconnects = 0
        self.rebalances = 0
        """Streams drained and reopened after ``rebalance_s``."""

    @property
    def connected(self) -> bool:
        """Whether a stream is open now (with OIP: always, each call connects)."""
        return self.use_oip or self._connected.is_set()

    async def start(self) -> None:
        """Open the channel and keep a stream running in the background."""
        options: list[tuple[str, int | str]] = [
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", int(self.retry_max_delay_s * 1000)),
        ]
        if self.target.startswith(("dns:", "ipv4:", "ipv6:")):
            # every address the name resolves to (a headless Service: each replica), or
            # the listed ones (`ipv4:10.0.0.1:50052,10.0.0.2:50052`)
            options.append(("grpc.lb_policy_name", "round_robin"))
        self._channel = open_channel(self.target, self.client, options=options)
        self._oip = OipClient(self._channel, self._models, timeout_s=self.timeout_s)
        if not self.use_oip:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"inference-stream-{i}")
                for i in range(self.streams)
            ]

    async def close(self) -> None:
        """Stop the streams; waiting batches fail with Unavailable."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._fail_pending("inference client closed")
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def get_model(self, name: str) -> inference_pb2.Model:
        """The model's versions, labels and shadow version (``GetModel``).

        Raises:
            LinewatchError: the inference service's status code (NotFound: no such model).
        """
        assert self._channel is not None, "start() first"
        stub = inference_pb2_grpc.InferenceServiceStub(self._channel)
        try:
            resp = await stub.GetModel(
                inference_pb2.GetModelRequest(name=name), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            error = _CODE_ERRORS.get(exc.code().value[0], Unavailable)
            raise error(f"inference: {exc.details() or exc.code().name}") from exc
        model: inference_pb2.Model = resp.model
        return model

    async def predict(
        self,
        *,
        model: str,
        version: str,
        samples_f32: bytes,
        lengths: list[int],
        channels: Sequence[str] = (),
    ) -> BatchResult:
        """Score one batch (one attempt).

        ``channels``: for multi-channel curves, the channel names; then ``lengths`` holds
        ``len(channels)`` entries per curve (its channels' lengths, in that order).

        Raises:
            Unavailable: no stream, the stream broke, or no answer within ``timeout_s``.
            LinewatchError: the inference service refused the batch (its status code).
        """
        if self.use_oip:
            return await self._predict_oip(model, version, samples_f32, lengths, channels)
        async with self._slots:
            batch_id = next(self._ids)
            fut: asyncio.Future[inference_pb2.PredictStreamResponse] = (
                asyncio.get_running_loop().create_future()
            )
            self._pending[batch_id] = fut
            try:
                self._outbox.put_nowait(
                    inference_pb2.PredictStreamRequest(
                        batch_id=batch_id,
                        trace_context=_trace_context(),
                        batch=inference_pb2.CurveBatch(
                            model=model,
                            version=version,
                            samples_f32=samples_f32,
                            lengths=lengths,
                            channels=channels,
                        ),
                        packed_scores=True,
                    )
                )
                async with asyncio.timeout(self.timeout_s):
                    response = await fut
            except TimeoutError as exc:
                raise Unavailable(f"inference: no answer within {self.timeout_s}s") from exc
            finally:
                self._pending.pop(batch_id, None)
        if response.error_code:
            error = _CODE_ERRORS.get(response.error_code, Unavailable)
            raise error(f"inference: {response.error_message or 'batch failed'}")
        return BatchResult.from_proto(response.result, len(lengths) // max(len(channels), 1))

    async def _predict_oip(
        self,
        model: str,
        version: str,
        samples_f32: bytes,
        lengths: list[int],
        channels: Sequence[str],
    ) -> BatchResult:
        assert self._oip is not None, "start() first"
        async with self._slots:
            name, served, probabilities = await self._oip.predict(
                model=model,
                version=version,
                samples_f32=samples_f32,
                lengths=lengths,
                channels=channels,
            )
        spec = self._models[model]
        index = probabilities.argmax(axis=1).tolist()
        ok_by_index = [label in spec.ok_labels for label in spec.labels]
        return BatchResult(
            name, served, spec.labels, probabilities, index, [ok_by_index[i] for i in index]
        )

    def _fail_pending(self, reason: str, only: set[int] | None = None) -> None:
        """Fail the batches in ``only`` (``None``: every waiting batch)."""
        for batch_id, fut in self._pending.items():
            if (only is None or batch_id in only) and not fut.done():
                fut.set_exception(Unavailable(reason))
        if only is None:
            while not self._outbox.empty():
                self._outbox.get_nowait()

    async def _run(self) -> None:
        failures = 0
        while True:
            written: set[int] = set()
            try:
                if await self._one_stream(written):
                    self.rebalances += 1
                    continue  # drained to rebalance: reopen at once (maybe elsewhere)
                failures = 0
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                self.last_error = f"{exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED and self.protocol == "auto":
                    log.warning(
                        "the inference server has no linewatch.v1 stream; scoring with OIP "
                        "ModelInfer",
                        extra={"fields": {"target": self.target}},
                    )
                    self.use_oip = True
                    self._fail_pending("inference: switching to OIP ModelInfer")
                    return
            except Exception as exc:
                self.last_error = repr(exc)
                log.exception("inference stream failed")
            reason = f"inference stream broke: {self.last_error}"
            self._fail_pending(reason, written if self._open_streams else None)
            failures += 1
            self.reconnects += 1
            delay = min(self.retry_max_delay_s, 0.1 * 2 ** min(failures, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _one_stream(self, written: set[int]) -> bool:
        """Run one stream until it breaks (raises) or, after ``rebalance_s``, until it is
        drained (returns True: every batch written to it answered, none lost);
        ``written``: the batches sent on it and not answered yet."""
        assert self._channel is not None
        stub = inference_pb2_grpc.InferenceServiceStub(self._channel)
        call = stub.PredictStream(wait_for_ready=True)
        loop = asyncio.get_running_loop()
        draining = False

        async def writer() -> None:
            while True:
                request = await self._outbox.get()
                if draining:
                    self._outbox.put_nowait(request)  # another stream takes it
                    return
                if request.batch_id in self._pending:
                    written.add(request.batch_id)
                    await call.write(request)

        await call.wait_for_connection()
        write_task = asyncio.create_task(writer())
        self._open_streams += 1
        self._connected.set()
        drain_at = loop.time() + self.rebalance_s * random.uniform(0.75, 1.25)
        try:
            log.info("inference stream open", extra={"fields": {"target": self.target}})
            while True:
                if self.rebalance_s and not draining and loop.time() > drain_at:
                    draining = True  # the writer stops at its next batch
                if draining and not written:
                    # every batch written is answered; the writer holds none (a batch in
                    # hand is in `written` until answered), so stopping it loses nothing
                    write_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await write_task
                    await call.done_writing()
                    return True
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise Unavailable("inference stream ended")
                written.discard(response.batch_id)
                fut = self._pending.get(response.batch_id)
                if fut is not None and not fut.done():
                    fut.set_result(response)
                if write_task.done():
                    write_task.result()
        finally:
            self._open_streams -= 1
            if not self._open_streams:
                self._connected.clear()
            write_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, Exception):
                await write_task
            call.cancel()


def _trace_context() -> dict[str, str]:
    """The current span's W3C trace context, for the batch's ``trace_context``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
