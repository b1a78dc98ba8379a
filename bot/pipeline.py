"""The polling half of the pipeline: fetch → parse → decide → store.

I/O lives here (fetcher, storage, process pool); the decisions are made by the
pure functions in :mod:`bot.parse`, :mod:`bot.decide`, :mod:`bot.policy` and
:mod:`bot.schedule`. Log lines about one feed carry its name through
:func:`bot.logs.log_fields`, bound once per poll.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import multiprocessing
import os
import signal
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bot import parseworker
from bot.config import Config, PollingConfig
from bot import policy
from bot.counters import Counters, NoCounters
from bot.decide import decide
from bot.errors import FeedError, ParseError, StorageError
from bot.fetch import Fetcher, FetchResult
from bot.images import ChosenImage
from bot.logs import get_logger, log_fields
from bot.models import Decision, FeedState, ParsedFeed
from bot.parse import complete_deferred, parse_feed, parse_feed_deferred, summarise
from bot.storage.base import DataRejected, PollOutcome, PollResult, Storage

log = get_logger("herald.poll")

Clock = Callable[[], float]

POLLER_MAX_SLEEP = 30.0  # the run loop looks at the schedule at least this often
POLLER_MIN_SLEEP = 0.05
CLAIM_LIMIT = 1000  # feeds claimed at once


DEFAULT_PARSE_TIMEOUT = 15.0  # seconds; [polling] parse_timeout
WORKER_EXIT_WAIT = 2.0  # how long close() waits for a killed worker to be reaped
SERVER_STOP_WAIT = 3.0  # how long stop_parse_servers() waits for the forkserver to exit


def feed_lease(polling: PollingConfig) -> float:
    """How long a claimed feed stays reserved for its poll: the fetch and every parse call of one
    poll (the parse, the new entries' summaries) fit in it, with room to spare."""
    return polling.timeout * 3 + 60 + 3 * polling.parse_timeout


class _Worker:
    """One parse worker process and the parent's end of its pipe.

    :meth:`call` runs in a thread (it blocks on the pipe); everything else runs on the event
    loop. A worker is killed, never asked to stop: it may be stuck in a parse."""

    def __init__(self, ctx: Any) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.stopped = False  # killed by ParsePool.close
        self.process = ctx.Process(target=parseworker.serve, args=(child,), name="herald-parse", daemon=True)
        try:
            self.process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()

    @property
    def pid(self) -> int | None:
        pid: int | None = self.process.pid
        return pid

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> tuple[str, Any]:
        """("ok", result), ("error", exception), ("timeout", None), ("died", None) when the worker
        died during the call, or ("lost", None) when it was gone before (the call never started)."""
        try:
            self.conn.send((fn, args))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            return "lost", None
        try:
            if not self.conn.poll(timeout):
                return "timeout", None
            status, value = self.conn.recv()
        except (EOFError, OSError):  # killed (by close(), the out-of-memory killer) or crashed
            return "died", None
        return status, value

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, ValueError, AttributeError):  # already gone, or never started
            pass

    def reap(self, timeout: float = 0.0) -> None:
        """Closes the pipe and collects the (killed) process; never waits longer than ``timeout``."""
        self.conn.close()
        try:
            self.process.join(timeout)
        except (OSError, ValueError, AssertionError):
            pass


def _mp_context() -> Any:
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["bot.parse", "bot.parseworker"])
    return ctx


class ParsePool:
    """Runs feedparser and the HTML conversions in worker processes, off the event loop, each
    call bounded by ``timeout`` seconds.

    A worker that overruns is killed and replaced (the other calls in flight go on in their own
    workers) and the call raises :class:`ParseError` "took too long to parse", so the feed backs
    off like after any failure. A worker that dies (a crash, the out-of-memory killer) is
    replaced the same way. :meth:`close` kills every worker at once, busy or not.

    ``inline=True`` (tests, previews) parses in threads of the event loop's default executor
    instead. A thread cannot be killed: on overrun the caller stops waiting and gets the same
    error, while the thread finishes its parse in the background.
    """

    def __init__(self, workers: int = 0, *, inline: bool = False, timeout: float = DEFAULT_PARSE_TIMEOUT) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.inline = inline
        self.timeout = timeout
        self._ctx: Any = None
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # _live and _generation, shared with the threads that start workers
        self._live: set[_Worker] = set()  # every started worker not yet killed
        self._generation = 0  # bumped by close()
        _POOLS.add(self)

    @property
    def busy(self) -> int:
        """How many calls are running in a worker right now."""
        return len(self._busy)

    def pids(self) -> list[int]:
        """The process ids of the live workers (idle and busy)."""
        with self._lock:
            return [w.pid for w in self._live if w.pid is not None]

    async def parse(self, body: bytes, headers: dict[str, str], url: str) -> ParsedFeed:
        return await self.call(url, parse_feed, body, headers, url)  # type: ignore[no-any-return]

    async def parse_deferred(
        self, body: bytes, headers: dict[str, str], url: str,
    ) -> tuple[ParsedFeed, dict[int, tuple[str, str | None]]]:
        """:func:`bot.parse.parse_feed_deferred`: summaries left to :meth:`summarise`."""
        return await self.call(url, parse_feed_deferred, body, headers, url)  # type: ignore[no-any-return]

    async def summarise(self, items: Sequence[tuple[str, str | None]],
                        url: str) -> list[tuple[str, ChosenImage | None]]:
        """:func:`bot.parse.summarise`: one (summary, image) for each deferred (html, base), in order."""
        return await self.call(url, summarise, list(items))  # type: ignore[no-any-return]

    def _too_long(self, url: str) -> ParseError:
        return ParseError(f"took too long to parse (over {self.timeout:g}s); Herald stopped it and retries with a "
                          "growing delay. If it keeps happening, check the feed for huge or deeply nested HTML, or "
                          "raise [polling] parse_timeout")

    async def call(self, url: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` (a module-level function: it is pickled by name) in a worker, for feed ``url``."""
        if self.inline:
            return await self._call_inline(url, fn, args)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        async with self._slots:
            for attempt in (1, 2):
                worker = await self._take_worker()
                status, value = await self._run(worker, url, fn, args)
                if status != "lost" or attempt == 2:
                    break
                # an idle worker had died (killed from outside): the call never reached it
        if status == "ok":
            return value
        if status == "error":
            raise value
        if status == "timeout":
            log.warning("parsing feed %s took longer than %gs; its parser process was killed and replaced",
                        url, self.timeout)
            raise self._too_long(url)
        if status == "stopped":
            raise ParseError("the parse was stopped: Herald is shutting down")
        log.warning("parser process died (feed %s); starting a new one", url)
        raise ParseError("the parser process crashed on this feed")

    async def _take_worker(self) -> _Worker:
        if self._idle:
            return self._idle.pop()
        if self._ctx is None:
            self._ctx = _mp_context()
        loop = asyncio.get_running_loop()
        # starting a process blocks (the first one also starts the forkserver): in a thread
        start = loop.run_in_executor(self._executor(), self._start_worker, self._generation)
        try:
            worker = await asyncio.shield(start)
        except asyncio.CancelledError:
            start.add_done_callback(self._keep_started)
            raise
        if worker is None:
            raise ParseError("the parse was stopped: Herald is shutting down")
        return worker

    def _start_worker(self, generation: int) -> _Worker | None:
        """In a thread: a new worker, registered, or None (killed at once) when close() came first."""
        worker = _Worker(self._ctx)
        with self._lock:
            if generation == self._generation:
                self._live.add(worker)
                return worker
        worker.stopped = True
        worker.kill()
        worker.reap(WORKER_EXIT_WAIT)
        return None

    def _keep_started(self, fut: asyncio.Future[_Worker | None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        worker = fut.result()
        if worker is not None and not worker.stopped:
            self._idle.append(worker)

    async def _run(self, worker: _Worker, url: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        self._busy.add(worker)
        running = loop.run_in_executor(self._executor(), worker.call, fn, args, self.timeout)
        try:
            status, value = await asyncio.shield(running)
        except asyncio.CancelledError:  # nobody wants the result any more; the worker may be busy for long
            self._discard(worker, running)
            raise
        except Exception:  # the arguments could not be pickled, or the answer could not be read
            self._discard(worker, running)
            raise
        finally:
            self._busy.discard(worker)
        if status in ("died", "lost") and worker.stopped:
            status = "stopped"
        if status in ("ok", "error") and not worker.stopped:
            self._idle.append(worker)
        else:
            self._discard(worker, running)
        return status, value

    def _discard(self, worker: _Worker, running: asyncio.Future[Any] | None = None) -> None:
        """Kills ``worker``; its pipe is closed once no thread uses it any more."""
        self._busy.discard(worker)
        with self._lock:
            self._live.discard(worker)
        worker.kill()
        if running is None or running.done():
            worker.reap()
        else:
            def reap_after(f: asyncio.Future[Any]) -> None:
                _ignore_result(f)
                worker.reap()

            running.add_done_callback(reap_after)

    def _executor(self) -> ThreadPoolExecutor:
        if self._threads is None:
            # one thread per call in flight, plus room for the threads of killed workers to notice
            self._threads = ThreadPoolExecutor(max_workers=2 * self.workers + 1, thread_name_prefix="herald-parse")
        return self._threads

    async def _call_inline(self, url: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(None, fn, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(running), self.timeout)
        except asyncio.TimeoutError:
            log.warning("parsing feed %s took longer than %gs; stopped waiting for it (the thread finishes in the "
                        "background)", url, self.timeout)
            running.add_done_callback(_ignore_result)
            raise self._too_long(url) from None

    def close(self) -> None:
        """Kills every worker, busy or idle, and waits (briefly) until they are gone. A call in
        flight raises ParseError. The pool can be used again afterwards: it starts new workers."""
        with self._lock:  # a worker that is still starting sees the new generation and kills itself
            self._generation += 1
            victims = list(self._live)
            self._live.clear()
        idle = set(self._idle)
        self._idle = []
        self._busy.clear()
        for w in victims:
            w.stopped = True
            w.kill()
        for w in victims:
            if w in idle:
                w.reap(WORKER_EXIT_WAIT)
                continue
            # busy: its pipe is closed by the call that uses it, which now sees the end of file
            try:
                w.process.join(WORKER_EXIT_WAIT)
            except (OSError, ValueError, AssertionError):
                pass
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        self._slots = None


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so that asyncio does not log it as never retrieved


_POOLS: weakref.WeakSet[ParsePool] = weakref.WeakSet()


def stop_parse_servers(timeout: float = SERVER_STOP_WAIT) -> bool:
    """At the end of a process: stops multiprocessing's forkserver (the parent of every parse
    worker) and its resource tracker, and waits for them, so that no process outlives Herald.
    Does nothing (False) while a pool still has a worker. Never waits longer than about
    ``timeout`` for each: one that does not exit by then (a worker that was still starting
    holds it open) is killed."""
    if any(pool.pids() for pool in list(_POOLS)):
        return False
    from multiprocessing import forkserver, resource_tracker

    for server, pid_attr in ((getattr(forkserver, "_forkserver", None), "_forkserver_pid"),
                             (getattr(resource_tracker, "_resource_tracker", None), "_pid")):
        pid = getattr(server, pid_attr, None)
        if server is None or pid is None:
            continue
        stopper = threading.Thread(target=_stop_quietly, args=(server,), name="herald-stop-forkserver", daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            stopper.join(timeout)
    return True


def _stop_quietly(server: Any) -> None:
    try:
        server._stop()  # closes its "alive" pipe and waits for it: multiprocessing's own shutdown
    except (AttributeError, OSError, RuntimeError):  # not running, or not this Python's internals
        pass


@dataclass(slots=True)
class PollStats:
    polled: int = 0
    not_modified: int = 0
    unchanged: int = 0
    parsed: int = 0
    errors: int = 0
    stored: int = 0
    announced: int = 0


REJECTED_ERROR_CHARS = 400  # of the database's error, in a rejected feed's last_error and log line


class WriteRejected(StorageError):
    """One poll outcome could not be written while others could: the database refused
    something in that feed's data (or a bug tripped on it). Its batch's other outcomes
    were written."""

    def __init__(self, outcome: PollOutcome, cause: BaseException) -> None:
        self.outcome = outcome
        self.cause = cause
        text = str(cause) if isinstance(cause, StorageError) else f"{type(cause).__name__}: {cause}"
        super().__init__(text[:REJECTED_ERROR_CHARS])  # the database may quote the whole offending value


def _outcomes_fault(exc: BaseException) -> bool:
    """True when a failed write may be the fault of what was written rather than of the
    database (locked, full, unreachable: a plain StorageError, which every write would get)."""
    return isinstance(exc, DataRejected) or not isinstance(exc, StorageError)


class _WriteBatcher:
    """Collects poll outcomes and writes whatever has queued up in one transaction.

    A batch that the database refuses for its data (:class:`DataRejected`, or an unexpected
    error) is written again one outcome at a time, so that one feed's bad data fails that
    feed alone, with :class:`WriteRejected`. When the database itself fails (locked, disk
    full, unreachable), every outcome gets its error and nothing is retried.
    """

    def __init__(self, storage: Storage, max_batch: int = 256) -> None:
        self.storage = storage
        self.max_batch = max_batch
        self._queue: list[tuple[PollOutcome, asyncio.Future[PollResult]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, outcome: PollOutcome) -> asyncio.Future[PollResult]:
        fut: asyncio.Future[PollResult] = asyncio.get_running_loop().create_future()
        self._queue.append((outcome, fut))
        if self._writer is None or self._writer.done():
            # in a context of its own: it writes every feed's outcome, its log lines name none of them
            self._writer = contextvars.Context().run(asyncio.create_task, self._drain(), name="herald-write-batcher")
        return fut

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                await self._write(batch)
            except BaseException as exc:
                failure = exc if isinstance(exc, Exception) else StorageError("write cancelled")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise

    async def _write(self, batch: list[tuple[PollOutcome, asyncio.Future[PollResult]]]) -> None:
        try:
            results = await self.storage.apply_polls([o for o, _ in batch])
        except Exception as exc:
            if not _outcomes_fault(exc):
                raise
            if len(batch) == 1:
                batch[0][1].set_exception(WriteRejected(batch[0][0], exc))
            else:
                await self._write_one_by_one(batch)
            return
        if len(results) != len(batch):  # written, but whose result is whose is unknown: not retried
            raise StorageError(f"the storage returned {len(results)} results for {len(batch)} poll outcomes")
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    async def _write_one_by_one(self, batch: list[tuple[PollOutcome, asyncio.Future[PollResult]]]) -> None:
        for outcome, fut in batch:
            if fut.done():
                continue
            try:
                [res] = await self.storage.apply_polls([outcome])
            except Exception as exc:
                if not _outcomes_fault(exc):
                    raise  # the database failed meanwhile: this outcome and the rest get its error
                fut.set_exception(WriteRejected(outcome, exc))
            else:
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
        self.max_tasks = max(64, 2 * config.polling.concurrency)
        self._in_flight = asyncio.Semaphore(self.max_tasks)
        self._wake = asyncio.Event()
        self.last_cycle: float | None = None
        self.cycle_done = asyncio.Event()  # set after every completed cycle (health checks, tests)
        self._config_urls = {f.url for f in config.feeds}
        self._moved_warned: set[int] = set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def lease(self) -> float:
        return feed_lease(self.config.polling)

    async def poll_due(self, limit: int = CLAIM_LIMIT, *, everything: bool = False) -> PollStats:
        """One cycle: claim every feed that is due (every unpaused feed with ``everything``)
        and poll them concurrently."""
        stats = PollStats()
        while True:
            now = self.clock()
            lease = self.lease
            if everything:  # one claim of every unpaused feed, whatever its schedule
                feeds = await self.storage.claim_due_feeds(now, 1 << 62, lease, due_by=float("inf"))
            else:
                feeds = await self.storage.claim_due_feeds(now, limit, lease)
            if not feeds:
                break
            results = await _all_or_cancel([self._poll_one(f, stats) for f in feeds])
            for res in results:
                stats.stored += res.stored
                stats.announced += res.announced
            if everything or len(feeds) < limit:
                break
        self.last_cycle = self.clock()
        self.cycle_done.set()
        return stats

    async def _poll_one(self, feed: FeedState, stats: PollStats) -> PollResult:
        """Polls one feed and writes its outcome; every log line in it names the feed."""
        with log_fields(feed=feed.name or feed.url):
            async with self._in_flight:
                outcome = await self.poll_feed(feed, stats)
            try:
                res = await self._batcher.submit(outcome)
            except WriteRejected as exc:  # this feed's data alone: record it as the feed's error, back off
                outcome = policy.on_rejected(feed, exc.outcome, str(exc), self.config.polling)
                stats.errors += 1
                log.warning("feed %s: %s (%d failed polls in a row; retried after a backoff; if it persists, report "
                            "the feed as a Herald bug)", feed.url, outcome.error, feed.error_count + 1,
                            extra={"error_kind": "storage"})
                self.metrics.count("poll", "error")
                res = await self._batcher.submit(outcome)  # fails only when the database does
            recovered = policy.recovered(feed, outcome)
            if recovered:
                log.info("%s", recovered)
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

    async def poll_feed(self, feed: FeedState, stats: PollStats | None = None) -> PollOutcome:
        """Fetches, parses and decides one feed. Never raises for a feed's own failure."""
        stats = stats if stats is not None else PollStats()
        stats.polled += 1
        now = self.clock()
        trusted = feed.url in self._config_urls
        started = time.perf_counter()
        try:
            result = await self.fetcher.fetch(
                feed.url, etag=feed.etag, last_modified=feed.last_modified, guarded=not trusted, allow_file=trusted,
            )
            return await self._after_fetch(feed, result, now, stats)
        except FeedError as exc:
            stats.errors += 1
            log.warning("feed %s failed (%d in a row): %s", feed.url, feed.error_count + 1, exc,
                        extra={"error_kind": exc.kind})
            self.metrics.count("poll", "error")
            return policy.on_error(feed, exc, now, self.config.polling)
        except StorageError:
            raise
        except Exception as exc:  # a bug (or a library error) on one feed's input must not break every cycle
            log.exception("feed %s: unexpected error while polling", feed.url)
            return policy.on_internal_error(feed, exc, now, self.config.polling)
        finally:
            self.metrics.observe("fetch_seconds", time.perf_counter() - started)

    async def _after_fetch(self, feed: FeedState, result: FetchResult, now: float, stats: PollStats) -> PollOutcome:
        """The I/O of one fetched feed, in order; :mod:`bot.policy` makes every decision.

        1. moved: a permanent redirect moves the feed (a config feed keeps its URL; warned once);
        2. a 304 or the body stored last time: done, nothing parsed;
        3. parse in a worker (after the first poll the HTML conversion is deferred);
        4. a truncated document raises ParseError (poll_feed records it); a malformed one is logged;
        5. ``storage.known`` → :func:`bot.decide.decide`;
        6. summarise the new entries only, in a worker (HTML that fails to convert is plain text);
        7. the outcome, which the caller hands to the write batcher.
        """
        rules = self.config.polling
        moved = policy.on_moved(feed, result.permanent_url, in_config=feed.url in self._config_urls,
                                warned=feed.id in self._moved_warned)
        if moved.warn:
            self._moved_warned.add(feed.id)
            log.warning("feed %s moved permanently to %s; Herald follows the redirect on every poll: "
                        "update its url in the config file", feed.url, moved.warn)
        done = policy.on_fetched(feed, result, now, rules, moved.new_url)
        if done is not None:
            return self._counted(done, stats)
        parsed, deferred = await self._parse(feed, result, stats)
        checked = policy.on_parsed(result.body, parsed)
        if checked.refuse:
            raise ParseError(checked.refuse)
        if checked.warning:
            log.info("feed %s is malformed but readable: %s", feed.url, checked.warning)
        keys, links = policy.identities(parsed)
        known_keys, known_links = await self.storage.known(feed.id, keys, links)
        decision = decide(policy.known(feed, known_keys, known_links), parsed.entries,
                          policy.decide_policy(feed, rules), now)
        decision = await self._summarise_new(decision, deferred, result.url)
        if decision.new:
            log.info("feed %s: %d new, %d to announce%s", feed.name or parsed.title or feed.url, len(decision.new),
                     len(decision.announce), f" (+{len(decision.digest)} in a digest)" if decision.digest else "")
        return policy.on_new(feed, result, parsed, decision, now, rules, moved.new_url)

    def _counted(self, outcome: PollOutcome, stats: PollStats) -> PollOutcome:
        """``outcome`` (a 304 or an unchanged body), counted."""
        if outcome.status == "not_modified":
            stats.not_modified += 1
            self.metrics.count("poll", "304")
        else:
            stats.unchanged += 1
            self.metrics.count("poll", "unchanged")
        return outcome

    async def _parse(self, feed: FeedState, result: FetchResult,
                     stats: PollStats) -> tuple[ParsedFeed, Mapping[int, tuple[str, str | None]]]:
        """The parsed document, in a worker, and the HTML of the summaries it deferred (by position)."""
        started = time.perf_counter()
        if policy.defer_summaries(feed):  # most entries are known already: convert only the new ones' HTML
            parsed, deferred = await self.parser.parse_deferred(result.body, result.headers, result.url)
        else:
            parsed, deferred = await self.parser.parse(result.body, result.headers, result.url), {}
        self.metrics.observe("parse_seconds", time.perf_counter() - started)
        stats.parsed += 1
        self.metrics.count("poll", "200")
        return parsed, deferred

    async def _summarise_new(self, decision: Decision, deferred: Mapping[int, tuple[str, str | None]],
                             url: str) -> Decision:
        """Fills in the summaries (and fallback images) that the parse deferred, for the new
        entries only: the same values a whole parse computes. An entry whose HTML fails to
        convert gets its plain text as its summary (see :func:`bot.parse.summarise`)."""
        todo = policy.needs_summary(decision, deferred)
        if not todo:
            return decision
        done = await self.parser.summarise([deferred[e.position] for e in todo], url)
        return policy.with_summaries(decision, (complete_deferred(e, d) for e, d in zip(todo, done, strict=True)))

    async def run(self, stop: asyncio.Event) -> None:
        """Polls until ``stop`` is set, continuously: every feed is polled in a task of its own
        (at most :attr:`max_tasks` at once), and the loop claims feeds as they become due while
        slow ones are still in flight. A pass (one claim) counts as a completed cycle
        (:attr:`last_cycle`, :attr:`cycle_done`) once every feed it claimed is done, so one slow
        feed delays only its own pass; a pass that claims nothing counts when no poll is in flight.
        On return the polls in flight are cancelled: their feeds' leases run out and they are
        polled again (by this process after a restart, at once)."""
        active: dict[int, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._claim_pass(active)
                    due = await self.storage.next_due_time()
                except StorageError as exc:
                    log.error("storage error while polling: %s", exc)
                    due = None
                now = self.clock()
                delay = POLLER_MAX_SLEEP if due is None else min(POLLER_MAX_SLEEP, max(POLLER_MIN_SLEEP, due - now))
                if len(active) >= self.max_tasks:
                    delay = POLLER_MAX_SLEEP  # a slot frees up: a finished task wakes the loop
                await _wait_any(stop, self._wake, delay)
        finally:
            tasks = list(active.values())
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _claim_pass(self, active: dict[int, asyncio.Task[None]]) -> None:
        """Claims the due feeds that fit in the free task slots and starts a task for each."""
        free = self.max_tasks - len(active)
        feeds = await self.storage.claim_due_feeds(self.clock(), max(0, min(free, CLAIM_LIMIT)), self.lease) \
            if free > 0 else []
        feeds = [f for f in feeds if f.id not in active]  # (a lease that ran out while its poll was in flight)
        cycle = _Pass(len(feeds))
        if not feeds:
            if not active:  # nothing due and nothing in flight: a complete (empty) cycle
                self._cycle_finished()
            return
        stats = PollStats()
        for feed in feeds:
            task = asyncio.create_task(self._poll_task(feed, stats), name=f"herald-poll-{feed.id}")
            active[feed.id] = task
            task.add_done_callback(functools.partial(self._task_done, active, feed.id, cycle=cycle))

    def _task_done(self, active: dict[int, asyncio.Task[None]], feed_id: int, task: asyncio.Task[None], *,
                   cycle: _Pass) -> None:
        if active.get(feed_id) is task:
            del active[feed_id]
        cycle.remaining -= 1
        if cycle.remaining == 0 and not task.cancelled():
            self._cycle_finished()
        self._wake.set()  # a free slot, and a new next-due time

    def _cycle_finished(self) -> None:
        self.last_cycle = self.clock()
        self.cycle_done.set()

    async def _poll_task(self, feed: FeedState, stats: PollStats) -> None:
        """One feed's poll in the continuous loop: every error is logged here, naming the feed."""
        with log_fields(feed=feed.name or feed.url):
            try:
                await self._poll_one(feed, stats)
            except asyncio.CancelledError:
                raise
            except StorageError as exc:
                log.error("storage error while polling: %s", exc)
            except Exception:
                log.exception("feed %s: the poll failed; it is polled again when its lease runs out", feed.url)


@dataclass(slots=True)
class _Pass:
    remaining: int


async def _all_or_cancel(coros: Sequence[Awaitable[PollResult]]) -> list[PollResult]:
    """Like ``asyncio.gather``, but the first exception (a storage error) cancels the other polls
    and waits for them before it is raised: nothing keeps running behind a failed cycle."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:  # also when the cycle itself is cancelled
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _wait_any(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    tasks = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
