"""A feed server that misbehaves on purpose, for the fault tests.

:class:`HostileServer` is a :class:`tests.feedserver.FeedServer` (127.0.0.1, an ephemeral
port, every answered request counted) with extra routes that fail the ways real feed
servers fail: error statuses with and without Retry-After, connections that hang before
the headers, bodies that trickle or never end, bodies over the size limit, a gzip bomb,
redirect loops and redirects to internal addresses, and documents that are not quite
feeds. The body builders at the bottom make the odd documents (BOMs, wrong charsets,
truncated XML, an entity feedparser chokes on, 10,000 entries, 5 MB entries).

Handlers that never finish on their own (hang, trickle, infinite) stop when the server
closes, so ``close()`` never waits for them. ``arrived(path)`` counts requests when they
*reach* a handler, which the base class cannot do for a request that never gets an answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import struct
import time
import zlib
from collections import Counter
from typing import Any, AsyncIterator, Iterable

import pytest
from aiohttp import web

from tests.feedserver import FeedServer, rss

RSS_TYPE = "application/rss+xml; charset=utf-8"
ZERO_BLOCK = bytes(1 << 20)  # 1 MiB of zeros, compressed on the fly by the bomb


class HostileServer(FeedServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self._closing = asyncio.Event()
        self._arrived: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()  # body bytes written by the streaming routes
        self.finished: Counter[str] = Counter()  # streaming answers that ended because the client went away

    async def close(self) -> None:
        self._closing.set()  # lets hanging and streaming handlers return before the runner waits for them
        await super().close()

    def arrived(self, path: str) -> int:
        return self._arrived["/" + path.lstrip("/")]

    async def wait_arrived(self, path: str, n: int = 1, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self.arrived(path) >= n, timeout)

    async def _note_arrival(self, path: str) -> None:
        self._arrived["/" + path.lstrip("/")] += 1
        async with self.changed:
            self.changed.notify_all()

    # --- error statuses ------------------------------------------------------------------------

    def error(self, path: str, status: int, *, retry_after: str | float | None = None, body: str = "") -> None:
        """Every request answered ``status``; ``retry_after`` as seconds or an HTTP date."""
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after if isinstance(retry_after, str) else str(int(retry_after))
        self.set_status(path, status, body or f"HTTP {status}", headers=headers)

    @staticmethod
    def http_date(seconds_from_now: float) -> str:
        return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)

    # --- connections that never finish ---------------------------------------------------------

    def hang(self, path: str) -> None:
        """Accepts the request and never sends the status line or headers."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._note_arrival(path)
            await self._closing.wait()
            return web.Response(status=503, text="server closing")

        self.set_handler(path, handler)

    def trickle(self, path: str, body: bytes, *, interval: float = 1.0) -> None:
        """Sends headers at once, then the body one byte per ``interval`` seconds."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._note_arrival(path)
            resp = web.StreamResponse(headers={"Content-Type": RSS_TYPE})
            resp.content_length = len(body)
            await resp.prepare(request)
            try:
                for i in range(len(body)):
                    await resp.write(body[i:i + 1])
                    self.bytes_sent[path] += 1
                    if await _closing_within(self._closing, interval):
                        break
            except (ConnectionError, RuntimeError):
                self.finished[path] += 1
            return resp

        self.set_handler(path, handler)

    def infinite(self, path: str, *, chunk: int = 64 * 1024) -> None:
        """A 200 whose chunked body never ends (until the client hangs up)."""
        data = (b"<!-- " + b"x" * chunk + b" -->\n")[:chunk]

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._note_arrival(path)
            resp = web.StreamResponse(headers={"Content-Type": RSS_TYPE})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                await resp.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
                while not self._closing.is_set():
                    await resp.write(data)
                    self.bytes_sent[path] += len(data)
            except (ConnectionError, RuntimeError):
                self.finished[path] += 1
            return resp

        self.set_handler(path, handler)

    def oversized(self, path: str, size: int, *, declare_length: bool = True) -> None:
        """A body of ``size`` bytes, written lazily; with ``declare_length`` its Content-Length says so."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._note_arrival(path)
            resp = web.StreamResponse(headers={"Content-Type": RSS_TYPE})
            if declare_length:
                resp.content_length = size
            else:
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            sent = 0
            try:
                while sent < size and not self._closing.is_set():
                    n = min(65536, size - sent)
                    await resp.write(b" " * n)
                    sent += n
                    self.bytes_sent[path] += n
            except (ConnectionError, RuntimeError):
                self.finished[path] += 1
            return resp

        self.set_handler(path, handler)

    def gzip_bomb(self, path: str, *, decompressed: int = 1 << 30, encoding: str = "gzip") -> None:
        """``decompressed`` bytes (about 1 GiB) of zeros after an RSS prologue, gzip (or zlib
        "deflate") compressed about 1000:1. The stream is built lazily from one precompressed
        1 MiB block repeated (each ends in a full flush, so copies are valid on their own):
        the server never holds more than that block, and spends no CPU compressing a gigabyte."""
        prologue, block, trailer = _bomb_parts(encoding, decompressed)

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._note_arrival(path)
            resp = web.StreamResponse(headers={"Content-Type": RSS_TYPE, "Content-Encoding": encoding})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                await resp.write(prologue)
                # 64 blocks a write: a 64 KiB network chunk that inflates to 64 MiB at once
                group = block * min(64, max(1, decompressed // len(ZERO_BLOCK)))
                blocks = decompressed // len(ZERO_BLOCK)
                for _ in range(blocks // (len(group) // len(block))):
                    if self._closing.is_set():
                        break
                    await resp.write(group)
                    self.bytes_sent[path] += len(group)
                    await asyncio.sleep(0)  # the client shares this event loop in tests
                else:
                    await resp.write(trailer())
            except (ConnectionError, RuntimeError):
                self.finished[path] += 1
            return resp

        self.set_handler(path, handler)

    # --- redirects -----------------------------------------------------------------------------

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answers ``status`` with ``Location: location`` (relative or absolute)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._note_arrival(path)
            return web.Response(status=status, headers={"Location": location})

        self.set_handler(path, handler)

    def redirect_loop(self, a: str, b: str) -> None:
        self.redirect(a, b)
        self.redirect(b, a)

    # --- odd documents ---------------------------------------------------------------------------

    def ignores_conditional(self, path: str, body: bytes, content_type: str = RSS_TYPE) -> None:
        """200 with the full body every time, whatever If-None-Match / If-Modified-Since say."""
        self.set(path, body, content_type, etag='"fixed"', last_modified=self.http_date(-3600),
                 honour_conditional=False)

    def changing_etag(self, path: str, body: bytes) -> None:
        """The same body under a new ETag on every request (some CDNs do this)."""
        counter = [0]

        async def handler(request: web.Request) -> web.StreamResponse:
            await self._note_arrival(path)
            counter[0] += 1
            return web.Response(body=body, headers={"Content-Type": RSS_TYPE, "ETag": f'"v{counter[0]}"'})

        self.set_handler(path, handler)

    def serve(self, path: str, body: bytes, content_type: str = RSS_TYPE, **kw: Any) -> None:
        """A well-behaved route (conditional GET honoured)."""
        self.set(path, body, content_type, **kw)


_PROLOGUE = b'<?xml version="1.0"?><rss version="2.0"><channel><title>'


def _bomb_parts(encoding: str, decompressed: int) -> tuple[bytes, bytes, Any]:
    """(compressed prologue, compressed 1 MiB zero block, a function giving the end of the stream)."""
    gzip = encoding == "gzip"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31 if gzip else 15)
    prologue = comp.compress(_PROLOGUE) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(ZERO_BLOCK) + comp.flush(zlib.Z_FULL_FLUSH)
    blocks = decompressed // len(ZERO_BLOCK)

    def trailer() -> bytes:  # an empty final block, then the checksum of everything (computed only if reached)
        check = zlib.crc32(_PROLOGUE) if gzip else zlib.adler32(_PROLOGUE)
        for _ in range(blocks):
            check = zlib.crc32(ZERO_BLOCK, check) if gzip else zlib.adler32(ZERO_BLOCK, check)
        size = len(_PROLOGUE) + blocks * len(ZERO_BLOCK)
        return b"\x03\x00" + (struct.pack("<II", check, size & 0xFFFFFFFF) if gzip else struct.pack(">I", check))

    return prologue, block, trailer


async def _closing_within(event: asyncio.Event, seconds: float) -> bool:
    """Paces a streaming handler: True when the server started closing within ``seconds``."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


# --- bodies ----------------------------------------------------------------------------------------

BASE_TIME = 1_700_000_000.0


def items(numbers: Iterable[int], *, prefix: str = "Post", guid: str | None = "post-{n}", dated: bool = True,
          link: str = "https://blog.example/posts/{n}/", start: float = BASE_TIME, body: str | None = None) -> list[dict]:
    """Items numbered ``numbers`` (higher is newer, an hour apart), newest first as feeds write them."""
    out = []
    for n in sorted(numbers, reverse=True):
        out.append({
            "title": f"{prefix} {n}",
            "link": link.format(n=n),
            "guid": guid.format(n=n) if guid else None,
            "date": start + n * 3600.0 if dated else None,
            "description": body if body is not None else f"<p>Body of {prefix.lower()} {n}.</p>",
        })
    return out


def feed(numbers: Iterable[int], **kw: Any) -> bytes:
    title = kw.pop("title", "Hostile test feed")
    return rss(items(numbers, **kw), title=title)


def html_page() -> bytes:
    return (b"<!DOCTYPE html><html><head><title>Welcome</title></head>"
            b"<body><h1>This is a blog, not a feed</h1><p>Nothing to see.</p></body></html>")


def truncated(body: bytes, fraction: float = 0.6) -> bytes:
    """The document cut off part-way (a generator that crashed while writing)."""
    return body[: int(len(body) * fraction)]


def with_bom(body: bytes) -> bytes:
    return b"\xef\xbb\xbf" + body


def with_leading_whitespace(body: bytes) -> bytes:
    return b"\n\n   \t\n" + body


def latin1_declared_utf8(numbers: Iterable[int]) -> bytes:
    """Titles with accents, encoded in Latin-1 while the XML declaration says UTF-8."""
    text = rss(items(numbers, prefix="Café"), title="Café feed").decode("utf-8")
    return text.encode("latin-1")


def without_charset_declaration(numbers: Iterable[int]) -> bytes:
    body = feed(numbers, prefix="Naïve")
    return body.replace(b'<?xml version="1.0" encoding="utf-8"?>', b"", 1)


def bad_entity(numbers: Iterable[int]) -> bytes:
    """An out-of-range character reference (U+110000 does not exist) in one title."""
    its = items(numbers)
    its[0]["title"] = "Broken MARKER"
    return rss(its).replace(b"Broken MARKER", b"Broken &#1114112; entity")


def huge_entries(numbers: Iterable[int], size: int = 5_000_000) -> bytes:
    """Entries whose description is ``size`` bytes of (escaped) HTML each."""
    paragraph = "<p>" + "word " * 200 + "</p>"
    text = (paragraph * (size // len(paragraph) + 1))[:size]
    return rss(items(numbers, body=text))


def many_entries(n: int = 10_000) -> bytes:
    return feed(range(n))


@pytest.fixture
async def server() -> AsyncIterator[HostileServer]:
    """A started HostileServer, closed after the test (import this name into a test module)."""
    s = HostileServer()
    await s.start()
    try:
        yield s
    finally:
        await s.close()
