"""Runs Triton's own Python client against a server and prints what it saw as JSON.

tritonclient registers the ``inference`` protobuf package in the process's descriptor
pool, as linewatch's own OIP stubs do, so the two cannot share a process: the tests run
this script in a child process. Usage::

    python triton_probe.py PORT MODEL CURVES.npy [--unload-reload]

The bearer token comes from ``LINEWATCH_PROBE_TOKEN`` and rides on every call as
``authorization`` metadata, through Triton's own client-plugin hook.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import InferenceServerClientPlugin
from tritonclient.utils import InferenceServerException


class _Bearer(InferenceServerClientPlugin):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: Any) -> None:
        request.headers["authorization"] = f"Bearer {self.token}"


def probe(port: int, model: str, curves_path: str, unload_reload: bool) -> dict[str, Any]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    if token := os.environ.get("LINEWATCH_PROBE_TOKEN"):
        client.register_plugin(_Bearer(token))
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(as_json=True),
        "model_ready": client.is_model_ready(model),
        "model_ready_v9": client.is_model_ready(model, "9"),
        "model": client.get_model_metadata(model, as_json=True),
        "index": client.get_model_repository_index(as_json=True),
    }
    curves = np.load(curves_path)
    tensor = triton.InferInput("curve", list(curves.shape), "FP32")
    tensor.set_data_from_numpy(curves)
    result = client.infer(
        model, [tensor], outputs=[triton.InferRequestedOutput("probabilities")], request_id="r1"
    )
    probabilities = result.as_numpy("probabilities")
    out["probabilities"] = probabilities.tolist() if probabilities is not None else None
    response = result.get_response()
    out["model_version"] = response.model_version
    out["id"] = response.id
    if unload_reload:
        client.unload_model(model)
        out["ready_after_unload"] = client.is_model_ready(model)
        try:
            client.infer(model, [tensor])
            out["infer_after_unload"] = "ok"
        except InferenceServerException as exc:
            out["infer_after_unload"] = f"{exc.status()}: {exc.message()}"
        client.load_model(model)
        out["ready_after_load"] = client.is_model_ready(model)
    client.close()
    return out


if __name__ == "__main__":
    print(
        json.dumps(probe(int(sys.argv[1]), sys.argv[2], sys.argv[3], "--unload-reload" in sys.argv))
    )
