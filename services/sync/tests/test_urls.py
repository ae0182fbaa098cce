"""URL parsing and canonicalisation: both payload formats, the cache path rule, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linewatch_sync.cachefs import CacheFs, validate_cache_path
from linewatch_sync.urls import canonicalise, host_allowed, parse_payload

from linewatch.runtime.errors import InvalidArgument


def test_spec_example_strips_preview_and_appends_port() -> None:
    canon = canonicalise("http://10.0.0.5:8080/img/a.jpg!thumb")
    assert canon.cache_path == "10.0.0.5_8080/img/a.jpg"
    assert canon.url == "http://10.0.0.5:8080/img/a.jpg"


def test_no_port_no_suffix_and_host_lowercased() -> None:
    canon = canonicalise("HTTPS://Img.Example.COM/works/12/cover.png")
    assert canon.cache_path == "img.example.com/works/12/cover.png"
    assert canon.url == "https://img.example.com/works/12/cover.png"


def test_percent_encoded_names_are_decoded_once_and_reencoded() -> None:
    canon = canonicalise("http://h/img/a%20b.jpg!large")
    assert canon.cache_path == "h/img/a b.jpg"
    assert canon.url == "http://h/img/a%20b.jpg"


def test_preview_variants_share_one_canonical_url() -> None:
    a = canonicalise("http://h/x/a.jpg!thumb")
    b = canonicalise("http://h/x/a.jpg!large")
    assert a == b


def test_seed_comma_separated_payload() -> None:
    parsed = parse_payload(b"http://h/a.jpg!thumb, http://h/b.jpg,,")
    assert [i.url for i in parsed.items] == ["http://h/a.jpg!thumb", "http://h/b.jpg"]
    assert parsed.work_id == ""


def test_json_payload_with_work_id_and_checksum() -> None:
    sha = "ab" * 32
    parsed = parse_payload(
        b'{"urls": ["http://h/a.jpg", {"url": "http://h/b.jpg", "sha256": "'
        + sha.encode()
        + b'"}], "work_id": "w-7"}'
    )
    assert [i.url for i in parsed.items] == ["http://h/a.jpg", "http://h/b.jpg"]
    assert parsed.items[1].sha256 == sha
    assert parsed.work_id == "w-7"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"urls": "http://h/a.jpg"}', "JSON payload must be"),
        (b'{"urls": [1]}', "each of urls"),
        (b'{"urls": []}', "no URL"),
        (b'{"urls": ["http://h/a"], "work_id": 5}', "work_id"),
        (b"{not json", "not valid JSON"),
        (b" , , ", "no URL"),
    ],
)
def test_bad_payloads_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        parse_payload(payload)


def test_too_many_urls_refused() -> None:
    with pytest.raises(InvalidArgument, match="at most 2"):
        parse_payload(b"http://h/1,http://h/2,http://h/3", max_urls=2)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://h/a.jpg",
        "gopher://h/a",
        "http://h/../../etc/passwd",
        "http://h/img/%2e%2e/%2e%2e/etc/passwd",
        "http://h/img/%2E%2E%2Fetc%2Fpasswd",
        "http://h/img/%252e%252e/x.jpg",
        "http://h/img/..%5c..%5cx.jpg",
        "http://h/img\\..\\x.jpg",
        "http://h/img/a%00.jpg",
        "http://h/img/a\x00.jpg",
        "http://h/",
        "http://h/dir/",
        "http://user:pw@h/a.jpg",
        "http:///a.jpg",
        "http://../a.jpg",
        "http://h:99999/a.jpg",
        "http://h/%ff%fe.jpg",
        "javascript:alert(1)",
        "//h/a.jpg",
        "/etc/passwd",
    ],
)
def test_hostile_urls_refused(url: str) -> None:
    with pytest.raises(InvalidArgument):
        canonicalise(url)


def test_allow_list() -> None:
    assert host_allowed("img.example.com", ("*.example.com",))
    assert not host_allowed("example.org", ("*.example.com", "cdn.example.net"))
    assert host_allowed("cdn.example.net", ("cdn.example.net",))
    with pytest.raises(InvalidArgument, match="allow-list"):
        canonicalise("http://evil.test/a.jpg", allowed_hosts=("img.example.com",))


@pytest.mark.parametrize(
    "path", ["/abs/x", "a/../b", "a/./b", "a//b", "a\\b", "a/b\x00", ".partial/x", "a/%2e%2e/b"]
)
def test_cache_path_validation(path: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_cache_path(path)


_path_chars = st.sampled_from(
    [*list("abc./\\%2eEfF05c!?#:@;~ "), "%2e", "%2f", "%5c", "%00", "..", "%252e", "\x00", "‥"]
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.lists(_path_chars, max_size=24).map("".join), port=st.sampled_from(["", ":81"]))
def test_any_url_stays_inside_the_cache(tmp_path: Path, path: str, port: str) -> None:
    """Property: whatever the path, a URL is refused or its file lands inside the root."""
    cache = CacheFs(tmp_path / "cache")
    try:
        canon = canonicalise(f"http://h{port}/{path}")
    except InvalidArgument:
        return
    target = cache.resolve(canon.cache_path)
    assert target.resolve().is_relative_to(cache.root)
    assert target.resolve() != cache.root
    assert ".." not in canon.cache_path.split("/")
    assert not target.resolve().is_relative_to(cache.partial_dir)
