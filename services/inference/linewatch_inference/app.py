"""The inference service: registry, batchers, shadow scorer and both gRPC APIs."""

from __future__ import annotations

import asyncio
import logging

from linewatch.oip import grpc_service_pb2 as oip
from linewatch.oip import grpc_service_pb2_grpc as oip_grpc
from linewatch.runtime.db import Database, default_sqlite_url
from linewatch.runtime.grpc_server import GrpcServer
from linewatch.v1 import inference_pb2 as pb
from linewatch.v1 import inference_pb2_grpc as pb_grpc
from linewatch_inference.api import InferenceApi
from linewatch_inference.config import InferenceConfig
from linewatch_inference.converge import Converger
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.oip import OipServicer
from linewatch_inference.registry import Registry
from linewatch_inference.scoring import Scorer
from linewatch_inference.shadow import ShadowScorer

__all__ = ["InferenceServer", "serve"]

log = logging.getLogger(__name__)


class InferenceServer:
    """Everything the service runs, started and stopped together.

    >>> server = InferenceServer(config)
    >>> port = await server.start()
    >>> ...
    >>> await server.stop()

    Args:
        config: The service configuration.
        metrics: Where metrics go (the process registry when omitted).
    """

    def __init__(self, config: InferenceConfig, *, metrics: InferenceMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or InferenceMetrics()
        self.db = Database(config.database_url or default_sqlite_url(config.data_dir, "inference"))
        self.registry = Registry(
            config, metrics=self.metrics, state_dir=config.data_dir / "inference", db=self.db
        )
        self.converger = Converger(self.registry, poll_s=config.registry_poll_s)
        self.shadow = ShadowScorer(
            self.registry, metrics=self.metrics, queue_size=config.shadow_queue_size
        )
        self.scorer = Scorer(self.registry, self.shadow)
        self.oip = OipServicer(
            registry=self.registry,
            scorer=self.scorer,
            metrics=self.metrics,
            max_request_curves=config.max_request_curves,
        )
        self.api = InferenceApi(
            registry=self.registry,
            scorer=self.scorer,
            shadow=self.shadow,
            metrics=self.metrics,
            max_request_curves=config.max_request_curves,
            stream_window=config.stream_window,
        )
        self.grpc = GrpcServer(config=config.grpc, service="inference")
        if config.serve_linewatch_api:
            self.grpc.add(
                pb_grpc.add_InferenceServiceServicer_to_server,
                self.api,
                pb.DESCRIPTOR.services_by_name["InferenceService"].full_name,
            )
        self.grpc.add(
            oip_grpc.add_GRPCInferenceServiceServicer_to_server,
            self.oip,
            oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
        )

    async def start(self) -> int:
        """Load the models (``model_dir``, then what the registry database has), then
        serve; returns the gRPC port."""
        await self.registry.start()
        await self.converger.run_once()
        self.converger.start()
        self.shadow.start()
        return await self.grpc.start()

    async def stop(self) -> None:
        """Stop taking calls, let running ones finish, then close every model."""
        self.oip.ready = False
        await self.grpc.stop()
        await self.converger.stop()
        await self.shadow.stop()
        await self.registry.close()
        await self.db.close()


async def serve(config: InferenceConfig, stop: asyncio.Event) -> None:
    """Run the inference service until ``stop`` is set."""
    server = InferenceServer(config)
    await server.start()
    try:
        await stop.wait()
    finally:
        log.info("inference stopping")
        await server.stop()
