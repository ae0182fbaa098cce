"""Storage of the services' databases: sizes, retention now, vacuum."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from linewatch.v1 import storage_pb2
from linewatch_gateway.clients import STORAGE_BACKENDS, Backends
from linewatch_gateway.convert import message_to_dict
from linewatch_gateway.errors import ApiError
from linewatch_gateway.routes.common import ERRORS, Read, Write, backends

router = APIRouter(responses=ERRORS)

B = Annotated[Backends, Depends(backends)]
Service = Literal["ingest", "sync", "ota"]


class StorageOut(BaseModel):
    """Each service's database: tables (rows, bytes, partitions), last retention run,
    schema revision. A service that did not answer is listed in ``errors``."""

    services: list[dict[str, Any]]
    errors: dict[str, str]


class RetentionOut(BaseModel):
    """What each service's retention run did, by data kind."""

    services: dict[str, list[dict[str, Any]]]


class VacuumOut(BaseModel):
    """Database bytes before and after, per service."""

    services: dict[str, dict[str, Any]]


def _names(service: Service | None) -> tuple[str, ...]:
    return (service,) if service else STORAGE_BACKENDS


@router.get("/v1/storage", dependencies=Read, response_model=StorageOut, tags=["storage"])
async def get_storage(b: B) -> Any:
    """Sizes and retention progress of every service's database (over gRPC)."""

    async def one(name: str) -> dict[str, Any]:
        resp = await b.call(name, b.storage[name].GetStorage, storage_pb2.GetStorageRequest())
        return message_to_dict(resp)

    results = await asyncio.gather(*(one(n) for n in STORAGE_BACKENDS), return_exceptions=True)
    services, errors = [], {}
    for name, result in zip(STORAGE_BACKENDS, results, strict=True):
        if isinstance(result, ApiError):
            errors[name] = result.message
        elif isinstance(result, BaseException):
            raise result
        else:
            services.append(result)
    return {"services": services, "errors": errors}


@router.post(
    "/v1/storage/retention", dependencies=Write, response_model=RetentionOut, tags=["storage"]
)
async def run_retention(
    b: B, service: Annotated[Service | None, Query(description="One service; default all.")] = None
) -> Any:
    """Apply every TTL now (one service, or all three in turn)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in _names(service):
        req = storage_pb2.RunRetentionRequest()
        resp = await b.call(name, b.storage[name].RunRetention, req)
        out[name] = [message_to_dict(k) for k in resp.kinds]
    return {"services": out}


@router.post("/v1/storage/vacuum", dependencies=Write, response_model=VacuumOut, tags=["storage"])
async def run_vacuum(
    b: B, service: Annotated[Service | None, Query(description="One service; default all.")] = None
) -> Any:
    """Give free space back (SQLite VACUUM; PostgreSQL VACUUM ANALYZE)."""
    out: dict[str, dict[str, Any]] = {}
    for name in _names(service):
        resp = await b.call(name, b.storage[name].Vacuum, storage_pb2.VacuumRequest())
        out[name] = message_to_dict(resp)
    return {"services": out}
