"""REST contract tests: every path, auth, the JSON error shape, paging, ranged downloads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from typing import Any

import grpc
import httpx
import pytest

from .conftest import WRITE_TOKEN

RULE = {
    "name": "demo",
    "source_topic": "plant/+/+/telemetry",
    "model": "curve-quality",
    "output_topic": "plant/{1}/{2}/verdict",
    "alarm": {"threshold": 3, "window_s": 60},
}

WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/rules", RULE),
    ("PUT", "/v1/rules/demo", RULE),
    ("DELETE", "/v1/rules/demo", None),
    ("POST", "/v1/rules/demo/pause", None),
    ("POST", "/v1/rules/demo/resume", None),
    ("POST", "/v1/ingest/start", None),
    ("POST", "/v1/ingest/stop", None),
    ("PUT", "/v1/ingest/workers", {"workers": 2}),
    ("POST", "/v1/models", {"url": "http://x/m.onnx", "sha256": "0" * 64}),
    ("DELETE", "/v1/models/m", None),
    ("POST", "/v1/models/m/promote", {"version": "2"}),
    ("POST", "/v1/sync/jobs", {"urls": ["http://x/a.jpg"]}),
    ("POST", "/v1/sync/jobs/j1/retry", None),
    ("POST", "/v1/firmware", None),
    ("DELETE", "/v1/firmware/fw-1", None),
    ("POST", "/v1/ota/rollouts", {"firmware_id": "fw-1", "devices": ["d1"]}),
    ("POST", "/v1/ota/rollouts/r1/pause", None),
    ("POST", "/v1/ota/rollouts/r1/resume", None),
    ("POST", "/v1/ota/rollouts/r1/cancel", None),
    ("POST", "/v1/ota/groups", {"name": "g1", "lines": ["A"]}),
    ("DELETE", "/v1/ota/groups/g1", None),
    ("POST", "/v1/devices/d1/commands", {"name": "power_on"}),
    ("POST", "/v1/devices/d1/commands/c1/cancel", None),
    ("POST", "/v1/storage/retention", None),
    ("POST", "/v1/storage/vacuum", None),
]


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"error"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_every_write_needs_a_token(
    client: httpx.AsyncClient, read_only_headers: dict[str, str], method: str, path: str, body: Any
) -> None:
    resp = await client.request(method, path, json=body)
    assert_error(resp, 401, "unauthenticated")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    resp = await client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
    assert_error(resp, 401, "unauthenticated")
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    resp = await client.request(method, path, json=body, headers=read_only_headers)
    assert_error(resp, 403, "permission_denied")


async def test_every_spec_path_is_in_openapi(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in [
        "/v1/rules",
        "/v1/rules/{name}",
        "/v1/rules/{name}/envelope",
        "/v1/rules/{name}/envelope/reset",
        "/v1/ingest/status",
        "/v1/ingest/start",
        "/v1/ingest/stop",
        "/v1/ingest/workers",
        "/v1/telemetry",
        "/v1/verdicts",
        "/v1/deadletters",
        "/v1/alarms",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/promote",
        "/v1/models/{name}/promotions",
        "/v1/sync/jobs",
        "/v1/sync/jobs/{job_id}/retry",
        "/v1/images/{path}",
        "/v1/firmware",
        "/v1/firmware/{firmware_id}/download",
        "/v1/ota/rollouts",
        "/v1/ota/rollouts/{rollout_id}",
        "/v1/ota/rollouts/{rollout_id}/pause",
        "/v1/ota/rollouts/{rollout_id}/resume",
        "/v1/ota/rollouts/{rollout_id}/cancel",
        "/v1/ota/devices/{device_id}",
        "/v1/ota/rollouts/{rollout_id}/updates",
        "/v1/ota/groups",
        "/v1/ota/groups/{name}",
        "/v1/stream/{kind}",
        "/healthz",
        "/readyz",
        "/metrics",
    ]:
        assert path in paths, path
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "examples" in doc["components"]["schemas"]["RuleBody"]


async def test_rules_crud_and_errors(
    client: httpx.AsyncClient, stack: Any, write_headers: dict[str, str]
) -> None:
    rule = RULE | {
        "source_topic": f"{stack.topic_root}/crud/+/telemetry",
        "output_topic": f"{stack.topic_root}/crud/{{1}}/verdict",
    }
    resp = await client.post("/v1/rules", json=rule, headers=write_headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["alarm"]["threshold"] == 3
    again = await client.post("/v1/rules", json=rule, headers=write_headers)
    assert_error(again, 409, "already_exists")
    got = (await client.get("/v1/rules/demo")).json()
    assert got["source_topic"] == rule["source_topic"]
    assert got["qos"] == 1
    resp = await client.put("/v1/rules/demo", json=rule | {"qos": 0}, headers=write_headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["qos"] == 0
    mismatch = await client.put("/v1/rules/demo", json=rule | {"name": "x"}, headers=write_headers)
    assert_error(mismatch, 400, "invalid_argument")
    listing = (await client.get("/v1/rules", params={"page_size": 1})).json()
    assert len(listing["items"]) == 1
    assert listing["next_page_token"] != ""
    rest = await client.get("/v1/rules", params={"page_token": listing["next_page_token"]})
    names = {r["name"] for r in listing["items"] + rest.json()["items"]}
    assert names == {"demo", "line"}
    assert (await client.post("/v1/rules/demo/pause", headers=write_headers)).status_code == 204
    assert (await client.post("/v1/rules/demo/resume", headers=write_headers)).status_code == 204
    assert (await client.delete("/v1/rules/demo", headers=write_headers)).status_code == 204
    assert_error(await client.get("/v1/rules/demo"), 404, "not_found")
    missing = await client.put(
        "/v1/rules/ghost", json=rule | {"name": "ghost"}, headers=write_headers
    )
    assert_error(missing, 404, "not_found")
    # loop-prone rules: ingest refuses them (INVALID_ARGUMENT), the gateway says 400
    root = stack.topic_root
    for loop in (
        {"source_topic": "linewatch/#"},
        {"source_topic": f"{root}/loop/+/t", "output_topic": f"{root}/loop/{{1}}/t"},
    ):
        refused = await client.post(
            "/v1/rules", json=rule | {"name": "loop"} | loop, headers=write_headers
        )
        assert_error(refused, 400, "invalid_argument")
    bad = await client.post("/v1/rules", json={"name": ""}, headers=write_headers)
    assert_error(bad, 400, "invalid_argument")  # ingest checks rules: the reason is its own
    shape = await client.post("/v1/rules", json={"name": 5, "nope": 1}, headers=write_headers)
    assert_error(shape, 422, "invalid_argument")  # not a rule's shape: the gateway refuses
    assert_error(await client.get("/v1/rules/bad name!"), 422, "invalid_argument")
    assert_error(await client.get("/v1/nothing-here"), 404, "not_found")


async def test_request_size_limit(client: httpx.AsyncClient, write_headers: dict[str, str]) -> None:
    huge = RULE | {"source_topic": "x" * (2 * 1024 * 1024)}
    assert_error(
        await client.post("/v1/rules", json=huge, headers=write_headers), 413, "payload_too_large"
    )


async def test_ingest_control(client: httpx.AsyncClient, write_headers: dict[str, str]) -> None:
    status = (await client.get("/v1/ingest/status")).json()
    assert status["state"] == "running"
    assert [r["name"] for r in status["rules"]] == ["line"]
    assert int(status["rules"][0]["duplicates"]) == 0  # counted, never silent
    stopped = await client.post("/v1/ingest/stop", headers=write_headers)
    assert stopped.json()["state"] == "stopped"
    started = await client.post("/v1/ingest/start", headers=write_headers)
    assert started.json()["state"] == "running"
    workers = await client.put("/v1/ingest/workers", json={"workers": 7}, headers=write_headers)
    assert workers.json() == {"workers": 7}
    assert (await client.get("/v1/ingest/status")).json()["workers"] == 7
    zero = await client.put("/v1/ingest/workers", json={"workers": 0}, headers=write_headers)
    assert_error(zero, 422)


async def _eventually_page(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], count: int
) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            body: dict[str, Any] = (await client.get(path, params=params)).json()
            if len(body.get("items", [])) >= count:
                return body
            await asyncio.sleep(0.1)


async def test_archive_queries_through_the_real_pipeline(
    client: httpx.AsyncClient, stack: Any
) -> None:
    kinds = [("d0", "A", "spike"), ("d1", "B", "ok"), ("d0", "A", "ok"), ("d1", "B", "ok")]
    kinds.append(("d0", "A", "spike"))
    ids = await stack.publish(kinds)
    await stack.publish_raw(stack.topic("A", "d0"), b'{"device_id": "d0", "values": []}')
    verdicts = await _eventually_page(client, "/v1/verdicts", {}, 5)
    assert {v["msg_id"] for v in verdicts["items"]} == set(ids)
    by_id = {v["msg_id"]: v for v in verdicts["items"]}
    assert by_id[ids[0]]["label"] == "spike"
    assert by_id[ids[0]]["ok"] is False
    assert by_id[ids[1]]["label"] == "ok"
    assert by_id[ids[1]]["attrs"] == {"line": "B"}
    assert set(by_id[ids[1]]["scores"]) == {"ok", "spike", "drift", "noise", "step"}
    page1 = (await client.get("/v1/verdicts", params={"device": "d0", "page_size": 2})).json()
    assert len(page1["items"]) == 2
    assert page1["next_page_token"]
    params = {"device": "d0", "page_size": 2, "page_token": page1["next_page_token"]}
    page2 = (await client.get("/v1/verdicts", params=params)).json()
    assert len(page2["items"]) == 1
    assert page2["next_page_token"] == ""
    seen = {v["msg_id"] for v in page1["items"] + page2["items"]}
    assert seen == {ids[0], ids[2], ids[4]}
    spikes = (await client.get("/v1/verdicts", params={"label": "spike"})).json()
    assert {v["msg_id"] for v in spikes["items"]} == {ids[0], ids[4]}
    telemetry = await _eventually_page(client, "/v1/telemetry", {"device": "d1"}, 2)
    assert len(telemetry["items"][0]["values"]) == 256
    dead = await _eventually_page(client, "/v1/deadletters", {}, 1)
    assert dead["items"][0]["reason"] == "point: missing"
    alarms = await _eventually_page(client, "/v1/alarms", {"state": "active"}, 1)
    assert alarms["items"][0]["device_id"] == "d0"
    future = await client.get("/v1/verdicts", params={"start": "2100-01-01T00:00:00Z"})
    assert future.json()["items"] == []
    backwards = await client.get(
        "/v1/alarms", params={"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    )
    assert_error(backwards, 400, "invalid_argument")
    assert_error(await client.get("/v1/alarms", params={"state": "bogus"}), 422)
    assert_error(await client.get("/v1/verdicts", params={"page_size": 0}), 422)


async def _serve_bytes(data: bytes) -> asyncio.Server:
    """A minimal HTTP server answering every GET with ``data`` (the model package host)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + data)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_models_against_the_real_inference_service(
    client: httpx.AsyncClient, write_headers: dict[str, str]
) -> None:
    from linewatch_dev.inference_testing import manifest_dict, onnx_bytes, zip_package

    listing = (await client.get("/v1/models")).json()
    # models/ ships curve-quality and the two-channel example press-cycle.
    assert [m["name"] for m in listing["items"]] == ["curve-quality", "press-cycle"]
    shipped = (await client.get("/v1/models/curve-quality")).json()
    assert shipped["versions"][0]["state"] == "ready"
    assert shipped["versions"][0]["labels"][0] == "ok"
    assert_error(await client.get("/v1/models/absent"), 404, "not_found")
    no_sum = await client.post(
        "/v1/models", json={"url": "http://127.0.0.1:1/m.onnx"}, headers=write_headers
    )
    assert_error(no_sum, 422, "invalid_argument")
    name = f"tiny-{uuid.uuid4().hex[:6]}"
    package = zip_package(onnx_bytes(), manifest_dict(name=name))
    server = await _serve_bytes(package)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"http://127.0.0.1:{port}/{name}.zip"
        wrong = await client.post(
            "/v1/models", json={"url": url, "sha256": "0" * 64}, headers=write_headers
        )
        assert wrong.status_code in {400, 409}, wrong.text
        digest = hashlib.sha256(package).hexdigest()
        loaded = await client.post(
            "/v1/models", json={"url": url, "sha256": digest}, headers=write_headers
        )
        assert loaded.status_code == 201, loaded.text
        assert loaded.json()["version"] == "1"
        assert loaded.json()["model"]["name"] == name
        assert loaded.json()["model"]["promoted_version"] == "1"  # the first is promoted
        package2 = zip_package(onnx_bytes(), manifest_dict(name=name, version="2"))
        server2 = await _serve_bytes(package2)
        port2 = server2.sockets[0].getsockname()[1]
        try:
            second = await client.post(
                "/v1/models",
                json={
                    "url": f"http://127.0.0.1:{port2}/{name}-2.zip",
                    "sha256": hashlib.sha256(package2).hexdigest(),
                },
                headers=write_headers,
            )
        finally:
            server2.close()
            await server2.wait_closed()
        assert second.status_code == 201, second.text
        assert second.json()["model"]["promoted_version"] == "1"  # loading changes nothing
    finally:
        server.close()
        await server.wait_closed()
    assert (await client.get(f"/v1/models/{name}")).json()["versions"][0]["state"] == "ready"
    no_write = await client.post(f"/v1/models/{name}/promote", json={"version": "2"})
    assert no_write.status_code == 401
    bad = await client.post(
        f"/v1/models/{name}/promote", json={"version": "../x"}, headers=write_headers
    )
    assert_error(bad, 422, "invalid_argument")
    absent = await client.post(
        f"/v1/models/{name}/promote", json={"version": "9"}, headers=write_headers
    )
    assert_error(absent, 404, "not_found")
    promoted = await client.post(
        f"/v1/models/{name}/promote", json={"version": "2"}, headers=write_headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["model"]["promoted_version"] == "2"
    assert promoted.json()["promotion"]["from_version"] == "1"
    rollback = await client.post(
        f"/v1/models/{name}/promote", json={"version": "1"}, headers=write_headers
    )
    assert rollback.json()["model"]["promoted_version"] == "1"
    history = (await client.get(f"/v1/models/{name}/promotions")).json()["items"]
    assert [(h["from_version"], h["to_version"]) for h in history] == [
        ("2", "1"),
        ("1", "2"),
        ("", "1"),
    ]
    assert history[0]["by"]
    assert history[0]["at"]
    gone = await client.delete(f"/v1/models/{name}", headers=write_headers)
    assert gone.status_code == 204
    after = await client.get(f"/v1/models/{name}")
    assert after.status_code == 404 or after.json()["versions"][0]["state"] == "unloaded"


async def _job_state(client: httpx.AsyncClient, job_id: str, states: set[str]) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            job: dict[str, Any] = (await client.get(f"/v1/sync/jobs/{job_id}")).json()
            if job["state"] in states:
                return job
            await asyncio.sleep(0.1)


async def test_sync_jobs_and_images_from_the_real_sync_service(
    client: httpx.AsyncClient, write_headers: dict[str, str]
) -> None:
    from linewatch_dev.sync_testing import ImageServer, Route, image_bytes

    image = image_bytes(1, 4500)
    async with ImageServer() as images:
        images.routes["/img/a.jpg"] = Route(body=image)
        images.routes["/img/missing.jpg"] = Route(status=404)
        urls = [f"{images.base_url}/img/a.jpg!thumb", f"{images.base_url}/img/missing.jpg"]
        made = await client.post(
            "/v1/sync/jobs",
            json={"urls": [*urls, "ftp://x/y.jpg"], "work_id": "w"},
            headers=write_headers,
        )
        assert made.status_code == 202, made.text
        body = made.json()
        assert len(body["jobs"]) == 2
        assert body["rejected"][0].startswith("ftp://x/y.jpg")
        by_url = {j["url"]: j for j in body["jobs"]}
        good = by_url.get(urls[0]) or by_url[urls[0].removesuffix("!thumb")]
        bad = by_url[urls[1]]
        assert good["cache_path"] == f"127.0.0.1_{images.port}/img/a.jpg"
        done = await _job_state(client, good["id"], {"done"})
        assert done["size"] == len(image)
        dead = await _job_state(client, bad["id"], {"dead", "failed"})
        assert dead["last_error"]
    listing = (await client.get("/v1/sync/jobs", params={"state": "done"})).json()
    assert [j["id"] for j in listing["items"]] == [good["id"]]
    retried = await client.post(f"/v1/sync/jobs/{bad['id']}/retry", headers=write_headers)
    assert retried.status_code == 200, retried.text
    # queued again (the sync worker may already have taken it)
    assert retried.json()["state"] in {"queued", "downloading"}
    not_failed = await client.post(f"/v1/sync/jobs/{good['id']}/retry", headers=write_headers)
    assert_error(not_failed, 409, "failed_precondition")
    missing = await client.post("/v1/sync/jobs/nope/retry", headers=write_headers)
    assert missing.status_code in {400, 404}
    assert "error" in missing.json()
    stats = (await client.get("/v1/sync/stats")).json()
    assert stats["files"] == 1
    assert stats["bytes"] == len(image)
    resp = await client.get(f"/v1/images/{good['cache_path']}")
    assert resp.status_code == 200
    assert resp.content == image
    assert resp.headers["content-type"] == "image/jpeg"
    assert "max-age" in resp.headers["cache-control"]
    assert resp.headers["content-length"] == str(len(image))
    etag = resp.headers["etag"]
    cached = await client.get(f"/v1/images/{good['cache_path']}", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert_error(await client.get(f"/v1/images/127.0.0.1_{images.port}/img/none.jpg"), 404)
    assert_error(await client.get("/v1/images/a/%2E%2E/b"), 400, "invalid_argument")


async def _upload(
    client: httpx.AsyncClient, data: bytes, headers: dict[str, str], file_first: bool = False
) -> httpx.Response:
    fields = [("version", (None, b"1.3.0")), ("product", (None, b"press"))]
    file_part = [("file", ("fw.bin", data, "application/octet-stream"))]
    files = file_part + fields if file_first else fields + file_part
    return await client.post("/v1/firmware", files=files, headers=headers)


@pytest.mark.parametrize("file_first", [False, True])
async def test_firmware_upload_and_ranged_download(
    client: httpx.AsyncClient, stack: Any, write_headers: dict[str, str], file_first: bool
) -> None:
    data = os.urandom(300_000)
    resp = await _upload(client, data, write_headers, file_first)
    assert resp.status_code == 201, resp.text
    fw = resp.json()
    assert fw["size"] == len(data)
    assert fw["sha256"] == hashlib.sha256(data).hexdigest()
    assert fw["version"] == "1.3.0"
    assert fw["product"] == "press"
    assert fw["filename"] == "fw.bin"
    url = f"/v1/firmware/{fw['id']}/download"
    full = await client.get(url)
    assert full.status_code == 200
    assert full.content == data
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == f'"{fw["sha256"]}"'
    for header, first, last in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, len(data) - 1),
        ("bytes=-500", len(data) - 500, len(data) - 1),
        ("bytes=299990-999999", 299990, len(data) - 1),
    ]:
        part = await client.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == data[first : last + 1], header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
        assert part.headers["content-length"] == str(last - first + 1)
    unsat = await client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert_error(unsat, 416, "range_not_satisfiable")
    assert unsat.headers["content-range"] == f"bytes */{len(data)}"
    stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == data
    not_modified = await client.get(url, headers={"If-None-Match": full.headers["etag"]})
    assert not_modified.status_code == 304
    listing = (await client.get("/v1/firmware")).json()
    assert [f["id"] for f in listing["items"]] == [fw["id"]]
    assert (await client.get(f"/v1/firmware/{fw['id']}")).json()["size"] == len(data)
    assert_error(await client.get("/v1/firmware/fw-404/download"), 404, "not_found")


async def test_firmware_upload_errors(
    client: httpx.AsyncClient, write_headers: dict[str, str]
) -> None:
    no_version = await client.post(
        "/v1/firmware", files=[("file", ("f", b"abc"))], headers=write_headers
    )
    assert_error(no_version, 400, "invalid_argument")
    no_file = await client.post(
        "/v1/firmware", files=[("version", (None, b"1"))], headers=write_headers
    )
    assert_error(no_file, 400, "invalid_argument")
    not_form = await client.post("/v1/firmware", json={"version": "1"}, headers=write_headers)
    assert_error(not_form, 415, "unsupported_media_type")
    broken = await client.post(
        "/v1/firmware",
        content=b"--xx\r\nnonsense",
        headers=write_headers | {"Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert_error(broken, 400, "invalid_argument")


async def test_ota_rollouts(client: httpx.AsyncClient, write_headers: dict[str, str]) -> None:
    fw = (await _upload(client, b"x" * 1000, write_headers)).json()
    missing = await client.post(
        "/v1/ota/rollouts", json={"firmware_id": "nope", "devices": ["d1"]}, headers=write_headers
    )
    assert_error(missing, 404, "not_found")
    no_target = await client.post(
        "/v1/ota/rollouts", json={"firmware_id": fw["id"]}, headers=write_headers
    )
    assert_error(no_target, 422, "invalid_argument")
    made = await client.post(
        "/v1/ota/rollouts",
        json={
            "firmware_id": fw["id"],
            "devices": ["d1", "d2"],
            "priority": "security",
            "error_threshold": 0.5,
        },
        headers=write_headers,
    )
    assert made.status_code == 201
    ro = made.json()
    assert ro["state"] == "running"
    assert ro["priority"] == "security"
    assert ro["counts"] == {"queued": 2}
    rid = ro["id"]
    assert (await client.get(f"/v1/ota/rollouts/{rid}")).json()["devices"] == ["d1", "d2"]

    async def act(action: str) -> httpx.Response:
        return await client.post(f"/v1/ota/rollouts/{rid}/{action}", headers=write_headers)

    assert (await act("pause")).json()["state"] == "paused"
    assert (await act("resume")).json()["state"] == "running"
    assert (await act("cancel")).json()["state"] == "cancelled"
    assert_error(await act("resume"), 409, "failed_precondition")
    device = (await client.get("/v1/ota/devices/d1")).json()
    assert device["device_id"] == "d1"
    assert device["updates"][0]["rollout_id"] == rid
    assert device["updates"][0]["state"] in {"queued", "notified", "cancelled"}
    assert (await client.get("/v1/ota/rollouts")).json()["items"][0]["id"] == rid
    assert_error(await client.get("/v1/ota/rollouts/none"), 404)


async def test_ota_rollout_plans_and_groups(
    client: httpx.AsyncClient, write_headers: dict[str, str]
) -> None:
    fw = (await _upload(client, b"y" * 1000, write_headers)).json()
    plan = {
        "firmware_id": fw["id"],
        "devices": [f"p{i}" for i in range(10)],
        "waves": [{"count": 1, "soak_s": 600}, {"percent": 30, "error_threshold": 0.1}, {}],
        "gate": {"cycles": 50, "confidence": 0.99, "method": "beta_binomial"},
        "schedule": {
            "time_zone": "Europe/Berlin",
            "windows": [{"weekdays": [6, 7], "start_minute": 1320, "end_minute": 360}],
            "idle_s": 30,
        },
    }
    made = await client.post("/v1/ota/rollouts", json=plan, headers=write_headers)
    assert made.status_code == 201, made.text
    ro = made.json()
    assert [w["size"] for w in ro["waves"]] == [1, 3, 6]
    assert ro["waves"][1]["error_threshold"] == pytest.approx(0.1)
    assert ro["gate"]["method"] == "beta_binomial"
    assert ro["schedule"]["windows"][0]["weekdays"] == [6, 7]
    updates = (await client.get(f"/v1/ota/rollouts/{ro['id']}/updates?page_size=4")).json()
    assert [u["wave"] for u in updates["items"]] == [0, 1, 1, 1]
    assert updates["next_page_token"]
    bad = await client.post(
        "/v1/ota/rollouts",
        json=plan | {"schedule": {"time_zone": "Nowhere/Land"}},
        headers=write_headers,
    )
    assert_error(bad, 400, "invalid_argument")
    await client.post(f"/v1/ota/rollouts/{ro['id']}/cancel", headers=write_headers)
    group = {"name": "rest-line-a", "lines": ["A"], "tags": ["press"]}
    created = await client.post("/v1/ota/groups", json=group, headers=write_headers)
    assert created.status_code == 201, created.text
    assert created.json()["filter"]["lines"] == ["A"]
    again = await client.post("/v1/ota/groups", json=group, headers=write_headers)
    assert_error(again, 409, "already_exists")
    assert "rest-line-a" in [g["name"] for g in (await client.get("/v1/ota/groups")).json()]
    got = (await client.get("/v1/ota/groups/rest-line-a")).json()
    assert got["members"] == []
    gone = await client.delete("/v1/ota/groups/rest-line-a", headers=write_headers)
    assert gone.status_code == 204
    assert_error(await client.get("/v1/ota/groups/rest-line-a"), 404, "not_found")


async def test_probes_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["backends"] == dict.fromkeys(
        ["ingest", "inference", "sync", "ota"], "serving"
    )
    await client.get("/v1/rules")
    metrics = await client.get("/metrics")
    assert (
        'linewatch_gateway_http_requests_total{method="GET",route="/v1/rules",status="200"}'
        in metrics.text
    )
    page = await client.get("/")
    assert page.status_code == 200
    assert "<svg" in page.text
    assert "EventSource" in page.text


async def test_readyz_names_what_is_down(stack: Any) -> None:
    from linewatch_gateway.app import create_app
    from linewatch_gateway.clients import Backends

    from linewatch_dev.testing import free_port

    config = stack.config(ota_addr=f"127.0.0.1:{free_port()}")
    backends = Backends.connect(config)
    app = create_app(config, backends)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://g"
    ) as http:
        resp = await http.get("/readyz")
        assert_error(resp, 503, "unavailable")
        message = resp.json()["error"]["message"]
        assert "ota" in message
        assert "ingest" not in message
        assert_error(await http.get("/v1/ota/rollouts/x"), 503, "unavailable")
    await backends.close()


async def test_read_auth_and_cors(stack: Any) -> None:
    from linewatch_gateway.app import create_app
    from linewatch_gateway.clients import Backends

    config = stack.config(read_auth=True, cors_origins=["http://ui.example"])
    backends = Backends.connect(config)
    app = create_app(config, backends)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://g"
    ) as http:
        assert_error(await http.get("/v1/rules"), 401, "unauthenticated")
        assert (
            await http.get("/v1/rules", headers={"Authorization": "Bearer t-read"})
        ).status_code == 200
        pre = await http.options(
            "/v1/rules",
            headers={"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"},
        )
        assert pre.headers["access-control-allow-origin"] == "http://ui.example"
        assert (await http.get("/healthz")).status_code == 200
        assert_error(await http.get("/v1/stream/verdicts"), 401, "unauthenticated")
        wrong = await http.get("/v1/stream/verdicts", params={"access_token": "nope"})
        assert_error(wrong, 401, "unauthenticated")
        elsewhere = await http.get("/v1/rules", params={"access_token": "t-read"})
        assert_error(elsewhere, 401, "unauthenticated")
    await backends.close()


class _CountUploadMessages(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Counts the request messages of each client-streaming call on the channel."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        self.counts.append(0)
        index = len(self.counts) - 1

        async def counted() -> Any:
            async for message in request_iterator:
                self.counts[index] += 1
                yield message

        return await continuation(client_call_details, counted())


async def test_firmware_upload_is_streamed_in_chunks(stack: Any) -> None:
    """1.5 MB arrives at OTA as metadata + several chunk messages, not one blob."""
    from linewatch_gateway.app import create_app
    from linewatch_gateway.clients import Backends

    from linewatch.v1 import ota_pb2_grpc
    from linewatch_dev.testing import operator_channel

    config = stack.config()
    backends = Backends.connect(config)
    counter = _CountUploadMessages()
    channel = operator_channel(stack.addrs["ota"], interceptors=[counter])
    backends.ota = ota_pb2_grpc.OtaServiceStub(channel)
    app = create_app(config, backends)
    data = os.urandom(1_500_000)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://g") as http:
        resp = await _upload(http, data, {"Authorization": f"Bearer {WRITE_TOKEN}"})
        assert resp.status_code == 201, resp.text
        assert resp.json()["sha256"] == hashlib.sha256(data).hexdigest()
        full = await http.get(f"/v1/firmware/{resp.json()['id']}/download")
        assert full.content == data
    assert counter.counts == [1 + -(-len(data) // (256 * 1024))]
    await channel.close()
    await backends.close()
