"""The ``herald`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from bot import __version__
from bot.config import Config, load_config, parse_since
from bot.errors import ConfigError, FeedError, HeraldError, UnsafeURL
from bot.logs import setup_logging

if TYPE_CHECKING:
    from bot.storage.base import Storage

log = logging.getLogger("herald")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="herald", description="Announce RSS, Atom and JSON feed entries into Discord.")
    p.add_argument("--version", action="version", version=f"herald {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", metavar="PATH", help="config file (default: herald.toml, or $HERALD_CONFIG)")
        sp.add_argument("--log-level", metavar="LEVEL",
                        help="debug, info, warning or error (default from config: info)")
        sp.add_argument("--log-format", choices=["text", "json"], help="log format (default from config: text)")

    run = sub.add_parser("run", help="poll feeds and announce new entries")
    common(run)
    run.add_argument("--dry-run", action="store_true", help="print announcements to stdout instead of sending them")
    run.add_argument("--once", action="store_true", help="run one poll cycle, deliver what is due, and exit")
    run.add_argument("--json", action="store_true", help="with --dry-run: one JSON line per announcement")

    check = sub.add_parser("check", help="validate the config and list its feeds")
    common(check)

    preview = sub.add_parser("preview", help="fetch one feed and show how its newest entries would be announced")
    common(preview)
    preview.add_argument("url")
    preview.add_argument("--limit", type=int, default=3, metavar="N", help="how many entries (default 3)")
    preview.add_argument("--json", action="store_true", help="print the message payloads as JSON lines")

    search = sub.add_parser("search", help="search stored posts")
    common(search)
    search.add_argument("query")
    search.add_argument("--feed", metavar="NAME")
    search.add_argument("--since", metavar="WHEN", help='a date (2026-01-31) or an age ("7d")')
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--json", action="store_true")

    feeds = sub.add_parser("feeds", help="list, pause or resume feeds")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", metavar="ACTION")
    feeds_sub.required = True  # `herald feeds` alone: usage on stderr, exit 2
    for name, helptext in (("list", "list feeds and their state"), ("pause", "stop polling a feed"),
                           ("resume", "poll a paused feed again")):
        sp = feeds_sub.add_parser(name, help=helptext)
        common(sp)
        if name != "list":
            sp.add_argument("feed", help="the feed's name or URL")
        else:
            sp.add_argument("--json", action="store_true")

    doctor = sub.add_parser("doctor",
                            help="check config, storage, feeds and Discord access, and say how to fix problems")
    common(doctor)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        config = _load_optional(args.config) if args.command == "preview" else load_config(args.config)
    except ConfigError as exc:
        print(f"herald: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    try:
        if args.command == "run":
            return _run(config, args)
        if args.command == "check":
            return _check(config)
        if args.command == "preview":
            return asyncio.run(_preview(config, args))
        if args.command == "search":
            return asyncio.run(_search(config, args))
        if args.command == "feeds":
            return asyncio.run(_feeds(config, args))
        if args.command == "doctor":
            from bot.doctor import run_doctor

            return asyncio.run(run_doctor(config))
    except KeyboardInterrupt:
        return 130
    except HeraldError as exc:
        print(f"herald: {exc}", file=sys.stderr)
        return 1
    return 2


def _load_optional(path: str | None) -> Config:
    if path is None:
        try:
            return load_config(None)
        except ConfigError:
            return Config()
    return load_config(path)


def _run(config: Config, args: argparse.Namespace) -> int:
    if args.json and not args.dry_run:
        print("herald: --json goes with --dry-run", file=sys.stderr)
        return 2
    from bot.parsepool import stop_parse_servers

    try:
        if not args.dry_run:
            from bot.discord_bot import run_discord

            return run_discord(config, once=args.once)
        return asyncio.run(_dry_run(config, once=args.once, as_json=args.json))
    finally:
        stop_parse_servers()  # the parse workers are gone by now; their forkserver goes too


async def _dry_run(config: Config, *, once: bool, as_json: bool) -> int:
    from bot.app import Herald
    from bot.deliver import ConsoleSink
    from bot.metrics import Metrics

    sink = ConsoleSink(sys.stdout, as_json=as_json)
    async with Herald(config, sink, metrics=Metrics()) as herald:
        if once:
            started = time.perf_counter()
            cycle = asyncio.current_task()
            assert cycle is not None  # nosec B101 # asyncio.run's task: narrows the type
            _install_signal_handlers(cycle.cancel)  # SIGTERM stops the cycle at once (the parse workers too)
            try:
                stats, sent = await herald.run_once()
            except asyncio.CancelledError:
                log.error("stopped by a signal before the poll cycle finished; nothing more is polled or delivered")
                return 1
            except Exception as exc:
                if isinstance(exc, HeraldError):
                    log.error("the poll cycle failed: %s", exc)
                else:
                    log.exception("the poll cycle failed with an unexpected error")
                return 1
            log.info("cycle done in %.2fs: %d feeds polled (%d new bodies, %d not modified, %d unchanged, %d errors),"
                     " %d entries stored, %d announcements printed", time.perf_counter() - started, stats.polled,
                     stats.parsed, stats.not_modified, stats.unchanged, stats.errors, stats.stored, sent)
            return 0
        from bot.ops import start_ops

        stop = asyncio.Event()
        _install_signal_handlers(stop.set)
        ops = await start_ops(config, herald)
        try:
            await herald.run(stop)
        finally:
            if ops is not None:
                await ops.stop()
    return 0


def _install_signal_handlers(stop: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass


def _check(config: Config) -> int:
    """Validates what ``run`` would trip on without connecting anywhere. Exit 1 when a problem was found."""
    from bot.config import homeless_feeds, unreadable_files

    print(f"config OK: {config.path}")
    print(f"storage: {config.storage_url()}")
    print(f"polling: every {config.polling.interval:g}s, timeout {config.polling.timeout:g}s, "
          f"max {config.polling.max_bytes} bytes, {config.polling.concurrency} at once")
    token = config.discord.token()
    print(f"token: ${config.discord.token_env} is {'set' if token else 'NOT set (needed unless --dry-run)'}")
    print(f"{len(config.feeds)} feed(s):")
    for i, f in enumerate(config.feeds):
        targets = [f"channel {c}" for c in f.channels] + [f"webhook ${w}" for w in f.webhooks]
        extra = f", backfill {f.backfill}" if f.backfill else ""
        extra += f", server {f.guild_id}" if f.guild_id is not None else ""
        print(f"  [{i}] {f.name or '(feed title)'}: {f.url} -> {', '.join(targets)}{extra}")
    problems = unreadable_files(config)
    for note in homeless_feeds(config):
        print(f"warning: {note}")
    if problems:
        print(f"{len(problems)} problem(s); `herald run` would fail on them:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


async def _preview(config: Config, args: argparse.Namespace) -> int:
    from bot.discover import find_feed_links, looks_like_html
    from bot.fetch import Fetcher
    from bot.models import StoredEntry, Subscription
    from bot.parsepool import ParsePool
    from bot.render import render_entry

    p = config.polling
    parser = ParsePool(1, inline=True, timeout=p.parse_timeout)
    feed_url = args.url
    try:
        async with Fetcher(timeout=p.timeout, max_bytes=p.max_bytes, allow_private=True) as fetcher:
            result = await fetcher.fetch(args.url, guarded=False, allow_file=True)
            if looks_like_html(result.body, result.headers.get("content-type")):
                # a web page: use the feed it advertises, as /feed add does
                links = find_feed_links(result.body.decode("utf-8", "replace"), result.url)
                if not links:
                    print(f"herald: {args.url} is a web page, not a feed, and advertises none "
                          "(no <link rel=\"alternate\" type=\"application/rss+xml\">); give the feed's own URL",
                          file=sys.stderr)
                    return 1
                feed_url = links[0]
                print(f"{args.url} is a web page; using the feed it advertises: {feed_url}", file=sys.stderr)
                result = await fetcher.fetch(feed_url, guarded=False, allow_file=False)
        parsed = await parser.parse(result.body, result.headers, result.url)
    except (FeedError, UnsafeURL) as exc:
        print(f"herald: {feed_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        parser.close()
    from bot.decide import chronological

    now = time.time()
    newest = chronological(list(parsed.entries), now)[-max(0, args.limit):] if args.limit > 0 else []
    if not args.json:
        print(f"{parsed.title or feed_url}: {len(parsed.entries)} entries; the newest {len(newest)} as announced:\n")
    for i, e in enumerate(newest):
        stored = StoredEntry(id=i, feed_id=0, key=e.key, title=e.title, link=e.link, summary=e.summary, author=e.author,
                             published=e.published, image=e.image, first_seen=now, thumbnail=e.thumbnail,
                             feed_image=parsed.image)
        payload = render_entry(stored, parsed.title, Subscription(0, 0, "preview").with_defaults(config.defaults))
        if args.json:
            print(json.dumps({"feed": parsed.title, "entry_id": e.key.split(":", 1)[1], "payload": payload},
                             ensure_ascii=False))
        else:
            from bot.deliver import _human
            from bot.storage.base import ClaimedDelivery
            from bot.models import Delivery

            claimed = ClaimedDelivery(Delivery(0, 0, (i,), "entry"), Subscription(0, 0, "preview"), [stored],
                                      parsed.title)
            print(_human(claimed, payload))
    return 0


async def _open_storage(config: Config) -> Storage:
    from bot.storage import open_storage

    storage = open_storage(config.storage_url())
    await storage.open()
    return storage


async def _search(config: Config, args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since, time.time())
    except ValueError as exc:
        print(f"herald: --since: {exc}", file=sys.stderr)
        return 2
    storage = await _open_storage(config)
    try:
        feed_id = None
        if args.feed:
            info = await storage.find_feed(args.feed)
            if info is None:
                print(f"herald: no feed named {args.feed!r}", file=sys.stderr)
                return 1
            feed_id = info.id
        page = await storage.search(args.query, feed_id=feed_id, since=since, limit=max(1, args.limit))
    finally:
        await storage.close()
    if args.json:
        for h in page.hits:
            print(json.dumps({"title": h.entry.title, "link": h.entry.link, "feed": h.feed_name,
                              "published": h.entry.published, "snippet": h.snippet}, ensure_ascii=False))
        return 0
    if not page.total:
        print("no results")
        return 0
    print(f"{page.total} result(s)")
    for h in page.hits:
        when = _date(h.entry.published or h.entry.first_seen)
        print(f"- {h.entry.title} [{h.feed_name}, {when}]\n  {h.entry.link or ''}\n  {h.snippet}")
    return 0


def _date(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d") if ts else "?"


def _when(ts: float | None, never: str) -> str:
    """A time as ``2026-01-31 14:05 UTC``, or ``never`` in words."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ts else never


async def _feeds(config: Config, args: argparse.Namespace) -> int:
    # No sync of the config here: only `herald run` makes the database's feeds match a config file,
    # so listing with another file (or none) never deactivates the running bot's feeds.
    storage = await _open_storage(config)
    try:
        if args.feeds_command == "list":
            feeds = await storage.list_feeds()
            if getattr(args, "json", False):
                for f in feeds:
                    print(json.dumps({"id": f.id, "name": f.name, "url": f.url, "source": f.source, "paused": f.paused,
                                      "pause_reason": f.pause_reason, "targets": f.targets, "entries": f.entries,
                                      "last_success": f.last_success, "next_fetch": f.next_fetch,
                                      "last_error": f.last_error,
                                      "pending": f.pending, "failed": f.failed}))
                return 0
            if not feeds:
                print("no feeds")
            for f in feeds:
                state = f"paused ({f.pause_reason})" if f.paused else ("failing" if f.last_error else "ok")
                nxt = "not while paused" if f.paused else _when(f.next_fetch, "as soon as it runs")
                last = f"last success {_when(f.last_success, '')}" if f.last_success else "never succeeded"
                print(f"- {f.name} [{f.source}] {f.url}\n  {state}; {f.entries} entries; {last}; "
                      f"next fetch {nxt}; {f.pending} pending, {f.failed} failed; -> {', '.join(f.targets)}")
                if f.last_error:
                    print(f"  last error: {f.last_error}")
            return 0
        info = await storage.find_feed(args.feed)
        if info is None:
            print(f"herald: no feed named {args.feed!r}", file=sys.stderr)
            return 1
        paused = args.feeds_command == "pause"
        await storage.set_paused(info.id, paused, "paused from the command line" if paused else None)
        print(f"{info.name}: {'paused' if paused else 'resumed'}")
        return 0
    finally:
        await storage.close()
