"""Fetching feeds over HTTP: the network edge of the pipeline."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from bot import USER_AGENT
from bot.errors import FeedGone, FetchError, FetchTimeout, TooLarge, UnsafeURL
from bot.netguard import GuardedResolver, check_url, unsafe_cause

MAX_REDIRECTS = 5
# Herald decompresses bodies itself (see Fetcher._read_capped), so it offers only what it decodes.
ACCEPT_ENCODING = "gzip, deflate"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
)


class RefusedURL(FetchError, UnsafeURL):
    """The guard refused the URL of a fetch. Both a FetchError, so that a stored feed whose
    URL is refused fails like any feed (recorded, retried with backoff, paused in time),
    and an UnsafeURL, so that callers validating a URL can tell it from a network failure."""


@dataclass(slots=True)
class FetchResult:
    status: int  # 200 (body present) or 304 (not modified)
    url: str  # the URL finally fetched
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lowercase keys
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None  # set when every redirect on the way was permanent (301/308)

    @property
    def body_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def _inflater(encoding: str, head: bytes) -> zlib._Decompress | None:
    """A decompressor for a Content-Encoding (``head``: the body's first bytes), None for none."""
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":  # zlib-wrapped as the RFC says; some servers send raw deflate or gzip
        if head[:1] == b"\x1f" or (head[:1] and head[0] & 0x0F == 8):
            return zlib.decompressobj(32 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS)
    raise FetchError(f"unsupported Content-Encoding {encoding!r} (Herald asks for {ACCEPT_ENCODING})")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds, from delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class Fetcher:
    """One shared aiohttp session per trust level, with global and per-host limits."""

    def __init__(
        self, *, timeout: float = 20.0, max_bytes: int = 5_000_000, concurrency: int = 32, per_host: int = 4,
        allow_private: bool = False, user_agent: str = USER_AGENT,
        resolver: AbstractResolver | None = None, public_addresses: frozenset[str] = frozenset(),
    ) -> None:
        """``resolver`` replaces DNS (tests); ``public_addresses`` are treated as public by the guard (tests)."""
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.per_host = per_host
        self.allow_private = allow_private
        self.user_agent = user_agent
        self._global = asyncio.Semaphore(concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._concurrency = concurrency
        self._resolver = resolver
        self._public_addresses = public_addresses

    def _session(self, guarded: bool) -> aiohttp.ClientSession:
        guarded = guarded and not self.allow_private
        session = self._sessions.get(guarded)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._concurrency, limit_per_host=self.per_host, ttl_dns_cache=300,
                resolver=GuardedResolver(self._resolver, allowed=self._public_addresses) if guarded else self._resolver,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING},
                auto_decompress=False, trust_env=False,
            )
            self._sessions[guarded] = session
        return session

    async def close(self) -> None:
        for s in self._sessions.values():
            await s.close()
        self._sessions.clear()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None, guarded: bool = True,
        allow_file: bool = False,
    ) -> FetchResult:
        """GET a feed. Raises FetchError (or a subclass) on any failure.

        ``guarded`` applies the private-address guard (feeds added from Discord);
        ``allow_file`` permits file: URLs (feeds from the config file).
        """
        # the URL as judged is the object aiohttp gets: no second parse can see another host
        try:
            target = check_url(url, allow_private=self.allow_private or not guarded, allow_file=allow_file)
        except UnsafeURL as exc:
            raise RefusedURL(f"refused: {exc}") from None
        if target.scheme == "file":
            return await self._fetch_file(url)
        host = target.raw_host or ""
        sem = self._hosts.setdefault(host, asyncio.Semaphore(self.per_host))
        async with self._global, sem:
            try:
                return await asyncio.wait_for(self._get(url, target, etag, last_modified, guarded), self.timeout)
            except asyncio.TimeoutError:
                raise FetchTimeout(f"timed out after {self.timeout:g}s") from None

    async def _get(self, url: str, target: URL, etag: str | None, last_modified: str | None,
                   guarded: bool) -> FetchResult:
        """GETs ``target`` (``url`` judged and parsed), judging and following redirects itself."""
        session = self._session(guarded)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        current = url  # the URL as reported back: the one given, then each hop's as judged
        permanent: str | None = None
        all_permanent = True
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                async with session.get(target, headers=headers, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        location = resp.headers.get("Location")
                        if not location:
                            raise FetchError(f"HTTP {resp.status} redirect without a Location", status=resp.status)
                        # aiohttp decodes header bytes as UTF-8 (lone surrogates for the rest);
                        # the Location is judged relative to this hop, and the judged URL fetched
                        try:
                            target = check_url(location, allow_private=self.allow_private or not guarded, base=target)
                        except UnsafeURL as exc:
                            raise FetchError(f"redirect to a refused URL: {exc}", status=resp.status) from None
                        current = str(target)
                        all_permanent = all_permanent and resp.status in (301, 308)
                        permanent = current if all_permanent else None
                        continue
                    if resp.status == 304:
                        return FetchResult(304, current, permanent_url=permanent, etag=etag,
                                           last_modified=last_modified)
                    if resp.status == 410:
                        raise FeedGone("HTTP 410 Gone: the feed was removed", status=410)
                    if resp.status in (429, 503):
                        ra = parse_retry_after(resp.headers.get("Retry-After"))
                        raise FetchError(f"HTTP {resp.status}" + (f", retry after {ra:.0f}s" if ra else ""),
                                         status=resp.status, retry_after=ra)
                    if resp.status >= 400:
                        raise FetchError(f"HTTP {resp.status} {resp.reason or ''}".strip(), status=resp.status)
                    if resp.status != 200:
                        raise FetchError(f"unexpected HTTP {resp.status}", status=resp.status)
                    declared = resp.content_length
                    if declared is not None and declared > self.max_bytes and "Content-Encoding" not in resp.headers:
                        raise TooLarge(f"response of {declared} bytes is over max_bytes ({self.max_bytes})")
                    body = await self._read_capped(resp)
                    lower = {k.lower(): v for k, v in resp.headers.items()}
                    lower.pop("content-encoding", None)  # the body is already decoded
                    lower.pop("content-length", None)
                    return FetchResult(
                        200, current, body=body, headers=lower, etag=resp.headers.get("ETag"),
                        last_modified=resp.headers.get("Last-Modified"), permanent_url=permanent,
                    )
            except FetchError:
                raise
            except (aiohttp.ClientError, OSError, UnsafeURL) as exc:
                unsafe = unsafe_cause(exc)
                if unsafe is not None:
                    raise RefusedURL(f"refused: {unsafe}") from None
                raise FetchError(f"{type(exc).__name__}: {exc}") from None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, decompressed here rather than by aiohttp: each network chunk is inflated
        at most up to what max_bytes still allows, so a gzip bomb (1 GB of zeros in 1 MB)
        costs max_bytes of memory, whatever aiohttp version decodes the HTTP around it."""
        encoding = resp.headers.get("Content-Encoding", "")
        inflater: zlib._Decompress | None = None
        chunks: list[bytes] = []
        size = 0
        started = False
        async for chunk in resp.content.iter_chunked(65536):
            if not started and chunk:
                inflater, started = _inflater(encoding, chunk), True
            data = chunk
            while data:
                if inflater is None:
                    piece, data = data, b""
                else:
                    try:
                        piece = inflater.decompress(data, self.max_bytes - size + 1)
                    except zlib.error as exc:
                        raise FetchError(f"the body is not valid {encoding} data ({exc})") from None
                    data = inflater.unconsumed_tail
                size += len(piece)
                if size > self.max_bytes:
                    raise TooLarge(f"response is over max_bytes ({self.max_bytes} bytes)")
                chunks.append(piece)
                if inflater is not None and inflater.eof:
                    break
            if inflater is not None and inflater.eof:
                break  # whatever follows the end of the compressed stream is not read
        if not started:
            _inflater(encoding, b"")  # an empty body: still refuse an encoding Herald cannot decode
        elif inflater is not None and not inflater.eof:
            raise FetchError("the compressed body ended before its end marker (truncated response)")
        return b"".join(chunks)

    async def _fetch_file(self, url: str) -> FetchResult:
        path = Path(url2pathname(urlsplit(url).path))

        def read() -> bytes:
            st = path.stat()
            if st.st_size > self.max_bytes:
                raise TooLarge(f"file of {st.st_size} bytes is over max_bytes ({self.max_bytes})")
            return path.read_bytes()

        try:
            body = await asyncio.to_thread(read)
        except FileNotFoundError:
            raise FetchError(f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror}") from None
        # no 304 for files: a change within the same second keeps the mtime; the body hash decides
        return FetchResult(200, url, body=body, headers={"content-type": "application/xml"})
