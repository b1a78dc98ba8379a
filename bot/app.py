"""Wires the pipeline together: storage, fetcher, parser pool, poller and delivery worker."""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from typing import Awaitable, Callable

from bot.config import Config
from bot.counters import Counters
from bot.deliver import DeliveryWorker, Sink
from bot.fetch import Fetcher
from bot.models import FeedState
from bot.pipeline import ParsePool, Poller, PollStats
from bot import escape
from bot.storage import open_storage
from bot.storage.base import Storage

log = logging.getLogger("herald")


class Herald:
    """The core service, independent of Discord: poll feeds, store entries, deliver to a sink."""

    def __init__(
        self, config: Config, sink: Sink, *, storage: Storage | None = None, clock: Callable[[], float] = time.time,
        parse_inline: bool = False, metrics: Counters | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.clock = clock
        self.metrics: Counters | None = metrics  # a bot.metrics.Metrics when the process serves /metrics
        self.storage = storage or open_storage(config.storage_url())
        p = config.polling
        self.fetcher = Fetcher(timeout=p.timeout, max_bytes=p.max_bytes, concurrency=p.concurrency, per_host=p.per_host,
                               allow_private=p.allow_private)
        self.parser = ParsePool(p.parse_workers, inline=parse_inline, timeout=p.parse_timeout)
        self.worker = DeliveryWorker(self.storage, sink, clock=clock, metrics=metrics,
                                     on_target_broken=self._target_broken, defaults=config.defaults)
        self.poller = Poller(self.storage, self.fetcher, config, self.parser, clock=clock,
                             on_stored=lambda _res: self.worker.wake(), on_paused=self._feed_paused, metrics=metrics)
        self.alert: Callable[[str, int | None, str], Awaitable[None]] | None = None
        self._opened = False

    async def open(self) -> None:
        await self.storage.open()
        self._opened = True
        if self.storage.exclusive:
            # An embedded database belongs to one Herald process: leases left by a process that was
            # killed would otherwise hold its in-flight delivery back until they expire.
            await self.storage.release_all_leases()
        await self.storage.sync_config_feeds(self.config.feeds, self.clock(), self.config.polling.interval)

    async def close(self) -> None:
        await self.fetcher.close()
        self.parser.close()
        if self._opened:
            await self.storage.close()
            self._opened = False

    async def __aenter__(self) -> "Herald":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run_once(self) -> tuple[PollStats, int]:
        """One poll cycle over every due feed, then deliver everything that is due."""
        stats = await self.poller.poll_due(everything=True)
        sent = await self.worker.deliver_due()
        return stats, sent

    async def run(self, stop: asyncio.Event) -> None:
        """Polls and delivers until ``stop`` is set, then lets in-flight deliveries finish."""
        tasks = [
            asyncio.create_task(self._supervise("poller", self.poller.run, stop)),
            asyncio.create_task(self._supervise("delivery", self.worker.run, stop)),
        ]
        try:
            await stop.wait()
        finally:
            self.poller.wake()
            self.worker.wake()
            await self.worker.stop(timeout=5.0)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, fn: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
        """Restarts a loop that crashed, with a growing pause, so one bug cannot stop Herald."""
        delay = 1.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                await fn(stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s loop crashed; restarting in %.0fs", name, delay)
            if time.monotonic() - started > 60:
                delay = 1.0
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 60.0)

    async def _feed_paused(self, feed: FeedState, reason: str) -> None:
        log.error("feed %s paused: %s", feed.url, reason, extra={"feed": feed.name or feed.url})
        if self.alert is not None:
            name = escape.plain(feed.name or feed.title or feed.url, one_line=True)  # a feed's own title is untrusted
            text = (f"Feed **{name}** was paused: {escape.plain(reason, one_line=True)}\n"
                    f"Resume it with `/feed resume` or {_resume_command(feed.name, feed.id)}.")
            await self.alert("feed", feed.id, text)

    async def _target_broken(self, target: str, reason: str) -> None:
        """One notice when Discord refuses a target (deleted channel, lost permission), routed like a
        feed's notices: the target's own subscription is paused by now, so it is never the one used."""
        if self.alert is None:
            return
        subs = [s for s in await self.storage.subscriptions() if s.target == target]
        feeds = [info for info in await self.storage.list_feeds() if any(s.feed_id == info.id for s in subs)]
        where = f"<#{subs[0].channel_id}>" if subs and subs[0].channel_id is not None else escape.code_span(target)
        names = ", ".join(f"**{escape.plain(f.name, one_line=True)}**" for f in feeds) or "its feeds"
        text = (f"Stopped announcing {names} into {where}: {escape.plain(reason, one_line=True)}\n"
                f"Fix the channel or the bot's permissions there, then resume with `/feed resume`"
                + (f" or {_resume_command(feeds[0].name, feeds[0].id)}." if feeds else "."))
        chosen = subs[0].feed_id if subs else None
        for feed_id in dict.fromkeys(s.feed_id for s in subs):  # a feed with somewhere left to take the notice
            if any(s.alerts_channel or (s.channel_id is not None and not s.paused)
                   for s in await self.storage.subscriptions(feed_id)):
                chosen = feed_id
                break
        await self.alert("target", chosen, text)


def _resume_command(name: str | None, feed_id: int) -> str:
    """``herald feeds resume NAME`` as a code span to copy into a shell: the name quoted for the
    shell, or the feed's id when the code span could not show the name exactly (a backtick, an
    invisible character, a line break in it)."""
    arg = shlex.quote(name) if name and escape.code_span(name) == f"`{name}`" else str(feed_id)
    return escape.code_span(f"herald feeds resume {arg}")
