"""Keeps URLs given in Discord away from private, loopback and other internal addresses.

Two checks, both needed:

* :func:`check_url` judges the host the HTTP client will really use. It parses the URL
  once with yarl (what aiohttp uses), so the host it judges is the one after IDNA/UTS-46
  mapping (``１２７．０．０．２`` is ``127.0.0.2`` by then), and it returns that parsed URL:
  the fetcher hands this very object to aiohttp, so what was judged is what is fetched.
  A host that is an IPv4 address in any spelling (Unicode digits or dots, decimal
  ``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.1``, short ``127.1``, a trailing dot)
  is read with the rules ``inet_aton`` uses, judged, and refused unless written as a
  plain ``a.b.c.d``; an IPv6 literal is judged with the IPv4 address it embeds, if any.
* :class:`GuardedResolver` judges every address a *name* resolves to at connect time,
  and the connection is made to the address that was checked (the resolver itself
  filters), so a name that resolves to 127.0.0.1 or a DNS answer that changes between
  check and use (rebinding) is refused.
"""

from __future__ import annotations

import ipaddress
import socket
import string
import unicodedata
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from bot.errors import UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Range(NamedTuple):
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    what: str  # completes "<address> is ..."
    detail: str  # the registry's name for the range, when "what" does not say it
    source: str  # the RFC that assigns it

    def describe(self, shown: str) -> str:
        where = ", ".join(x for x in (self.detail, str(self.network), self.source) if x)
        return f"{shown} is {self.what} ({where})"


def _ranges(*rows: tuple[str, str, str, str]) -> tuple[Range, ...]:
    table = [Range(ipaddress.ip_network(net), what, detail, source) for net, what, detail, source in rows]
    return tuple(sorted(table, key=lambda r: -r.network.prefixlen))  # the most specific range names an address


# Every range of the IANA IPv4 Special-Purpose Address Registry
# (https://www.iana.org/assignments/iana-ipv4-special-registry, RFC 6890) that is not
# globally reachable, plus multicast (IANA IPv4 Multicast Address Space Registry, RFC 5771)
# and the deprecated 6to4 relay anycast block. 192.0.0.0/24 is refused whole: the two
# anycast addresses in it that are reachable (192.0.0.9 PCP, 192.0.0.10 TURN) serve no feeds.
# The globally reachable entries (192.31.196.0/24 and 192.175.48.0/24 AS112, 192.52.193.0/24
# AMT) are public addresses and stay allowed.
SPECIAL_PURPOSE_IPV4 = _ranges(
    ("0.0.0.0/8", "a 'this network' address", "", "RFC 791"),
    ("0.0.0.0/32", "an unspecified address", "", "RFC 1122"),
    ("10.0.0.0/8", "a private address", "", "RFC 1918"),
    ("100.64.0.0/10", "a private address", "shared carrier-grade NAT space", "RFC 6598"),
    ("127.0.0.0/8", "a loopback address", "", "RFC 1122"),
    ("169.254.0.0/16", "a link-local address", "", "RFC 3927"),
    ("172.16.0.0/12", "a private address", "", "RFC 1918"),
    ("192.0.0.0/24", "a private address", "IETF protocol assignments", "RFC 6890"),
    ("192.0.0.0/29", "a private address", "IPv4 service continuity prefix", "RFC 7335"),
    ("192.0.0.8/32", "a private address", "IPv4 dummy address", "RFC 7600"),
    ("192.0.0.170/31", "a private address", "NAT64/DNS64 discovery", "RFC 8880"),
    ("192.0.2.0/24", "a documentation address", "TEST-NET-1", "RFC 5737"),
    ("192.88.99.0/24", "a reserved address", "deprecated 6to4 relay anycast", "RFC 7526"),
    ("192.168.0.0/16", "a private address", "", "RFC 1918"),
    ("198.18.0.0/15", "a private address", "benchmarking", "RFC 2544"),
    ("198.51.100.0/24", "a documentation address", "TEST-NET-2", "RFC 5737"),
    ("203.0.113.0/24", "a documentation address", "TEST-NET-3", "RFC 5737"),
    ("224.0.0.0/4", "a multicast address", "", "RFC 5771"),
    ("240.0.0.0/4", "a reserved address", "", "RFC 1112"),
    ("255.255.255.255/32", "a broadcast address", "", "RFC 919"),
)

# Every range of the IANA IPv6 Special-Purpose Address Registry
# (https://www.iana.org/assignments/iana-ipv6-special-registry, RFC 6890) that is not
# globally reachable, plus multicast, the deprecated site-local and IPv4-compatible blocks.
# 2001::/23 is refused whole, with the few reachable anycast/AMT/AS112/ORCHIDv2/DET blocks
# inside it: they serve no feeds. Ranges that embed an IPv4 address (IPv4-mapped
# ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that address instead,
# see address_problem. The globally reachable 2620:4f:8000::/48 (AS112) stays allowed, and
# anything outside the global unicast range 2000::/3 is refused after this table.
SPECIAL_PURPOSE_IPV6 = _ranges(
    ("::/128", "an unspecified address", "", "RFC 4291"),
    ("::1/128", "a loopback address", "", "RFC 4291"),
    ("::/96", "a reserved address", "deprecated IPv4-compatible", "RFC 4291"),
    ("64:ff9b:1::/48", "a private address", "local-use IPv4/IPv6 translation", "RFC 8215"),
    ("100::/64", "a reserved address", "discard-only", "RFC 6666"),
    ("100:0:0:1::/64", "a reserved address", "dummy prefix", "RFC 9780"),
    ("2001::/23", "a reserved address", "IETF protocol assignments", "RFC 2928"),
    ("2001::/32", "a Teredo tunnel address", "", "RFC 4380"),
    ("2001:2::/48", "a private address", "benchmarking", "RFC 5180"),
    ("2001:10::/28", "a reserved address", "deprecated ORCHID", "RFC 4843"),
    ("2001:db8::/32", "a documentation address", "", "RFC 3849"),
    ("3fff::/20", "a documentation address", "", "RFC 9637"),
    ("5f00::/16", "a reserved address", "SRv6 segment identifiers", "RFC 9602"),
    ("fc00::/7", "a private address", "unique local", "RFC 4193"),
    ("fe80::/10", "a link-local address", "", "RFC 4291"),
    ("fec0::/10", "a site-local address", "deprecated", "RFC 3879"),
    ("ff00::/8", "a multicast address", "", "RFC 4291"),
)

GLOBAL_UNICAST_IPV6 = ipaddress.ip_network("2000::/3")  # RFC 4291 section 2.4: every other prefix is reserved
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address

LOCAL_NAMES = ("localhost",)
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
MAX_HOST_LENGTH = 253  # RFC 1035: a name's text form is at most 253 characters
MAX_LABEL_LENGTH = 63  # RFC 1035
HOST_NAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_.")
# Label separators that IDNA (UTS #46 and IDNA2003) maps to "." besides NFKC: ideographic
# full stop, fullwidth full stop, halfwidth ideographic full stop.
LABEL_DOTS = {"\u3002": ".", "\uff0e": ".", "\uff61": "."}
IPV4_OCTETS = 4
OCTET_MAX = 0xFF
HEX_DIGITS = frozenset(string.hexdigits)
OCT_DIGITS = frozenset(string.octdigits)
DEC_DIGITS = frozenset(string.digits)


def address_problem(ip: str) -> str | None:
    """Why an address may not be fetched, or None when it is public."""
    text, _, zone = ip.partition("%")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return f"{ip} is not an IP address"
    if zone:
        return f"{ip} is a scoped address (zone {zone}): it can only be local"
    return _problem(addr, ip)


def _problem(addr: IPAddress, shown: str) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address):
        embedded, how = _embedded_ipv4(addr)
        if embedded is not None:
            inner = _problem(embedded, str(embedded))
            return f"{shown} is {how} {embedded}, and {inner}" if inner else None
        table: tuple[Range, ...] = SPECIAL_PURPOSE_IPV6
    else:
        table = SPECIAL_PURPOSE_IPV4
    for r in table:
        if addr in r.network:
            return r.describe(shown)
    if isinstance(addr, ipaddress.IPv6Address) and addr not in GLOBAL_UNICAST_IPV6:
        return f"{shown} is a reserved address (outside the global unicast range {GLOBAL_UNICAST_IPV6})"
    if not addr.is_global:  # a backstop for ranges registered after this table was written
        return f"{shown} is not a public address"
    return None


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address | None, str]:
    """The IPv4 address an IPv6 address carries traffic to, and how it is embedded."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped, "IPv4-mapped: it reaches"
    if addr in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(addr.packed[-4:]), "a NAT64 address: it reaches"
    if addr.sixtofour is not None:
        return addr.sixtofour, "a 6to4 address: it reaches"
    return None, ""


# --- hosts ------------------------------------------------------------------------------------


def fold_host(host: str) -> str:
    """A host as IDNA would read its digits and dots: NFKC (fullwidth, circled and
    mathematical digits become ASCII), every other Unicode digit (Arabic-Indic, dingbat
    circled ...) as its ASCII digit, the IDNA label separators as ".", lower case."""
    out = []
    for ch in unicodedata.normalize("NFKC", host):
        ch = LABEL_DOTS.get(ch, ch)
        if not ch.isascii():
            value = unicodedata.digit(ch, None)
            if value is not None:
                ch = str(value)
        out.append(ch)
    return "".join(out).lower()


def _number_label(label: str) -> tuple[str, frozenset[str], int]:
    """(digits, the digits allowed, base) of one label read like ``inet_aton``: 0x hex,
    leading-0 octal, else decimal."""
    if label[:2] in ("0x", "0X"):
        return label[2:], HEX_DIGITS, 16
    if len(label) > 1 and label[0] == "0":
        return label[1:], OCT_DIGITS, 8
    return label, DEC_DIGITS, 10


def _is_number(label: str) -> bool:
    """A label that reads as a number: ASCII digits, or 0x and hex digits."""
    if label[:2] in ("0x", "0X"):
        return set(label[2:]) <= HEX_DIGITS
    return bool(label) and set(label) <= DEC_DIGITS


def ends_in_number(host: str) -> bool:
    """True when a host (trailing dots removed) would be read as an IPv4 address: its last
    label is a number (the WHATWG URL Standard's "ends in a number" rule; ``inet_aton``
    accepts the same forms)."""
    labels = host.split(".")
    return _is_number(labels[-1])


def parse_ipv4_number(host: str) -> ipaddress.IPv4Address | None:
    """The address ``inet_aton`` reads in ``host`` (``2130706433``, ``0177.0.0.1``,
    ``0x7f.1``, ``127.1`` ...), or None when it is not a valid IPv4 spelling."""
    labels = host.split(".")
    if not 1 <= len(labels) <= IPV4_OCTETS:
        return None
    values = []
    for label in labels:
        if not label:
            return None
        digits, allowed, base = _number_label(label)
        if not digits or not set(digits) <= allowed:  # "0x" alone is not a number to inet_aton
            return None
        values.append(int(digits, base))
    *head, last = values
    if any(v > OCTET_MAX for v in head) or last >= 1 << (8 * (IPV4_OCTETS - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (IPV4_OCTETS - 1 - i))
    return ipaddress.IPv4Address(number)


def _judge_numeric(host: str, shown: str) -> None:
    """Refuses a host that ends in a number unless it is a public a.b.c.d written plainly."""
    addr = parse_ipv4_number(host.rstrip("."))
    if addr is None:
        raise UnsafeURL(f"{shown} is not a valid host (it reads as an IPv4 address, but is not one)")
    problem = _problem(addr, str(addr))
    if problem:
        raise UnsafeURL(problem if shown == str(addr) else f"{shown} means {addr}, and {problem}")
    if shown != str(addr):
        raise UnsafeURL(f"{shown} is not a valid host: write the address as {addr}")


def _judge_host(raw_host: str) -> None:
    """Judges the host aiohttp connects to (yarl's ``raw_host``: IDNA-encoded, brackets off)."""
    if ":" in raw_host:  # an IPv6 literal (yarl has validated it); a zone id comes percent-encoded
        problem = address_problem(raw_host.replace("%25", "%", 1))
        if problem:
            raise UnsafeURL(problem)
        return
    if len(raw_host) > MAX_HOST_LENGTH:
        raise UnsafeURL(f"the host name is longer than {MAX_HOST_LENGTH} characters")
    host = raw_host.lower()
    name = host.rstrip(".")  # aiohttp keeps one trailing dot; the name is the same
    labels = name.split(".")
    if not name or not set(host) <= HOST_NAME_CHARS or any(not lb or len(lb) > MAX_LABEL_LENGTH for lb in labels):
        raise UnsafeURL(f"{raw_host[:MAX_HOST_LENGTH]!r} is not a valid host name")
    if ends_in_number(name):
        _judge_numeric(host, raw_host)
        return
    if name in LOCAL_NAMES or name.endswith(LOCAL_SUFFIXES):
        raise UnsafeURL(f"{name} is a local name")


def _prejudge_text_host(text: str) -> None:
    """Judges the host as written, folded like IDNA reads digits and dots, so that a
    spelling yarl's IDNA step leaves as a name (Arabic-Indic digits ...) is still read as
    the address another resolver might make of it."""
    try:
        host = urlsplit(text).hostname
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if not host or ":" in host or len(host) > MAX_HOST_LENGTH:
        return  # no host, an IPv6 literal or an overlong name: the yarl-side check decides
    folded = fold_host(host).rstrip(".")
    if folded and folded.isascii() and ends_in_number(folded):
        _judge_numeric(folded, host)


def check_url(url: str | URL, *, allow_private: bool = False, allow_file: bool = False,
              base: URL | None = None) -> URL:
    """Judges a URL (relative to ``base`` when given, as a redirect Location is) and returns
    it parsed: pass *that* object to aiohttp, so that the host judged is the host fetched.
    Raises UnsafeURL with the reason."""
    text = str(url)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # undecodable header bytes arrive as lone surrogates
            raise UnsafeURL("not a valid URL: it holds bytes that are not UTF-8 text") from None
    try:
        parsed = url if isinstance(url, URL) else URL(text)
        if base is not None:
            parsed = base.join(parsed)
        host = parsed.raw_host
        parsed.port  # noqa: B018 - raises on a bad port
    except (ValueError, UnicodeError) as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    scheme = (parsed.scheme or "").lower()
    if scheme == "file":
        if allow_file:
            return parsed
        raise UnsafeURL("file: URLs are allowed only in the config file")
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs can be fetched, not {scheme or 'a URL without scheme'}")
    if not host:
        raise UnsafeURL("the URL has no host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise UnsafeURL("URLs with a user name or password are not accepted")
    if allow_private:
        return parsed
    _prejudge_text_host(text)
    _judge_host(host)
    return parsed


class GuardedResolver(AbstractResolver):
    """Resolves names, then drops every address that is not public. Raises UnsafeURL
    (wrapped by aiohttp in a connection error) when nothing public is left."""

    def __init__(self, inner: AbstractResolver | None = None, *, allowed: frozenset[str] = frozenset()) -> None:
        self._inner = inner or DefaultResolver()
        self._allowed = allowed  # addresses treated as public (tests stand public hosts up on 127.0.0.x)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
    ) -> list[ResolveResult]:
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
