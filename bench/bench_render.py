"""Rendering and parsing cost per call: render_entry, render_digest and parse_feed.

- ``render_entry`` over every entry of the seed feed (../shared/feeds/seed-vsoch.rss.xml,
  10 long posts), and over synthetic huge entries (a 20,000-character summary full of
  masked links, a 2,000-character title, Markdown control characters everywhere);
- ``render_digest`` of 40 entries;
- ``parse_feed`` of the seed feed (feedparser + HTML to Markdown in bot.markdown), split into
  feedparser alone and the HTML-to-Markdown share; "cold" switches off bot.parse's memo of
  feedparser's sanitizer (a document never seen), "warm" has every entry in it;
- ``parse_feed`` of one synthetic 20-entry feed from bench/feedgen.py (the polling benchmark's feeds).

Every figure is the median (and min/max) over ``--rounds`` rounds of the mean time of one
call within a round, so a noisy neighbour shows as spread, not as a shifted median.

    python bench/bench_render.py --quick
    python bench/bench_render.py            # the figures in docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.feedgen import SyntheticFeed  # noqa: E402
from bot.markdown import html_to_markdown  # noqa: E402
from bot.models import StoredEntry, Subscription  # noqa: E402
from bot.parse import parse_feed, parse_feed_deferred  # noqa: E402
from bot.render import render_digest, render_entry  # noqa: E402

DEFAULT_SEED = ROOT.parent / "shared" / "feeds" / "seed-vsoch.rss.xml"
FALLBACK_SEED = ROOT / "examples" / "seed-vsoch.rss.xml"


def timeit(fn: Callable[[], Any], rounds: int, min_time: float) -> dict[str, float]:
    """Median/min/max over rounds of the mean µs per call; each round runs at least min_time."""
    fn()  # warm up (imports, regex compilation)
    per_call: list[float] = []
    for _ in range(rounds):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        per_call.append(elapsed / n * 1e6)
    return {"median_us": statistics.median(per_call), "min_us": min(per_call), "max_us": max(per_call),
            "calls_per_round_last": n}


def stored(i: int, title: str, summary: str, link: str | None, image: str | None = None,
           author: str | None = None, published: float | None = 1_700_000_000.0) -> StoredEntry:
    return StoredEntry(id=i, feed_id=1, key=f"id:{i}", title=title, link=link, summary=summary, author=author,
                       published=published, image=image, first_seen=1_700_000_000.0)


def huge_entries() -> list[StoredEntry]:
    """Entries at the stored limits: summaries are capped at 20,000 characters by the parser."""
    links = " ".join(f"see [https://example.com/{i}](https://evil.example/{i}) and [post {i}](https://example.com/p/{i})"
                     for i in range(400))
    control = ("*bold* _it_ ~~s~~ `code` |spoiler| [x] # heading > quote - item 1. one \\ " * 400)
    words = ("lorem " * 4000)
    return [
        stored(1, "A" * 2000, links[:20_000], "https://example.com/huge/1", "https://example.com/i.png", "N" * 500),
        stored(2, "Title with *stars* and [brackets] " * 40, control[:20_000], "https://example.com/huge/2"),
        stored(3, "Plain long title " * 20, words[:20_000], "https://example.com/huge/3"),
        stored(4, "", "", None),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    seed_path = Path(args.seed_feed)
    if not seed_path.exists():
        seed_path = FALLBACK_SEED
    body = seed_path.read_bytes()
    url = "https://vsoch.github.io/feed.xml"
    parsed = parse_feed(body, {"content-type": "application/rss+xml"}, url)
    sub = Subscription(id=1, feed_id=1, target="channel:1", mention_roles=(123456789012345678,))
    seed_entries = [stored(i, e.title, e.summary, e.link, e.image, e.author, e.published)
                    for i, e in enumerate(parsed.entries, 1)]
    big = huge_entries()
    rounds, t = args.rounds, args.min_time
    out: dict[str, Any] = {"seed_feed": str(seed_path), "seed_entries": len(seed_entries), "results": {}}
    res = out["results"]

    res["render_entry seed (mean of its entries)"] = timeit(
        lambda: [render_entry(e, parsed.title, sub) for e in seed_entries], rounds, t)
    res["render_entry seed (mean of its entries)"] = {
        k: (v / len(seed_entries) if k.endswith("_us") else v)
        for k, v in res["render_entry seed (mean of its entries)"].items()}
    for e in big:
        label = f"render_entry huge #{e.id} (title {len(e.title)} ch, summary {len(e.summary)} ch)"
        res[label] = timeit(lambda e=e: render_entry(e, "Huge feed " * 50, sub), rounds, t)
    digest = (seed_entries * 4)[:40]
    res["render_digest of 40 entries"] = timeit(lambda: render_digest(digest, parsed.title, sub), rounds, t)

    import feedparser

    # bot.parse memoises feedparser's HTML sanitizer (a changed feed repeats most entries). Timing the
    # same document over and over would measure only cache hits, so the "cold" figures switch it off:
    # they are the cost of a document never seen before. "warm" is every entry seen before.
    memo = getattr(feedparser.mixin, "_sanitize_html", None)
    plain = getattr(memo, "fn", memo)

    def cold(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            feedparser.mixin._sanitize_html = plain
            try:
                return fn()
            finally:
                feedparser.mixin._sanitize_html = memo
        return run

    res["parse_feed seed, cold (feedparser + HTML to Markdown)"] = timeit(
        cold(lambda: parse_feed(body, {"content-type": "application/rss+xml"}, url)), rounds, t)
    res["parse_feed seed, warm sanitizer cache"] = timeit(
        lambda: parse_feed(body, {"content-type": "application/rss+xml"}, url), rounds, t)
    res["feedparser.parse seed alone, cold"] = timeit(cold(lambda: feedparser.parse(body)), rounds, t)
    fp = feedparser.parse(body)
    htmls = [max((c.get("value", "") for c in (e.get("content") or [])), key=len, default="") or e.get("summary", "")
             for e in fp.entries]
    res["html_to_markdown of the seed's entries (all of them)"] = timeit(
        lambda: [html_to_markdown(h, "https://vsoch.github.io/") for h in htmls], rounds, t)
    synth = SyntheticFeed(1, 0).render()
    res["parse_feed synthetic 20-entry RSS feed, cold"] = timeit(
        cold(lambda: parse_feed(synth, {}, "http://127.0.0.1/f.xml")), rounds, t)
    synth_atom = SyntheticFeed(1, 1).render()
    res["parse_feed synthetic 20-entry Atom feed, cold"] = timeit(
        cold(lambda: parse_feed(synth_atom, {}, "http://127.0.0.1/f.xml")), rounds, t)
    res["parse_feed_deferred synthetic RSS feed, warm cache (a changed feed's re-parse)"] = timeit(
        lambda: parse_feed_deferred(synth, {}, "http://127.0.0.1/f.xml"), rounds, t)
    out["sizes"] = {"seed_bytes": len(body), "synthetic_rss_bytes": len(synth), "synthetic_atom_bytes": len(synth_atom)}
    return out


def markdown(out: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Render/parse benchmark: {meta['rounds']} rounds of ≥{meta['min_time']}s; "
             f"{meta['nproc']} CPUs, Python {meta['python']}. Seed feed: {out['seed_entries']} entries, "
             f"{out['sizes']['seed_bytes']} bytes.", "",
             "| what | median | min | max |", "|---|---:|---:|---:|"]
    for name, r in out["results"].items():
        unit, div = ("ms", 1000.0) if r["median_us"] >= 10_000 else ("µs", 1.0)
        lines.append(f"| {name} | {r['median_us'] / div:.1f} {unit} | {r['min_us'] / div:.1f} {unit} "
                     f"| {r['max_us'] / div:.1f} {unit} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Per-call cost of render_entry, render_digest and parse_feed.")
    ap.add_argument("--quick", action="store_true", help="3 rounds of 0.1 s")
    ap.add_argument("--rounds", type=int, default=None, help="default 9 (3 with --quick)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per round (default 0.5; 0.1 with --quick)")
    ap.add_argument("--seed-feed", default=str(DEFAULT_SEED))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 9)
    args.min_time = args.min_time or (0.1 if args.quick else 0.5)
    out = run(args)
    meta = {"rounds": args.rounds, "min_time": args.min_time, "nproc": os.cpu_count(),
            "python": platform.python_version()}
    out["meta"] = meta
    md = markdown(out, meta)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    name = f"render-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}"
    (dest / f"{name}.json").write_text(json.dumps(out, indent=2))
    (dest / f"{name}.md").write_text(md)
    print(md)
    print(f"results: {dest / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
