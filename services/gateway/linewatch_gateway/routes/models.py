"""Inference: the model registry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from linewatch.v1 import inference_pb2
from linewatch_gateway.clients import Backends
from linewatch_gateway.convert import message_to_dict, model_for
from linewatch_gateway.routes.common import (
    ERRORS,
    NAME_PATTERN,
    PageParams,
    Read,
    Write,
    backends,
    local_page,
    page_model,
)

router = APIRouter(responses=ERRORS, tags=["models"])

B = Annotated[Backends, Depends(backends)]
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="The model name.")]
ModelOut = model_for(inference_pb2.Model.DESCRIPTOR)


class LoadModelBody(BaseModel):
    """Download a model package by URL, verify its checksum and serve it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "http://models.local/curve-quality-2.zip",
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                }
            ]
        },
    )
    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://")
    sha256: str = Field("", pattern=r"^([0-9a-fA-F]{64})?$")
    md5_base64: str = Field("", max_length=64)
    manifest: str = Field("", max_length=65536, description="For a bare .onnx: YAML or JSON.")
    signature: str = Field(
        "",
        max_length=128,
        description="base64 ed25519 over the package sha256, by a key inference trusts "
        "(required where the deployment requires signed packages).",
    )

    @model_validator(mode="after")
    def _checksum(self) -> LoadModelBody:
        if not self.sha256 and not self.md5_base64:
            raise ValueError("sha256 or md5_base64 is required")
        return self


class LoadModelOut(BaseModel):
    """The model after the load, and the version loaded."""

    model: ModelOut  # type: ignore[valid-type]
    version: str


@router.get(
    "/v1/models", dependencies=Read, response_model=page_model(inference_pb2.Model.DESCRIPTOR)
)
async def list_models(b: B, page: PageParams) -> Any:
    """Every model with its versions."""
    resp = await b.call("inference", b.inference.ListModels, inference_pb2.ListModelsRequest())
    return local_page(list(resp.models), page)


@router.post("/v1/models", dependencies=Write, status_code=201, response_model=LoadModelOut)
async def load_model(b: B, body: LoadModelBody) -> Any:
    """Load a model version (the old version keeps serving if this fails)."""
    req = inference_pb2.LoadModelRequest(**body.model_dump())
    resp = await b.call("inference", b.inference.LoadModel, req)
    return {"model": message_to_dict(resp.model), "version": resp.version}


@router.get("/v1/models/{name}", dependencies=Read, response_model=ModelOut)
async def get_model(b: B, name: ModelName) -> Any:
    """One model with its versions."""
    resp = await b.call("inference", b.inference.GetModel, inference_pb2.GetModelRequest(name=name))
    return message_to_dict(resp.model)


@router.delete("/v1/models/{name}", dependencies=Write, status_code=204)
async def unload_model(
    b: B,
    name: ModelName,
    version: Annotated[str, Query(max_length=64, description="Only this version.")] = "",
) -> Response:
    """Stop serving a model version (or every version)."""
    req = inference_pb2.UnloadModelRequest(name=name, version=version)
    await b.call("inference", b.inference.UnloadModel, req)
    return Response(status_code=204)


class PromoteBody(BaseModel):
    """The version to promote (rollback: an older one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": "2"}]})
    version: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


PromotionOut = model_for(inference_pb2.Promotion.DESCRIPTOR)


class PromoteOut(BaseModel):
    """The model after the promotion, and the promotion recorded."""

    model: ModelOut  # type: ignore[valid-type]
    promotion: PromotionOut  # type: ignore[valid-type]


@router.post("/v1/models/{name}/promote", dependencies=Write, response_model=PromoteOut)
async def promote_model(b: B, name: ModelName, body: PromoteBody) -> Any:
    """Make a loaded version the one rules without a pinned version score with, on every
    inference replica; rolling back is promoting an older version."""
    req = inference_pb2.PromoteModelRequest(name=name, version=body.version)
    resp = await b.call("inference", b.inference.PromoteModel, req)
    return {"model": message_to_dict(resp.model), "promotion": message_to_dict(resp.promotion)}


@router.get(
    "/v1/models/{name}/promotions",
    dependencies=Read,
    response_model=page_model(inference_pb2.Promotion.DESCRIPTOR),
)
async def list_promotions(b: B, name: ModelName, page: PageParams) -> Any:
    """Who promoted which version when (and from which), newest first."""
    req = inference_pb2.ListPromotionsRequest(name=name)
    resp = await b.call("inference", b.inference.ListPromotions, req)
    return local_page(list(resp.promotions), page)
