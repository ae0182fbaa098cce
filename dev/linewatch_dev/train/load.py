"""Load a trained package into inference as a new version, with today's load API.

Inference loads packages by URL only (it downloads and verifies the sha256), so the trainer
serves the zip from a short-lived HTTP server on this machine (``--serve-host``; inference
must be able to reach it and its ``allowed_networks`` must include that address) while it
asks for the load: ``POST {gateway}/v1/models`` with the write token, or the inference gRPC
``LoadModel`` with an operator token. Loading never promotes (SPEC "Promotion"): rules keep
scoring with the promoted version until ``POST /v1/models/{name}/promote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

__all__ = ["LoadError", "load_package", "serve_file"]


class LoadError(RuntimeError):
    """Inference (or the gateway) refused or could not be reached."""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def serve_file(path: Path, host: str) -> Iterator[str]:
    """Serve ``path``'s folder over HTTP on ``host`` (a free port); yields the file's URL."""
    handler = partial(_Quiet, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield f"http://{host}:{port}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()


def _via_gateway(gateway: str, token: str, url: str, sha256: str) -> dict[str, Any]:
    endpoint = gateway.rstrip("/") + "/v1/models"
    try:
        resp = httpx.post(
            endpoint,
            json={"url": url, "sha256": sha256},
            headers={"Authorization": f"Bearer {token}"},
            timeout=120.0,
        )
    except httpx.HTTPError as exc:
        raise LoadError(f"POST {endpoint}: {exc}") from exc
    if resp.status_code >= 300:
        raise LoadError(f"POST {endpoint}: HTTP {resp.status_code}: {resp.text[:300]}")
    body: dict[str, Any] = resp.json()
    return body


async def _via_grpc(target: str, token: str, url: str, sha256: str) -> dict[str, Any]:
    import grpc

    from linewatch.runtime.config import GrpcClientConfig
    from linewatch.runtime.grpc_auth import open_channel
    from linewatch.v1 import inference_pb2, inference_pb2_grpc

    channel = open_channel(target, GrpcClientConfig(token=SecretStr(token)))
    try:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        req = inference_pb2.LoadModelRequest(url=url, sha256=sha256)
        resp = await stub.LoadModel(req, timeout=120.0)
    except grpc.aio.AioRpcError as exc:
        raise LoadError(f"LoadModel on {target}: {exc.code().name}: {exc.details()}") from exc
    finally:
        await channel.close()
    versions = [v.version for v in resp.model.versions]
    return {
        "version": resp.version,
        "model": {"name": resp.model.name, "versions": versions},
    }


def load_package(zip_path: Path, target: str, *, token: str, serve_host: str) -> dict[str, Any]:
    """Load ``zip_path`` through ``target``: a gateway ``http(s)://`` URL or an inference
    ``host:port``; returns the service's answer (the model with its versions).

    Raises:
        LoadError: The service refused the package or could not be reached.
    """
    if not token:
        raise LoadError("loading needs a token: --token or LINEWATCH_TOKEN")
    sha256 = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    with serve_file(zip_path, serve_host) as url:
        if target.startswith(("http://", "https://")):
            return _via_gateway(target, token, url, sha256)
        return asyncio.run(_via_grpc(target.removeprefix("grpc://"), token, url, sha256))
