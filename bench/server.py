"""A local feed server for the benchmarks, run in its own process.

Serves ``N`` synthetic feeds (bench.feedgen) at ``/feed/{i}.xml`` on 127.0.0.1,
with ``ETag`` and ``Last-Modified``, answering ``304 Not Modified`` to a
matching ``If-None-Match`` (or, when that header is absent, to an
``If-Modified-Since`` not older than the feed's date). Bodies are rendered and
gzip-compressed ahead of time, when a feed changes, so a request costs the
server little CPU; a client that does not accept gzip gets the plain bytes.

Control endpoints, for the benchmark driver (never timed):

- ``POST /_ctl/reset``: every feed back to its initial 20 entries, conditional GET on.
- ``POST /_ctl/change?fraction=0.05&round=1``: that fraction of feeds, chosen by
  (seed, round), publish one new entry; answers the changed indexes.
- ``POST /_ctl/conditional?on=0``: ignore If-None-Match/If-Modified-Since and
  send no validators (every request gets 200 and the same body).
- ``GET /_ctl/stats`` and ``POST /_ctl/stats/reset``: requests answered, by status.

Run it alone with ``python -m bench.server --feeds 100``; it prints
``LISTENING <port>`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import signal
import sys
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web

from bench.feedgen import SyntheticFeed, changed_indexes, make_feeds

_CTYPE = {"rss": "application/rss+xml; charset=utf-8", "atom": "application/atom+xml; charset=utf-8"}


class _Served:
    __slots__ = ("body", "ctype", "etag", "feed", "gz", "last_modified", "mtime")

    def __init__(self, feed: SyntheticFeed) -> None:
        self.feed = feed
        self.refresh()

    def refresh(self) -> None:
        self.body = self.feed.render()
        self.gz = gzip.compress(self.body, compresslevel=6, mtime=0)
        self.etag = '"' + hashlib.sha1(self.body).hexdigest()[:20] + '"'
        self.mtime = self.feed.updated
        self.last_modified = formatdate(self.mtime, usegmt=True)
        self.ctype = _CTYPE[self.feed.kind]


class FeedServer:
    def __init__(self, n: int, seed: int = 1, entries: int = 20, gzip_ok: bool = True) -> None:
        self.n, self.seed, self.entries, self.gzip_ok = n, seed, entries, gzip_ok
        self.conditional = True
        self.stats: dict[str, int] = {}
        self._initial = [_Served(f) for f in make_feeds(n, seed, entries)]
        self._initial_state = [(s.body, s.gz, s.etag, s.mtime, s.last_modified) for s in self._initial]
        self.served = list(self._initial)

    def reset(self) -> None:
        self.conditional = True
        fresh = []
        for s, (body, gz, etag, mtime, lm) in zip(self._initial, self._initial_state, strict=True):
            s.feed = SyntheticFeed(self.seed, s.feed.index, self.entries)
            s.body, s.gz, s.etag, s.mtime, s.last_modified = body, gz, etag, mtime, lm
            fresh.append(s)
        self.served = fresh
        self.stats.clear()

    def change(self, fraction: float, round_: int) -> list[int]:
        idx = changed_indexes(self.n, fraction, self.seed, round_)
        for i in idx:
            self.served[i].feed.change()
            self.served[i].refresh()
        return idx

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    async def feed(self, request: web.Request) -> web.StreamResponse:
        try:
            i = int(request.match_info["i"])
            s = self.served[i]
        except (ValueError, IndexError):
            self._count("404")
            raise web.HTTPNotFound() from None
        if self.conditional:
            inm = request.headers.get("If-None-Match")
            ims = request.headers.get("If-Modified-Since")
            not_modified = False
            if inm is not None:
                not_modified = s.etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
            elif ims:
                try:
                    not_modified = parsedate_to_datetime(ims).timestamp() >= s.mtime
                except (TypeError, ValueError, IndexError):
                    not_modified = False
            if not_modified:
                self._count("304")
                return web.Response(status=304, headers={"ETag": s.etag, "Last-Modified": s.last_modified})
            headers = {"ETag": s.etag, "Last-Modified": s.last_modified, "Content-Type": s.ctype}
        else:
            headers = {"Content-Type": s.ctype}
        self._count("200")
        if self.gzip_ok and "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
            return web.Response(body=s.gz, headers=headers)
        return web.Response(body=s.body, headers=headers)

    async def ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def ctl_change(self, request: web.Request) -> web.Response:
        fraction = float(request.query.get("fraction", "0.05"))
        round_ = int(request.query.get("round", "1"))
        return web.json_response({"changed": self.change(fraction, round_)})

    async def ctl_conditional(self, request: web.Request) -> web.Response:
        self.conditional = request.query.get("on", "1") not in ("0", "false", "no")
        return web.json_response({"conditional": self.conditional})

    async def ctl_stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.stats))

    async def ctl_stats_reset(self, request: web.Request) -> web.Response:
        out = dict(self.stats)
        self.stats.clear()
        return web.json_response(out)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/feed/{i}.xml", self.feed)
        app.router.add_post("/_ctl/reset", self.ctl_reset)
        app.router.add_post("/_ctl/change", self.ctl_change)
        app.router.add_post("/_ctl/conditional", self.ctl_conditional)
        app.router.add_get("/_ctl/stats", self.ctl_stats)
        app.router.add_post("/_ctl/stats/reset", self.ctl_stats_reset)
        return app


async def serve(args: argparse.Namespace) -> None:
    server = FeedServer(args.feeds, args.seed, args.entries, gzip_ok=not args.no_gzip)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"LISTENING {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)  # never outlives its benchmark
    except asyncio.TimeoutError:
        pass
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Serve synthetic feeds on 127.0.0.1 for the benchmarks.")
    ap.add_argument("--feeds", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--entries", type=int, default=20)
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    ap.add_argument("--no-gzip", action="store_true", help="never compress responses")
    ap.add_argument("--max-seconds", type=float, default=4 * 3600, help="stop by itself after this long")
    args = ap.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
