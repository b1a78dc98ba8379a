"""A small local feed server for tests: aiohttp on 127.0.0.1, an ephemeral port.

Usage::

    server = await FeedServer().start()
    server.set("/feed.xml", body, etag="auto")          # 200, honours If-None-Match
    url = server.url("/feed.xml")
    ...
    await server.wait_for_requests("/feed.xml", 2)      # no sleeping
    assert server.status_counts("/feed.xml")[304] == 1
    await server.close()

Every request is counted per path (query strings ignored), with the status it was
answered with and its headers, and a condition is notified after each answer so a
test can wait for "n requests so far" with a timeout instead of sleeping.

Routes are plain :class:`Route` values; ``set_status`` serves errors (500, 410 ...),
and ``set_handler`` takes any aiohttp handler for special cases (another module may
add hostile routes that way). :func:`rss` builds small RSS 2.0 documents.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping
from xml.sax.saxutils import escape

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    honour_conditional: bool = True
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    handler: Handler | None = None


@dataclass
class PathStats:
    requests: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    request_headers: list[dict[str, str]] = field(default_factory=list)


class FeedServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port: int | None = None
        self.routes: dict[str, Route] = {}
        self.stats: dict[str, PathStats] = {}
        self.changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> "FeedServer":
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server  # the listening asyncio server, to learn the port
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FeedServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path: str = "/feed.xml") -> str:
        assert self.port is not None, "start() the server first"
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    # --- routes ------------------------------------------------------------------------------

    def set(
        self, path: str, body: bytes | str, content_type: str = "application/rss+xml; charset=utf-8", *,
        etag: str | None = "auto", last_modified: str | None = None, honour_conditional: bool = True,
        status: int = 200, headers: Mapping[str, str] | None = None,
    ) -> Route:
        """Serves ``body`` at ``path``. ``etag="auto"`` derives a strong ETag from the body;
        ``last_modified="auto"`` stamps the current time. With ``honour_conditional`` a
        matching If-None-Match / If-Modified-Since is answered 304."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        if etag == "auto":
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if last_modified == "auto":
            last_modified = email.utils.formatdate(time.time(), usegmt=True)
        route = Route(data, content_type, etag, last_modified, honour_conditional, status, dict(headers or {}))
        self.routes[_path(path)] = route
        return route

    def set_status(self, path: str, status: int, body: bytes | str = b"", *,
                   headers: Mapping[str, str] | None = None) -> Route:
        """Answers every request to ``path`` with ``status`` (no conditional GET)."""
        return self.set(path, body or f"HTTP {status}".encode(), "text/plain", etag=None, status=status,
                        honour_conditional=False, headers=headers)

    def set_handler(self, path: str, handler: Handler) -> None:
        """Any aiohttp handler; its requests are counted like the others."""
        self.routes[_path(path)] = Route(handler=handler)

    def remove(self, path: str) -> None:
        self.routes.pop(_path(path), None)

    # --- counters ----------------------------------------------------------------------------

    def _stats(self, path: str) -> PathStats:
        return self.stats.setdefault(_path(path), PathStats())

    def requests(self, path: str) -> int:
        return self._stats(path).requests

    def status_counts(self, path: str) -> Counter[int]:
        return self._stats(path).status_counts

    def last_request_headers(self, path: str) -> dict[str, str]:
        seen = self._stats(path).request_headers
        return seen[-1] if seen else {}

    async def wait_for_requests(self, path: str, n: int, timeout: float = 10.0) -> None:
        """Returns once ``path`` has been answered at least ``n`` times; TimeoutError otherwise."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.requests(path) >= n), timeout)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Waits until ``predicate()`` holds, re-checked after every answered request."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout)

    # --- serving -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = _path(request.path)
        route = self.routes.get(path)
        try:
            if route is None:
                response: web.StreamResponse = web.Response(status=404, text="no such feed")
            elif route.handler is not None:
                response = await route.handler(request)
            else:
                response = self._answer(route, request)
        except web.HTTPException as exc:
            response = exc
        stats = self._stats(path)
        stats.requests += 1
        stats.status_counts[response.status] += 1
        stats.request_headers.append(dict(request.headers))
        async with self.changed:
            self.changed.notify_all()
        return response

    @staticmethod
    def _answer(route: Route, request: web.Request) -> web.Response:
        headers = dict(route.headers)
        if route.etag:
            headers["ETag"] = route.etag
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        if route.status == 200 and route.honour_conditional:
            inm = request.headers.get("If-None-Match")
            ims = request.headers.get("If-Modified-Since")
            if inm is not None and route.etag is not None:
                if route.etag in {t.strip() for t in inm.split(",")} or inm.strip() == "*":
                    return web.Response(status=304, headers=headers)
            elif ims is not None and route.last_modified is not None and ims == route.last_modified:
                return web.Response(status=304, headers=headers)
        headers["Content-Type"] = route.content_type
        return web.Response(status=route.status, body=route.body, headers=headers)


def _path(path: str) -> str:
    path = path.split("?", 1)[0].split("#", 1)[0]
    return "/" + path.lstrip("/")


# --- building feeds ------------------------------------------------------------------------------


def rss(items: Iterable[Mapping[str, Any]], *, title: str = "Test feed", link: str = "https://blog.example/",
        extra_channel: str = "") -> bytes:
    """A small RSS 2.0 document. Each item may have ``title``, ``link``, ``guid`` (``None``
    leaves it out), ``guid_permalink``, ``date`` (a Unix time or an RFC 822 string),
    ``description`` (HTML, escaped here) and ``raw`` (XML inserted as is). Items are
    written in the given order (feeds put the newest first)."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link><description>test</description>",
        extra_channel,
    ]
    for it in items:
        parts.append("<item>")
        if it.get("title") is not None:
            parts.append(f"<title>{escape(str(it['title']))}</title>")
        if it.get("link") is not None:
            parts.append(f"<link>{escape(str(it['link']))}</link>")
        if it.get("guid") is not None:
            permalink = "true" if it.get("guid_permalink") else "false"
            parts.append(f'<guid isPermaLink="{permalink}">{escape(str(it["guid"]))}</guid>')
        date = it.get("date")
        if date is not None:
            if isinstance(date, (int, float)):
                date = email.utils.formatdate(float(date), usegmt=True)
            parts.append(f"<pubDate>{escape(date)}</pubDate>")
        if it.get("description") is not None:
            parts.append(f"<description>{escape(str(it['description']))}</description>")
        parts.append(str(it.get("raw", "")))
        parts.append("</item>")
    parts.append("</channel></rss>\n")
    return "".join(parts).encode("utf-8")


def numbered_items(numbers: Iterable[int], *, base: str = "https://blog.example/posts/", start: float = 1_700_000_000.0,
                   guid: bool = True) -> list[dict[str, Any]]:
    """Items "Post n", one day apart (a higher n is newer), newest first as feeds write them."""
    out = []
    for n in sorted(numbers, reverse=True):
        out.append({
            "title": f"Post {n}",
            "link": f"{base}{n}/",
            "guid": f"post-{n}" if guid else None,
            "date": start + n * 86400.0,
            "description": f"<p>Body of post {n}.</p>",
        })
    return out
