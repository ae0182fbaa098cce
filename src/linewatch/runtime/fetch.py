"""Outbound HTTP(S) that cannot be pointed at the inside of the plant (SSRF-safe fetching).

Everything linewatch downloads from a URL someone else chose (images for sync, model
packages by URL) goes through one :class:`SafeFetcher`:

- the host of every connection is resolved by the fetcher's own network backend, every
  address is checked, and the socket is opened to the vetted address itself, so a DNS
  answer cannot change between the check and the connect (rebinding). Odd spellings
  (``2130706433``, ``0x7f000001``, ``127.1``, ``[::ffff:127.0.0.1]``) are normalised by the
  resolver and :mod:`ipaddress` before the check;
- refused unless a CIDR of ``allowed_networks`` contains it: loopback, private, link-local,
  multicast, unspecified, reserved and shared addresses, IPv4 and IPv6, including IPv4
  embedded in IPv6 (mapped, NAT64, 6to4); in short anything not globally routable;
- redirects are followed by the fetcher (never by httpx), each hop checked the same way,
  only to ``http``/``https`` and never from https down to http, at most ``max_redirects``;
- no proxy or certificate settings from the environment (``trust_env=False``);
- errors are generic: they never carry a body, its digest, or whether a port is open
  (a refused connection and a connect timeout read the same);
- connect/read timeouts, a total time limit and a size limit for whole downloads.

Exceptions::

    FetchError                  (FAILED_PRECONDITION; ``retryable`` says whether to retry)
    ├── FetchRefused            the URL, a redirect or the resolved address is not allowed
    ├── FetchTooLarge           the body is larger than the limit
    ├── FetchTimeout            too slow (retryable)
    └── FetchFailed             could not connect, or the connection broke (retryable)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Annotated, BinaryIO

import httpcore
import httpx
from pydantic import AfterValidator, BeforeValidator

from linewatch.runtime.errors import FailedPrecondition

__all__ = [
    "AllowedNetworks",
    "FetchError",
    "FetchFailed",
    "FetchRefused",
    "FetchTimeout",
    "FetchTooLarge",
    "IpNetwork",
    "SafeFetcher",
    "address_allowed",
    "parse_networks",
]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class FetchError(FailedPrecondition):
    """A fetch failed; ``reason`` is a short label (metrics), the message the story."""

    retryable = False
    reason = "fetch"


class FetchRefused(FetchError):
    """The URL, a redirect, or the address the host resolves to is not allowed."""

    reason = "refused"


class FetchTooLarge(FetchError):
    """The body is larger than the limit."""

    reason = "too_large"


class FetchTimeout(FetchError):
    """The server took too long."""

    retryable = True
    reason = "timeout"


class FetchFailed(FetchError):
    """No connection could be made, or it broke (deliberately says no more)."""

    retryable = True
    reason = "connection"


# --- which addresses ---------------------------------------------------------------------


def parse_networks(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    """CIDRs (``10.0.0.0/8``, ``::1/128``, a bare address) as networks.

    Raises:
        ValueError: one of them is not a network.
    """
    out: list[IpNetwork] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a CIDR network") from exc
    return tuple(out)


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _normalise(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(net) for net in parse_networks(values))


#: A configuration field: CIDRs as a list or one comma-separated string (env variables).
AllowedNetworks = Annotated[tuple[str, ...], BeforeValidator(_split), AfterValidator(_normalise)]


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_allowed(address: str | IpAddress, allowed: Sequence[IpNetwork] = ()) -> bool:
    """Whether the fetcher may connect to ``address``.

    Allowed when a network of ``allowed`` contains it (or the IPv4 address it embeds);
    otherwise only globally routable unicast addresses are.
    """
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return False
    forms: list[IpAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            forms[0] = ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        embedded = _embedded_v4(ip)
        if embedded is not None:
            forms.append(embedded)
    if any(form in net for form in forms for net in allowed):
        return True
    return all(form.is_global and not form.is_multicast for form in forms)


# --- the guarded connection --------------------------------------------------------------


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself and connects only to an address it has checked."""

    def __init__(self, allowed: Sequence[IpNetwork]) -> None:
        self._allowed = tuple(allowed)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
        except (OSError, UnicodeError) as exc:
            raise FetchFailed("the host could not be resolved") from exc
        except TimeoutError as exc:
            raise FetchTimeout("resolving the host timed out") from exc
        addresses = [str(info[4][0]) for info in infos]
        vetted = [a for a in addresses if address_allowed(a, self._allowed)]
        if not vetted:
            raise FetchRefused("the host resolves to an address that is not allowed")
        last: Exception | None = None
        for address in dict.fromkeys(vetted):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                last = exc
        raise FetchFailed("could not connect to the host") from last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("unix sockets are not fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that uses :class:`_GuardedBackend`.

    httpx builds its pool with the default network backend and offers no parameter for
    another, so the pool is replaced right after construction (no proxy, no retries).
    """

    def __init__(
        self, *, allowed: Sequence[IpNetwork], limits: httpx.Limits, verify: ssl.SSLContext | bool
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=_GuardedBackend(allowed),
        )


# --- the fetcher -------------------------------------------------------------------------


def _translate(exc: httpx.HTTPError) -> FetchError:
    """httpx failures as generic :class:`FetchError`: never the server's own words."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return FetchFailed("could not connect to the host")
    if isinstance(exc, httpx.TimeoutException):
        return FetchTimeout("the server took too long")
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return FetchRefused("not a valid http(s) URL")
    return FetchFailed("the connection failed")


def _check_url(url: httpx.URL) -> None:
    if url.scheme not in {"http", "https"} or not url.host:
        raise FetchRefused("only http:// and https:// URLs with a host are fetched")
    if url.userinfo:
        raise FetchRefused("URLs with credentials are not fetched")


class SafeFetcher:
    """One httpx client behind the address guard; see the module docstring.

    Args:
        allowed_networks: CIDRs that may be connected to although not public.
        connect_timeout_s: per connection attempt (resolution included).
        read_timeout_s: per read or write.
        max_connections: the connection pool's size.
        max_redirects: redirects followed before giving up.
        pool_timeout_s: waiting for a free connection of the pool (default: connect +
            read timeout).
        verify: TLS verification (``True``: the system's CAs; or an SSL context).
    """

    def __init__(
        self,
        *,
        allowed_networks: Iterable[str] = (),
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        max_connections: int = 16,
        max_redirects: int = 5,
        pool_timeout_s: float | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.allowed_networks = parse_networks(allowed_networks)
        self.max_redirects = max_redirects
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(
                allowed=self.allowed_networks, limits=limits, verify=verify
            ),
            timeout=httpx.Timeout(
                connect=connect_timeout_s,
                read=read_timeout_s,
                write=read_timeout_s,
                pool=pool_timeout_s or connect_timeout_s + read_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> SafeFetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def stream(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        check_redirect: Callable[[httpx.URL], None] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """GET ``url`` following redirects; yields the final response, body unread.

        Args:
            url: where to start.
            headers: request headers (sent to every hop).
            check_redirect: called with each redirect target before it is followed;
                raise :class:`FetchRefused` to stop there.

        Raises:
            FetchError: refused, timed out or failed (body reads may raise
                ``httpx.HTTPError``; pass it to :meth:`translate`).
        """
        response = await self._open(url, headers or {}, check_redirect)
        try:
            yield response
        finally:
            await response.aclose()

    @staticmethod
    def translate(exc: httpx.HTTPError) -> FetchError:
        """The generic :class:`FetchError` for an httpx failure (e.g. while reading)."""
        return _translate(exc)

    async def _open(
        self,
        url: str,
        headers: dict[str, str],
        check_redirect: Callable[[httpx.URL], None] | None,
    ) -> httpx.Response:
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise FetchRefused("not a valid http(s) URL") from exc
        _check_url(current)
        for _ in range(self.max_redirects + 1):
            try:
                request = self._client.build_request("GET", current, headers=headers)
                response = await self._client.send(request, stream=True, follow_redirects=False)
            except httpx.HTTPError as exc:
                raise _translate(exc) from exc
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or location is None:
                return response
            await response.aclose()
            try:
                target = current.join(location)
            except (httpx.InvalidURL, ValueError) as exc:
                raise FetchRefused("redirect to an invalid URL refused") from exc
            if target.scheme not in {"http", "https"}:
                raise FetchRefused(f"redirect to {target.scheme or '?'}:// refused")
            if current.scheme == "https" and target.scheme == "http":
                raise FetchRefused("redirect from https to http refused")
            _check_url(target)
            if check_redirect is not None:
                check_redirect(target)
            current = target
        raise FetchRefused(f"more than {self.max_redirects} redirects")

    async def post_json(
        self, url: str, body: object, *, max_response_bytes: int = 65_536
    ) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``url`` (a webhook); returns the status and at most
        ``max_response_bytes`` of the answer. Redirects are not followed (a redirect is
        the answer), the address is checked like every other connection's.

        Raises:
            FetchError: refused, timed out or failed.
        """
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise FetchRefused("not a valid http(s) URL") from exc
        _check_url(target)
        data = b""
        try:
            request = self._client.build_request("POST", target, json=body)
            response = await self._client.send(request, stream=True, follow_redirects=False)
            try:
                async for chunk in response.aiter_raw():
                    data += chunk
                    if len(data) >= max_response_bytes:
                        break
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _translate(exc) from exc
        return response.status_code, data[:max_response_bytes]

    async def download_to(
        self, url: str, out: BinaryIO, *, max_bytes: int, total_timeout_s: float
    ) -> int:
        """GET ``url`` (status 200 required) into ``out``; returns the byte count.

        Raises:
            FetchError: refused, not 200, larger than ``max_bytes``, too slow, failed.
        """
        size = 0
        try:
            async with (
                asyncio.timeout(total_timeout_s),
                self.stream(url, headers={"accept-encoding": "identity"}) as response,
            ):
                if response.status_code != 200:
                    raise FetchFailed(f"the server answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchTooLarge(f"larger than the limit of {max_bytes} bytes")
                async for chunk in response.aiter_raw(1 << 20):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchTooLarge(f"larger than the limit of {max_bytes} bytes")
                    await asyncio.to_thread(out.write, chunk)
        except TimeoutError as exc:
            raise FetchTimeout(f"not done within {total_timeout_s:g}s") from exc
        except httpx.HTTPError as exc:
            raise _translate(exc) from exc
        return size
