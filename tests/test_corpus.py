"""Every feed in ../shared/feeds (about 2,400 files: feedparser's test feeds and real-world
captures) goes through ``parse_feed`` and ``render_entry`` / ``render_digest`` without an
exception escaping, and within Discord's limits; every summary is within bot.markdown's cap,
cuts to a description's and a short summary's length with ``shorten``, and shows no heading.
A ParseError for something that is not a feed is fine; anything else fails.

The files are checked in a process pool once per session (a few seconds on 2 cores) and the
results are reported per folder. Set HERALD_TEST_FEEDS to use another folder.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

def _corpus_dir() -> Path:
    """HERALD_TEST_FEEDS, else the nearest ``shared/feeds`` beside the checkout or one level up
    (a git worktree sits a level deeper than the main checkout)."""
    if os.environ.get("HERALD_TEST_FEEDS"):
        return Path(os.environ["HERALD_TEST_FEEDS"])
    for up in (ROOT.parent, ROOT.parent.parent):
        if (up / "shared" / "feeds").is_dir():
            return up / "shared" / "feeds"
    return ROOT.parent / "shared" / "feeds"


CORPUS = _corpus_dir()
NOT_FEEDS = {".md", ".txt"}  # the corpus' own notes; LICENSE files are skipped by name too


def group_of(path: Path) -> str:
    """The folder a file is reported under: two or three levels below the corpus root."""
    parts = path.relative_to(CORPUS).parts
    if len(parts) == 1:
        return "."
    if parts[0] == "feedparser-tests" and len(parts) > 3:
        return "/".join(parts[:3])
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() not in NOT_FEEDS
                  and not p.name.startswith("LICENSE"))


FILES = corpus_files()
GROUPS = sorted({group_of(p) for p in FILES}) or ["(missing)"]


def check_files(paths: list[str]) -> list[tuple[str, str, str]]:
    """Runs in a worker process: (path, "ok" | "not a feed" | "FAILED", detail) per file."""
    from bot import limits
    from bot.errors import ParseError
    from bot.markdown import MAX_OUTPUT_CHARS, shorten
    from bot.models import MAX_SUMMARY_LENGTH, StoredEntry, Subscription
    from bot.parse import parse_feed
    from bot.render import render_digest, render_entry, thread_name
    from tests.discord_markdown import read

    out = []
    for path in paths:
        try:
            body = Path(path).read_bytes()
            try:
                parsed = parse_feed(body, {}, "https://feeds.example/" + Path(path).name)
            except ParseError as exc:
                out.append((path, "not a feed", str(exc)[:200]))
                continue
            stored = [StoredEntry(id=i + 1, feed_id=1, key=e.key, title=e.title, link=e.link, summary=e.summary,
                                  author=e.author, published=e.published, image=e.image, first_seen=1_700_000_000.0,
                                  thumbnail=e.thumbnail, feed_image=parsed.image)
                      for i, e in enumerate(parsed.entries)]
            problems = []
            # every other entry with the feed's image as its fallback thumbnail and the longest summary
            with_feed_image = Subscription(id=1, feed_id=1, target="channel:1", feed_image=True,
                                           summary_length=MAX_SUMMARY_LENGTH)
            for i, entry in enumerate(stored):
                payload = render_entry(entry, parsed.title, with_feed_image if i % 2 else None)
                problems += _limit_problems(payload)
                if len(entry.summary) > MAX_OUTPUT_CHARS:
                    problems.append(f"summary {len(entry.summary)} > {MAX_OUTPUT_CHARS}")
                for room in (limits.EMBED_DESCRIPTION, 300):  # a description, a short summary
                    cut = shorten(entry.summary, room)
                    if len(cut) > room:
                        problems.append(f"shorten to {room}: {len(cut)}")
                    elif "heading" in read(cut).kinds():
                        problems.append("a heading in a summary")
                if not 0 < len(thread_name(entry)) <= 100:
                    problems.append("thread name")
            if stored:
                problems += _limit_problems(render_digest(stored, parsed.title))
            if problems:
                out.append((path, "FAILED", "; ".join(sorted(set(problems)))))
            else:
                out.append((path, "ok", f"{len(stored)} entries"))
        except Exception:
            out.append((path, "FAILED", traceback.format_exc(limit=6)))
    return out


def _limit_problems(payload: dict) -> list[str]:
    problems = []
    if payload.get("allowed_mentions") != {"parse": []}:
        problems.append("allowed_mentions")
    if len(payload.get("content", "")) > 2000 or not 1 <= len(payload["embeds"]) <= 10:
        problems.append("message")
    for e in payload["embeds"]:
        sizes = {"title": len(e.get("title", "")), "description": len(e.get("description", "")),
                 "author": len(e.get("author", {}).get("name", "")), "footer": len(e.get("footer", {}).get("text", ""))}
        limits = {"title": 256, "description": 4096, "author": 256, "footer": 2048}
        problems += [f"{k} {v} > {limits[k]}" for k, v in sizes.items() if v > limits[k]]
        if sum(sizes.values()) > 6000:
            problems.append("embed total > 6000")
        if not e.get("title"):
            problems.append("empty title")
        urls = [e.get("url"), e.get("image", {}).get("url"), e.get("thumbnail", {}).get("url")]
        problems += [f"URL {u!r} not well-formed" for u in urls if u is not None and not _well_formed(u)]
    return problems


def _well_formed(url: str) -> bool:
    """What Discord accepts: http(s), lower-case scheme and host, ASCII without spaces or controls."""
    from urllib.parse import urlsplit

    from bot.urls import discord_url

    parts = urlsplit(url)
    return (url.startswith(("http://", "https://")) and parts.netloc == parts.netloc.lower() and url.isascii()
            and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) and len(url) <= 2048
            and discord_url(url) == url)


@pytest.fixture(scope="module")
def results() -> dict[str, list[tuple[str, str, str]]]:
    paths = [str(p) for p in FILES]
    workers = max(1, min(os.cpu_count() or 1, 4))
    chunks = [paths[i::workers * 8] for i in range(workers * 8)]
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                      else "spawn")
    by_group: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for chunk in pool.map(check_files, chunks, timeout=300):  # a hang fails, it does not stall the run
            for path, status, detail in chunk:
                by_group[group_of(Path(path))].append((path, status, detail))
    return by_group


@pytest.mark.skipif(not FILES, reason=f"the shared feed corpus is not there ({CORPUS})")
@pytest.mark.parametrize("group", GROUPS)
def test_every_feed_parses_and_renders(results, group) -> None:
    checked = results[group]
    assert checked, f"nothing checked in {group}"
    failures = [f"{Path(p).relative_to(CORPUS)}: {detail}" for p, status, detail in checked if status == "FAILED"]
    assert not failures, "\n".join(failures)


@pytest.mark.skipif(not FILES, reason=f"the shared feed corpus is not there ({CORPUS})")
def test_the_corpus_is_mostly_feeds(results) -> None:
    everything = [r for rs in results.values() for r in rs]
    assert len(everything) == len(FILES) > 2000
    not_feeds = [Path(p).relative_to(CORPUS).as_posix() for p, status, _ in everything if status == "not a feed"]
    # the HTML pages, raw compressed bytes and channel-only CDF documents; everything else is a feed
    assert len(not_feeds) < 40, not_feeds
    assert "real-world/danmactough_node-feedparser/notafeed.html" in not_feeds
    assert "real-world/lemon24_reader/sqlite_releases.html" in not_feeds
    parsed_ok = {Path(p).relative_to(CORPUS).as_posix() for p, status, _ in everything if status == "ok"}
    assert {"seed-vsoch.rss.xml", "real-world/lemon24_reader/full.json",
            "real-world/prof18_RSS-Parser/atom-feed-youtube.xml"} <= parsed_ok
