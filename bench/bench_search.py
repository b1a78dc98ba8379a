"""Search latency over a large store: median /search time over 100,000 stored posts.

    python bench/bench_search.py                 # 100,000 posts, SQLite
    python bench/bench_search.py --posts 20000 --queries 200
    HERALD_TEST_PG_DSN=postgresql://postgres@127.0.0.1:5432/test python bench/bench_search.py --backend postgres

It builds the store through the same path the poller uses (apply_polls), then times
``storage.search`` for a mix of queries (one word, two words, a phrase, a rare word, a
query with no hits, a hostile one), scoped to a guild, first page of five, the way
/search calls it. The database is built once per run in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.decide import decide
from bot.identity import normalise_link
from bot.models import Known, ParsedEntry, Policy
from bot.parse import parse_feed
from bot.storage import open_storage
from bot.storage.base import PollOutcome

SEED = Path(__file__).resolve().parent.parent / "examples" / "seed-vsoch.rss.xml"
QUERIES = ["kubernetes", "orchestration workload", '"user space"', "résumé", "gpu cloud", "dinosaur",
           "zzzqqq", "NEAR (kube* OR -x)", "simulation experiments", "the"]


def vocabulary() -> list[str]:
    words: list[str] = []
    for e in parse_feed(SEED.read_bytes(), {}, "https://vsoch.github.io/feed.xml").entries:
        words.extend(w.strip(".,;:!?()[]*_\"'").lower() for w in e.summary.split())
    return [w for w in words if w.isalpha() and len(w) > 2] or ["word"]


def make_entries(n: int, start: int, rng: random.Random, vocab: list[str]) -> list[ParsedEntry]:
    out = []
    for i in range(start, start + n):
        title = " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 9))).capitalize()
        summary = " ".join(rng.choice(vocab) for _ in range(rng.randint(60, 220)))
        link = f"https://blog{i % 500}.example/posts/{i}"
        out.append(ParsedEntry(key=f"id:{i}", link_key=normalise_link(link), title=title, link=link, summary=summary,
                               published=1_600_000_000 + i * 300.0, position=0))
    return out


async def build(storage, posts: int, feeds: int) -> float:
    rng = random.Random(42)
    vocab = vocabulary()
    now = time.time()
    feed_ids = []
    for f in range(feeds):
        fid = await storage.add_feed(f"https://blog{f}.example/feed.xml", target=f"channel:{1000 + f % 7}",
                                     guild_id=1 if f % 10 else 2, name=f"blog {f}", backfill=0, now=now)
        feed_ids.append(fid)
    started = time.perf_counter()
    batch = 1000
    for start in range(0, posts, batch):
        entries = make_entries(min(batch, posts - start), start, rng, vocab)
        fid = feed_ids[(start // batch) % len(feed_ids)]
        d = decide(Known(first_fetch=True), entries, Policy(backfill=0), now)
        await storage.apply_polls([PollOutcome(fid, now, now + 600, "new", decision=d)])
    return time.perf_counter() - started


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--queries", type=int, default=500, help="timed searches (cycling through the query mix)")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="herald-bench-search-")
    if args.backend == "postgres":
        dsn = os.environ.get("HERALD_TEST_PG_DSN")
        if not dsn:
            print("set HERALD_TEST_PG_DSN for --backend postgres", file=sys.stderr)
            return 2
        from bot.storage.postgres import PostgresStorage

        schema = f"herald_bench_{os.getpid()}"
        storage = PostgresStorage(dsn, schema=schema)
    else:
        storage = open_storage(f"sqlite:///{tmp}/bench.db")
    await storage.open()
    try:
        build_s = await build(storage, args.posts, args.feeds)
        print(f"built {args.posts} posts in {build_s:.1f}s ({args.posts / build_s:.0f} entries/s, FTS index included)")
        for q in QUERIES:  # warm-up, and show what each query finds
            page = await storage.search(q, guild_id=1, limit=5)
            print(f"  {q!r}: {page.total} hits")
        times: dict[str, list[float]] = {q: [] for q in QUERIES}
        for i in range(args.queries):
            q = QUERIES[i % len(QUERIES)]
            t0 = time.perf_counter()
            await storage.search(q, guild_id=1, limit=5, offset=0)
            times[q].append((time.perf_counter() - t0) * 1000)
        every = sorted(t for ts in times.values() for t in ts)
        print(f"\n{args.backend}: {args.queries} searches over {args.posts} posts")
        print(f"  median {statistics.median(every):.2f} ms, p95 {every[int(len(every) * 0.95) - 1]:.2f} ms, "
              f"max {every[-1]:.2f} ms")
        for q, ts in times.items():
            print(f"  {q!r:32} median {statistics.median(ts):7.2f} ms")
    finally:
        if args.backend == "postgres":
            await storage.db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[attr-defined]
        await storage.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
