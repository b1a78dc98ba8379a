"""The parse workers: feedparser and the HTML conversion run in processes of their own, off the
event loop, each call under a time limit.

:class:`ParsePool` keeps a few worker processes (forkserver children that preloaded
:mod:`bot.parse`; their loop is :mod:`bot.parseworker`). A call that overruns its limit kills
that one worker and fails with "took too long to parse"; the other calls go on. In inline mode
(tests, previews) calls run in threads, which cannot be killed: the caller stops waiting at the
limit and the thread finishes in the background. :func:`stop_parse_servers` stops the
forkserver at exit, so that no process outlives Herald.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot import parseworker
from bot.errors import ParseError
from bot.images import ChosenImage
from bot.logs import get_logger
from bot.models import ParsedFeed
from bot.parse import parse_feed, parse_feed_deferred, summarise

log = get_logger("herald.parse")

DEFAULT_PARSE_TIMEOUT = 15.0  # seconds; [polling] parse_timeout
WORKER_EXIT_WAIT = 2.0  # how long close() waits for a killed worker to be reaped
SERVER_STOP_WAIT = 3.0  # how long stop_parse_servers() waits for the forkserver to exit


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
