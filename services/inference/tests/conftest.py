"""Fixtures: tiny generated ONNX models, model packages, a real HTTP server, real servers."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from linewatch_inference.app import InferenceServer
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from prometheus_client import CollectorRegistry

from linewatch_dev.inference_testing import manifest_dict, onnx_bytes, write_package
from linewatch_dev.testing import secured_grpc


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on a free port serving a folder: ``(base_url, folder)``."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


StartServer = Callable[..., Awaitable[tuple[InferenceServer, int]]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start real inference servers on free ports; each is stopped after the test."""
    started: list[InferenceServer] = []

    async def start(model_dir: Path, **settings: Any) -> tuple[InferenceServer, int]:
        settings.setdefault("data_dir", tmp_path / "data")
        settings.setdefault("allowed_networks", ("127.0.0.0/8",))  # the test file server
        config = InferenceConfig(grpc=secured_grpc(port=0), model_dir=model_dir, **settings)
        server = InferenceServer(config, metrics=InferenceMetrics(CollectorRegistry()))
        port = await server.start()
        started.append(server)
        return server, port

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder with ``tiny`` version 1 (top label: ok)."""
    root = tmp_path / "models"
    root.mkdir()
    write_package(root, onnx_bytes(), manifest_dict())
    return root
