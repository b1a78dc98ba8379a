"""Keeps URLs given in Discord away from private, loopback and other internal addresses.

The check runs on every resolved address of every hop, and the connection is
made to the address that was checked (the resolver itself filters), so a name
that resolves to 127.0.0.1, a redirect to 10.0.0.1 or a DNS answer that changes
between check and use (rebinding) is refused.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bot.errors import UnsafeURL

_EXTRA_BLOCKED = [
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("64:ff9b:1::/48"),
]


def address_problem(ip: str) -> str | None:
    """Why an address may not be fetched, or None when it is public."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return f"{ip} is not an IP address"
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped or addr.sixtofour
        if mapped is not None:
            return address_problem(str(mapped))
        if addr.teredo:
            return f"{ip} is a Teredo tunnel address"
    if addr.is_loopback:
        return f"{ip} is a loopback address"
    if addr.is_link_local:
        return f"{ip} is a link-local address"
    if addr.is_multicast:
        return f"{ip} is a multicast address"
    if addr.is_unspecified:
        return f"{ip} is an unspecified address"
    if addr.is_reserved:
        return f"{ip} is a reserved address"
    if addr.is_private or any(addr in net for net in _EXTRA_BLOCKED):
        return f"{ip} is a private address"
    if not addr.is_global:
        return f"{ip} is not a public address"
    return None


def check_url(url: str, *, allow_private: bool = False, allow_file: bool = False) -> None:
    """Static checks of a URL: scheme, host, and a literal IP. Raises UnsafeURL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if allow_file:
            return
        raise UnsafeURL("file: URLs are allowed only in the config file")
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs can be fetched, not {scheme or 'a URL without scheme'}")
    if not host:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("URLs with a user name or password are not accepted")
    if allow_private:
        return
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith((".localhost", ".local", ".internal", ".localdomain")):
        raise UnsafeURL(f"{host} is a local name")
    try:
        ipaddress.ip_address(lowered.strip("[]"))
    except ValueError:
        return
    problem = address_problem(lowered.strip("[]"))
    if problem:
        raise UnsafeURL(problem)


class GuardedResolver(AbstractResolver):
    """Resolves names, then drops every address that is not public. Raises UnsafeURL
    (wrapped by aiohttp in a connection error) when nothing public is left."""

    def __init__(self, inner: AbstractResolver | None = None, *, allowed: frozenset[str] = frozenset()) -> None:
        self._inner = inner or DefaultResolver()
        self._allowed = allowed  # addresses treated as public (tests stand public hosts up on 127.0.0.x)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        problems: list[str] = []
        for r in results:
            problem = None if r["host"] in self._allowed else address_problem(r["host"])
            if problem:
                problems.append(problem)
            else:
                allowed.append(r)
        if not allowed:
            raise UnsafeURL(f"{host} resolves to a refused address ({'; '.join(dict.fromkeys(problems)) or 'none'})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def unsafe_cause(exc: BaseException) -> UnsafeURL | None:
    """Finds an UnsafeURL in an exception's causes (aiohttp wraps resolver errors)."""
    seen: set[int] = set()
    cur: Any = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, UnsafeURL):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
