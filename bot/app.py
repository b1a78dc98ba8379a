"""Wires the pipeline together: storage, fetcher, parser pool, poller and delivery worker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot import notices
from bot.config import Config
from bot.counters import Counters
from bot.deliver import DeliveryWorker, Sink
from bot.fetch import Fetcher
from bot.models import FeedState
from bot.notices import Notifier
from bot.parsepool import ParsePool
from bot.pipeline import Poller, PollStats
from bot.storage import open_storage
from bot.storage.base import Storage

log = logging.getLogger("herald")

# A loop that crashed is restarted after RESTART_FIRST seconds, doubling up to RESTART_MAX; one that
# ran at least RESTART_RESET seconds before crashing starts again from the short pause.
RESTART_FIRST = 1.0
RESTART_MAX = 60.0
RESTART_RESET = 60.0
DELIVERY_STOP_TIMEOUT = 5.0  # seconds in-flight deliveries get to finish when Herald stops


class Herald:
    """The core service, independent of Discord: poll feeds, store entries, deliver to a sink.

    What needs a person's attention (a feed paused, a target Discord refuses) goes to ``notifier``
    as a value from bot.notices; without one it is only logged."""

    def __init__(
        self, config: Config, sink: Sink, *, storage: Storage | None = None, clock: Callable[[], float] = time.time,
        parse_inline: bool = False, metrics: Counters | None = None, notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.clock = clock
        self.metrics: Counters | None = metrics  # a bot.metrics.Metrics when the process serves /metrics
        self.notifier = notifier
        self.storage = storage or open_storage(config.storage_url())
        p = config.polling
        self.fetcher = Fetcher(timeout=p.timeout, max_bytes=p.max_bytes, concurrency=p.concurrency, per_host=p.per_host,
                               allow_private=p.allow_private)
        self.parser = ParsePool(p.parse_workers, inline=parse_inline, timeout=p.parse_timeout)
        self.worker = DeliveryWorker(self.storage, sink, clock=clock, metrics=metrics,
                                     on_target_broken=self.target_broken, defaults=config.defaults)
        self.poller = Poller(self.storage, self.fetcher, config, self.parser, clock=clock,
                             on_stored=lambda _res: self.worker.wake(), on_paused=self.feed_paused, metrics=metrics)
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

    async def __aenter__(self) -> Herald:
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
            await self.worker.stop(timeout=DELIVERY_STOP_TIMEOUT)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, fn: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
        """Restarts a loop that crashed, with a growing pause, so one bug cannot stop Herald."""
        delay = RESTART_FIRST
        while not stop.is_set():
            started = time.monotonic()
            try:
                await fn(stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s loop crashed; restarting in %.0fs", name, delay)
            if time.monotonic() - started > RESTART_RESET:
                delay = RESTART_FIRST
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, RESTART_MAX)

    async def feed_paused(self, feed: FeedState, reason: str) -> None:
        """The poller paused ``feed``: logged, and one notice."""
        log.error("feed %s paused: %s", feed.url, reason, extra={"feed": feed.name or feed.url})
        if self.notifier is not None:
            await self.notifier.notify(notices.FeedPaused(
                feed_id=feed.id, name=feed.name or feed.title or feed.url, reason=reason, command_name=feed.name))

    async def target_broken(self, target: str, reason: str) -> None:
        """One notice when Discord refuses a target (deleted channel, lost permission), routed like a
        feed's notices: the target's own subscription is paused by now, so it is never the one used."""
        if self.notifier is None:
            return
        subs = [s for s in await self.storage.subscriptions() if s.target == target]
        feeds = [info for info in await self.storage.list_feeds() if any(s.feed_id == info.id for s in subs)]
        chosen = subs[0].feed_id if subs else None
        for feed_id in dict.fromkeys(s.feed_id for s in subs):  # a feed with somewhere left to take the notice
            if any(s.alerts_channel or (s.channel_id is not None and not s.paused)
                   for s in await self.storage.subscriptions(feed_id)):
                chosen = feed_id
                break
        await self.notifier.notify(notices.TargetBroken(
            feed_id=chosen, target=target, channel_id=subs[0].channel_id if subs else None,
            feeds=tuple(notices.BrokenFeed(f.id, f.name) for f in feeds), reason=reason))
