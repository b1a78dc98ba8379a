"""Wall time of one ``herald run --dry-run --once --json`` cycle over the seed feed, as a user runs it.

    python bench/bench_once.py --runs 11

A local aiohttp server serves the seed feed (examples/seed-vsoch.rss.xml) with an ETag. Each run is a
fresh ``python -m bot`` process (interpreter start-up and imports included), in three states:

- first:   a new database, backfill 10: fetch, parse (process pool), store, print 10 announcements;
- again:   the same database straight after: the server answers 304, nothing is parsed or printed;
- one-new: the feed gained one item: parse, store, print exactly one announcement.

Prints the median and min/max of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
SEED = (ROOT / "examples" / "seed-vsoch.rss.xml").read_bytes()
EXTRA = b"""<item><title>Bench item {n}</title><link>https://vsoch.github.io/bench/{n}/</link>
<guid>https://vsoch.github.io/bench/{n}/</guid><description>&lt;p&gt;New post {n}.&lt;/p&gt;</description>
<pubDate>Wed, 22 Apr 2026 10:00:00 +0000</pubDate></item>"""


class Server:
    def __init__(self) -> None:
        self.body = SEED
        self.port = 0
        self.ready = threading.Event()

    def add_item(self, n: int) -> None:
        self.body = self.body.replace(b"<item>", EXTRA.replace(b"{n}", str(n).encode()) + b"<item>", 1)

    async def handle(self, request: web.Request) -> web.Response:
        etag = f'"{hash(self.body) & 0xFFFFFFFF:x}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=self.body, headers={"ETag": etag, "Content-Type": "application/rss+xml"})

    def run(self) -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_get("/feed.xml", self.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())


def once(config: Path, expect_lines: int) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bot", "run", "--dry-run", "--once", "--json", "--config", str(config),
                          "--log-level", "warning"], cwd=ROOT, capture_output=True, text=True, check=True)
    elapsed = (time.perf_counter() - t0) * 1000
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if len(lines) != expect_lines:
        raise SystemExit(f"expected {expect_lines} announcements, got {len(lines)}:\n{out.stderr}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    server = Server()
    threading.Thread(target=server.run, daemon=True).start()
    server.ready.wait(10)
    results: dict[str, list[float]] = {"first": [], "again": [], "one-new": []}
    for n in range(1, args.runs + 1):
        tmp = Path(tempfile.mkdtemp(prefix="herald-bench-once-"))
        config = tmp / "herald.toml"
        config.write_text(f'[storage]\nurl = "sqlite:///herald.db"\n[[feeds]]\nurl = "http://127.0.0.1:{server.port}/feed.xml"\n'
                          'name = "vsoch"\nchannels = [1]\nbackfill = 10\n')
        results["first"].append(once(config, 10))
        results["again"].append(once(config, 0))
        server.add_item(n)
        results["one-new"].append(once(config, 1))
    print(f"{args.runs} runs of `herald run --dry-run --once --json` (fresh process each, seed feed over local HTTP)")
    for name, times in results.items():
        print(f"  {name:8} median {statistics.median(times):7.0f} ms   min {min(times):7.0f}   max {max(times):7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
