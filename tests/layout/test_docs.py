"""docs/ stays true: REST paths exist, the configuration reference is current, links resolve."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from linewatch_gateway.app import create_app
from linewatch_gateway.clients import Backends
from linewatch_gateway.config import GatewayConfig

from linewatch_dev import configdoc

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
ENDPOINT = re.compile(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`\s?]*)[^`]*`")
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def _openapi() -> dict[str, Any]:
    """The gateway's OpenAPI document, plus the routes that serve it (GET only)."""
    app = create_app(GatewayConfig(), Backends(ingest=None, inference=None, sync=None, ota=None))
    doc: dict[str, Any] = app.openapi()
    for own in (app.openapi_url, app.docs_url):
        if own:
            doc["paths"].setdefault(own, {"get": {}})
    return doc


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _matches(documented: str, template: str) -> bool:
    """``/v1/stream/verdicts`` and ``/v1/sync/jobs/{id}`` match ``/v1/stream/{kind}`` and
    ``/v1/sync/jobs/{job_id}``: a template parameter takes any segment, a documented
    parameter only a parameter."""
    doc, tpl = _segments(documented), _segments(template)
    if len(doc) != len(tpl):
        return False
    for d, t in zip(doc, tpl, strict=True):
        if t.startswith("{"):
            continue
        if d != t:
            return False
    return True


def _endpoints() -> list[tuple[str, str, str]]:
    """``(file, METHOD, path)`` of every endpoint the docs name."""
    found: list[tuple[str, str, str]] = []
    for md in [*DOCS, ROOT / "README.md"]:
        for method, path in ENDPOINT.findall(md.read_text(encoding="utf-8")):
            found.append((md.name, method, path))
    return found


def test_docs_exist_for_every_contract() -> None:
    names = {p.name for p in DOCS}
    assert {
        "README.md",
        "topics.md",
        "devices.md",
        "rest.md",
        "grpc.md",
        "security.md",
        "configuration.md",
    } <= names


def test_every_rest_path_in_the_docs_is_in_the_openapi_document() -> None:
    paths = _openapi()["paths"]
    endpoints = _endpoints()
    assert len(endpoints) > 30, "the docs name the REST endpoints as `METHOD /path`"
    missing = []
    for source, method, path in endpoints:
        templates = [t for t in paths if _matches(path, t)]
        if not any(method.lower() in paths[t] for t in templates):
            missing.append(f"{source}: {method} {path}")
    assert missing == []


def test_the_path_check_can_fail() -> None:
    paths = _openapi()["paths"]
    assert not any(_matches("/v1/nothing/here", t) for t in paths)
    assert any(_matches("/v1/stream/verdicts", t) for t in paths)
    assert not any(_matches("/v1/rules/{name}/extra", t) for t in paths)


def test_the_configuration_reference_is_current() -> None:
    assert configdoc.OUT.read_text(encoding="utf-8") == configdoc.render(), (
        "docs/configuration.md is stale: run `make docs`"
    )


@pytest.mark.parametrize("md", [*DOCS, ROOT / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(md: Path) -> None:
    broken = [
        target
        for target, _ in LINK.findall(md.read_text(encoding="utf-8"))
        if "://" not in target and not (md.parent / target).exists()
    ]
    assert broken == []


def test_the_readme_sends_readers_to_docs_not_to_a_folder_they_lack() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme
    assert "SPEC.md" not in readme
    assert "(docs/README.md)" in readme


def test_shipped_code_states_rules_instead_of_pointing_outside_the_repository() -> None:
    roots = [ROOT / "src" / "linewatch", *sorted((ROOT / "services").glob("*/linewatch_*"))]
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for root in roots
        for p in root.rglob("*.py")
        if "_pb2" not in p.name
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"SPEC\b|SPEC\.md|\bseed[- ]?0\d\d", line)
    ]
    assert offenders == []
