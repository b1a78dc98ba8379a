"""The polling half of the pipeline: fetch → parse → decide → store.

I/O lives here (fetcher, storage, process pool); the decisions are made by the
pure functions in :mod:`bot.parse`, :mod:`bot.decide` and :mod:`bot.schedule`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Sequence

from bot.config import Config
from bot.decide import decide
from bot.counters import Counters, NoCounters
from bot.errors import FeedError, FeedGone, FetchError, ParseError, StorageError
from bot.fetch import Fetcher, FetchResult
from bot.models import Decision, FeedState, Known, ParsedFeed, Policy
from bot.parse import complete_deferred, parse_feed, parse_feed_deferred, summarise
from bot.schedule import next_fetch
from bot.storage.base import PollOutcome, PollResult, Storage

log = logging.getLogger("herald.poll")

Clock = Callable[[], float]


class ParsePool:
    """Runs feedparser in worker processes, off the event loop. Restarts a broken pool."""

    def __init__(self, workers: int = 0, *, inline: bool = False) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.inline = inline
        self._pool: Executor | None = None

    def _executor(self) -> Executor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(["bot.parse"])
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        return self._pool

    async def parse(self, body: bytes, headers: dict[str, str], url: str) -> ParsedFeed:
        return await self._call(url, parse_feed, body, headers, url)  # type: ignore[no-any-return]

    async def parse_deferred(
        self, body: bytes, headers: dict[str, str], url: str,
    ) -> tuple[ParsedFeed, dict[int, tuple[str, str | None]]]:
        """:func:`bot.parse.parse_feed_deferred`: summaries left to :meth:`summarise`."""
        return await self._call(url, parse_feed_deferred, body, headers, url)  # type: ignore[no-any-return]

    async def summarise(self, items: Sequence[tuple[str, str | None]], url: str) -> list[tuple[str, Any] | None]:
        return await self._call(url, summarise, list(items))  # type: ignore[no-any-return]

    async def _call(self, url: str, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self.inline:
            return await loop.run_in_executor(None, fn, *args)
        try:
            return await loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:
            log.warning("parser process died (feed %s); restarting the pool", url)
            self.close()
            raise ParseError("the parser process crashed on this feed") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


@dataclass(slots=True)
class PollStats:
    polled: int = 0
    not_modified: int = 0
    unchanged: int = 0
    parsed: int = 0
    errors: int = 0
    stored: int = 0
    announced: int = 0


class _WriteBatcher:
    """Collects poll outcomes and writes whatever has queued up in one transaction."""

    def __init__(self, storage: Storage, max_batch: int = 256) -> None:
        self.storage = storage
        self.max_batch = max_batch
        self._queue: list[tuple[PollOutcome, asyncio.Future[PollResult]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, outcome: PollOutcome) -> asyncio.Future[PollResult]:
        fut: asyncio.Future[PollResult] = asyncio.get_running_loop().create_future()
        self._queue.append((outcome, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="herald-write-batcher")
        return fut

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                results = await self.storage.apply_polls([o for o, _ in batch])
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else StorageError("write cancelled"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, fut), res in zip(batch, results):
                if not fut.done():
                    fut.set_result(res)


class Poller:
    def __init__(
        self, storage: Storage, fetcher: Fetcher, config: Config, parser: ParsePool, *,
        clock: Clock = time.time,
        on_stored: Callable[[PollResult], None] | None = None,
        on_paused: Callable[[FeedState, str], Awaitable[None]] | None = None,
        metrics: Counters | None = None,
    ) -> None:
        self.storage = storage
        self.fetcher = fetcher
        self.config = config
        self.parser = parser
        self.clock = clock
        self.on_stored = on_stored
        self.on_paused = on_paused
        self.metrics: Counters = metrics or NoCounters()
        self._batcher = _WriteBatcher(storage)
        # Feeds between the start of their fetch and the end of their parse, at most: when parsing is
        # slower than fetching (the first poll of many feeds), fetched bodies would otherwise pile up in
        # memory waiting for a parse worker. Twice the fetch concurrency keeps 304s flowing meanwhile.
        self._in_flight = asyncio.Semaphore(max(64, 2 * config.polling.concurrency))
        self._wake = asyncio.Event()
        self.last_cycle: float | None = None
        self.cycle_done = asyncio.Event()  # set after every completed cycle (health checks, tests)
        self._config_urls = {f.url for f in config.feeds}
        self._moved_warned: set[int] = set()

    def wake(self) -> None:
        self._wake.set()

    async def poll_due(self, limit: int = 1000, *, everything: bool = False) -> PollStats:
        """One cycle: claim every feed that is due (every unpaused feed with ``everything``)
        and poll them concurrently."""
        stats = PollStats()
        while True:
            now = self.clock()
            lease = self.config.polling.timeout * 3 + 60
            if everything:  # one claim of every unpaused feed, whatever its schedule
                feeds = await self.storage.claim_due_feeds(now, 1 << 62, lease, due_by=float("inf"))
            else:
                feeds = await self.storage.claim_due_feeds(now, limit, lease)
            if not feeds:
                break
            results = await asyncio.gather(*(self._poll_one(f, stats) for f in feeds))
            for res in results:
                stats.stored += res.stored
                stats.announced += res.announced
            if everything or len(feeds) < limit:
                break
        self.last_cycle = self.clock()
        self.cycle_done.set()
        return stats

    async def _poll_one(self, feed: FeedState, stats: PollStats) -> PollResult:
        async with self._in_flight:
            outcome = await self.poll_feed(feed, stats)
        res = await self._batcher.submit(outcome)
        if outcome.status != "error" and feed.error_count:
            failing = f" (failing for {_human(outcome.now - feed.first_error_at)})" if feed.first_error_at else ""
            log.info("feed %s recovered after %d failed polls%s", feed.name or feed.url, feed.error_count, failing,
                     extra={"feed": feed.name or feed.url})
        if res.stored:
            self.metrics.count("entries_stored", "", res.stored)
        if res.paused:
            self.metrics.count("feed_paused", "")
        if self.on_stored is not None and res.announced:
            self.on_stored(res)
        if res.paused and self.on_paused is not None and outcome.pause_reason:
            try:
                await self.on_paused(feed, outcome.pause_reason)
            except Exception:
                log.exception("could not send the pause notice of feed %s", feed.url)
        return res

    def _interval(self, feed: FeedState) -> float:
        return feed.interval or self.config.polling.interval

    async def poll_feed(self, feed: FeedState, stats: PollStats | None = None) -> PollOutcome:
        """Fetches, parses and decides one feed. Never raises for a feed's own failure."""
        stats = stats if stats is not None else PollStats()
        stats.polled += 1
        now = self.clock()
        interval = self._interval(feed)
        policy_cfg = self.config.polling
        trusted = feed.url in self._config_urls
        started = time.perf_counter()
        try:
            result = await self.fetcher.fetch(
                feed.url, etag=feed.etag, last_modified=feed.last_modified, guarded=not trusted, allow_file=trusted,
            )
            return await self._after_fetch(feed, result, now, interval, stats)
        except FeedError as exc:
            stats.errors += 1
            errors = feed.error_count + 1
            retry_after = exc.retry_after if isinstance(exc, FetchError) else None
            status = exc.status if isinstance(exc, FetchError) else None
            pause = None
            if isinstance(exc, FeedGone):
                pause = "the server says the feed is gone (HTTP 410)"
            elif feed.first_error_at is not None and now - feed.first_error_at >= policy_cfg.pause_after:
                pause = f"failing for {_human(now - feed.first_error_at)}: {exc}"
            log.warning("feed %s failed (%d in a row): %s", feed.url, errors, exc,
                        extra={"feed": feed.name or feed.url, "error_kind": exc.kind})
            self.metrics.count("poll", "error")
            return PollOutcome(
                feed_id=feed.id, now=now, status="error", http_status=status, error=str(exc)[:500],
                next_fetch=next_fetch(now, interval, errors=errors, retry_after=retry_after, max_backoff=policy_cfg.max_backoff),
                pause_reason=pause,
            )
        except StorageError:
            raise
        except Exception as exc:  # a bug (or a library error) on one feed's input must not break every cycle
            log.exception("feed %s: unexpected error while polling", feed.url, extra={"feed": feed.name or feed.url})
            errors = feed.error_count + 1
            return PollOutcome(
                feed_id=feed.id, now=now, status="error", error=f"internal error: {type(exc).__name__}: {exc}"[:500],
                next_fetch=next_fetch(now, interval, errors=errors, max_backoff=policy_cfg.max_backoff),
            )
        finally:
            self.metrics.observe("fetch_seconds", time.perf_counter() - started)

    async def _after_fetch(self, feed: FeedState, result: FetchResult, now: float, interval: float,
                           stats: PollStats) -> PollOutcome:
        nxt = next_fetch(now, interval)
        new_url = result.permanent_url if result.permanent_url and result.permanent_url != feed.url else None
        if new_url and feed.url in self._config_urls:
            # A config feed's URL is its identity in the config file: rewriting it would make the next
            # start see a new feed (and re-announce its backfill). Follow the redirect; tell the operator.
            if feed.id not in self._moved_warned:
                self._moved_warned.add(feed.id)
                log.warning("feed %s moved permanently to %s; Herald follows the redirect on every poll: "
                            "update its url in the config file", feed.url, new_url, extra={"feed": feed.name or feed.url})
            new_url = None
        if result.status == 304:
            stats.not_modified += 1
            self.metrics.count("poll", "304")
            return PollOutcome(feed.id, now, nxt, "not_modified", http_status=304, new_url=new_url)
        body_hash = result.body_hash
        if feed.body_hash == body_hash and feed.last_success is not None:
            stats.unchanged += 1
            self.metrics.count("poll", "unchanged")
            return PollOutcome(feed.id, now, nxt, "unchanged", http_status=200, etag=result.etag,
                               last_modified=result.last_modified, new_url=new_url)
        t0 = time.perf_counter()
        deferred: dict[int, tuple[str, str | None]] = {}
        if feed.last_success is not None and hasattr(self.parser, "parse_deferred"):
            # most entries are known already: convert HTML to Markdown only for the new ones (below)
            parsed, deferred = await self.parser.parse_deferred(result.body, result.headers, result.url)
        else:
            parsed = await self.parser.parse(result.body, result.headers, result.url)
        self.metrics.observe("parse_seconds", time.perf_counter() - t0)
        stats.parsed += 1
        self.metrics.count("poll", "200")
        if parsed.warning and _cut_short(result.body, parsed):
            # its last entry may be cut in half (no GUID, half a title): storing it would announce it
            # broken now and again, whole, when the document is complete
            raise ParseError("the document is truncated (it ends before its root element closes); nothing stored")
        if parsed.warning:
            log.info("feed %s is malformed but readable: %s", feed.url, parsed.warning)
        keys = [e.key for e in parsed.entries]
        links = [e.link_key for e in parsed.entries if e.link_key]
        known_keys, known_links = await self.storage.known(feed.id, keys, links)
        policy = Policy(backfill=feed.backfill, max_per_poll=feed.max_per_poll or self.config.polling.max_per_poll)
        decision = decide(
            Known(first_fetch=feed.last_success is None, keys=frozenset(known_keys), link_keys=frozenset(known_links)),
            parsed.entries, policy, now,
        )
        if deferred:
            filled = await self._summarise_new(decision, deferred, result.url)
            if filled is None:  # an entry's HTML failed to convert: parse it all at once, as without deferring
                parsed = await self.parser.parse(result.body, result.headers, result.url)
                known_keys, known_links = await self.storage.known(
                    feed.id, [e.key for e in parsed.entries], [e.link_key for e in parsed.entries if e.link_key])
                decision = decide(
                    Known(first_fetch=False, keys=frozenset(known_keys), link_keys=frozenset(known_links)),
                    parsed.entries, policy, now,
                )
            else:
                decision = filled
        if decision.new:
            log.info("feed %s: %d new, %d to announce%s", feed.name or parsed.title or feed.url, len(decision.new),
                     len(decision.announce), f" (+{len(decision.digest)} in a digest)" if decision.digest else "",
                     extra={"feed": feed.name or feed.url})
        return PollOutcome(
            feed.id, now, nxt, "new", http_status=200, etag=result.etag, last_modified=result.last_modified,
            body_hash=body_hash, title=parsed.title, link=parsed.link, image=parsed.image, decision=decision,
            new_url=new_url,
        )

    async def _summarise_new(self, decision: Decision, deferred: dict[int, tuple[str, str | None]],
                             url: str) -> Decision | None:
        """Fills in the summaries (and fallback images) that parse_deferred left out, for the new
        entries only: the same values parse_feed computes. None when one of them failed."""
        todo = [e for e in decision.new if e.position in deferred]
        if not todo:
            return decision
        done = await self.parser.summarise([deferred[e.position] for e in todo], url)
        if any(d is None for d in done):
            return None
        filled = {e.position: complete_deferred(e, d) for e, d in zip(todo, done)}  # type: ignore[arg-type]

        def swap(entries: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(filled.get(e.position, e) for e in entries)

        return replace(decision, new=swap(decision.new), announce=swap(decision.announce), digest=swap(decision.digest))


    async def run(self, stop: asyncio.Event) -> None:
        """Polls until ``stop`` is set: a cycle, then sleep until the next feed is due."""
        while not stop.is_set():
            try:
                await self.poll_due()
                due = await self.storage.next_due_time()
            except StorageError as exc:
                log.error("storage error while polling: %s", exc)
                due = None
            now = self.clock()
            delay = 30.0 if due is None else min(30.0, max(0.05, due - now))
            self._wake.clear()
            await _wait_any(stop, self._wake, delay)


async def _wait_any(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    tasks = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


_ROOT_CLOSE = re.compile(rb"</\s*(?:[A-Za-z_][\w.-]*:)?(?:rss|feed|RDF)\s*>", re.I)


def _cut_short(body: bytes, parsed: ParsedFeed) -> bool:
    """True when a malformed XML feed never closes its root element (``</rss>``, ``</feed>``,
    ``</rdf:RDF>``): the server stopped writing part-way. Text after the root (a PHP warning)
    does not count; UTF-16/32 documents are not checked."""
    if (parsed.version or "").startswith("json") or b"\x00" in body[:4]:
        return False
    return _ROOT_CLOSE.search(body[-65536:]) is None


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"
