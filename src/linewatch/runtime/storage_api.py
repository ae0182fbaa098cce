"""``linewatch.v1.StorageService`` for one service's database, from its retention runner.

Guarded like every method (``runtime/grpc_auth.py``): read-only callers may
``GetStorage``; ``RunRetention`` and ``Vacuum`` need the gateway or operator role.
"""

from __future__ import annotations

from typing import Any

from linewatch.runtime.grpc_server import GrpcServer
from linewatch.runtime.migrations import MigrationHistory, current_revision
from linewatch.runtime.retention import RetentionRunner, SweepResult, database_bytes, vacuum
from linewatch.v1 import storage_pb2, storage_pb2_grpc

__all__ = ["SERVICE_NAME", "StorageApi", "add_storage_service"]

SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


def _kinds(results: list[SweepResult]) -> list[storage_pb2.RetentionKind]:
    return [
        storage_pb2.RetentionKind(
            kind=r.kind,
            rows_deleted=r.rows_deleted,
            partitions_dropped=r.partitions_dropped,
            rows_kept=r.rows_kept,
            seconds=r.seconds,
        )
        for r in results
    ]


class StorageApi(storage_pb2_grpc.StorageServiceServicer):
    """Sizes, retention now, vacuum."""

    def __init__(self, runner: RetentionRunner, history: MigrationHistory) -> None:
        self.runner = runner
        self.history = history

    async def GetStorage(  # noqa: N802
        self, request: storage_pb2.GetStorageRequest, context: Any
    ) -> storage_pb2.GetStorageResponse:
        db = self.runner.db
        sizes = await self.runner.sizes()
        return storage_pb2.GetStorageResponse(
            service=self.runner.service,
            database=db.dialect,
            database_bytes=await database_bytes(db),
            tables=[
                storage_pb2.TableStorage(
                    table=s.table, rows=s.rows, bytes=s.bytes, partitions=s.partitions
                )
                for s in sizes
            ],
            last_retention_ms=self.runner.last_run_ms,
            last_retention=_kinds(self.runner.last_results),
            schema_revision=await current_revision(db, self.history) or "",
            retention_enabled=self.runner.cfg.enabled,
        )

    async def RunRetention(  # noqa: N802
        self, request: storage_pb2.RunRetentionRequest, context: Any
    ) -> storage_pb2.RunRetentionResponse:
        return storage_pb2.RunRetentionResponse(kinds=_kinds(await self.runner.run_once()))

    async def Vacuum(  # noqa: N802
        self, request: storage_pb2.VacuumRequest, context: Any
    ) -> storage_pb2.VacuumResponse:
        db = self.runner.db
        before = await database_bytes(db)
        async with self.runner.lock:
            await vacuum(db)
        return storage_pb2.VacuumResponse(
            database_bytes_before=before, database_bytes_after=await database_bytes(db)
        )


def add_storage_service(
    server: GrpcServer, runner: RetentionRunner, history: MigrationHistory
) -> StorageApi:
    """Serve ``StorageService`` on a service's gRPC server."""
    api = StorageApi(runner, history)
    server.add(storage_pb2_grpc.add_StorageServiceServicer_to_server, api, SERVICE_NAME)
    return api
