import pytest
from linewatch_inference.registry import check_model_url

from linewatch.runtime.errors import InvalidArgument


@pytest.mark.parametrize(
    "url",
    [
        "http://p\xa5a\xbc\U000e9fb7\x9c/m.zip",
        "ftp://host/m.zip",
        "file:///etc/passwd",
        "m.zip",
        "",
    ],
)
def test_bad_model_urls_are_invalid_argument(url: str) -> None:
    with pytest.raises(InvalidArgument, match="model url"):
        check_model_url(url)


def test_http_urls_pass() -> None:
    check_model_url("http://10.0.0.5:8080/models/m.zip")
    check_model_url("https://models.plant/curve-quality-2.zip")
