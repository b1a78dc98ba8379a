"""Prometheus metrics for one Herald instance.

The poller and the delivery worker call :meth:`Metrics.count` and :meth:`Metrics.observe`
with short names (``count("poll", "304")``, ``observe("parse_seconds", 0.01)``); this module
maps those names to Prometheus series. Gauges that describe state (the delivery queue, paused
feeds, the gateway) are computed when ``/metrics`` is scraped, by :meth:`Metrics.refresh`.

Every instance has its own :class:`~prometheus_client.CollectorRegistry`, so several Heralds
(tests) can run in one process.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot import __version__

log = logging.getLogger("herald.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

POLL_OUTCOMES = ("200", "304", "unchanged", "error")
DELIVERY_OUTCOMES = ("sent", "failed", "retry")

# Feeds are slow (a fetch can take the whole timeout); parsing and Discord requests are quick.
_FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
_PARSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# list_feeds() counts entries per feed; do not run it on every scrape of a large deployment.
FEED_STATE_TTL = 60.0


class Metrics:
    """Herald's counters, histograms and scrape-time gauges, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge("herald_info", "Always 1; the version label says which Herald runs.", ["version"], registry=r)
        self.info.labels(__version__).set(1)

        # polling
        self.polls = Counter("herald_polls", "Feed polls by outcome: 200 (new body, parsed), 304 (not modified), "
                             "unchanged (same body as last time), error.", ["outcome"], registry=r)
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)
        self.fetch_seconds = Histogram("herald_fetch_seconds", "Time to fetch one feed (including failures).",
                                       buckets=_FETCH_BUCKETS, registry=r)
        self.parse_seconds = Histogram("herald_parse_seconds", "Time to parse one feed body.",
                                       buckets=_PARSE_BUCKETS, registry=r)
        self.entries_stored = Counter("herald_entries_stored", "Entries stored (new entries seen in feeds).",
                                      registry=r)
        self.feed_pauses = Counter("herald_feed_pauses", "Feeds paused by Herald (gone, or failing for too long).",
                                   registry=r)
        self.last_cycle = Gauge("herald_last_poll_cycle_timestamp_seconds",
                                "When the scheduler last finished a poll cycle (Unix time; 0: not yet).", registry=r)

        # delivery
        self.announcements = Counter("herald_announcements", "Announcements by outcome: sent, failed (given up), "
                                     "retry (a transient failure, tried again later).", ["outcome"], registry=r)
        for outcome in DELIVERY_OUTCOMES:
            self.announcements.labels(outcome)
        self.delivery_seconds = Histogram("herald_delivery_seconds", "Time to send one announcement, Herald's own "
                                          "pacing included.", buckets=_REQUEST_BUCKETS, registry=r)
        self.queue_depth = Gauge("herald_delivery_queue_depth", "Announcements waiting to be sent.", registry=r)
        self.oldest_pending = Gauge("herald_delivery_oldest_pending_seconds",
                                    "Age of the oldest announcement waiting to be sent (0: none).", registry=r)
        self.deliveries_failed = Gauge("herald_deliveries_failed", "Announcements stored as failed.", registry=r)

        # feeds
        self.feeds = Gauge("herald_feeds", "Feeds with a subscription, by state.", ["state"], registry=r)
        for state in ("active", "paused"):
            self.feeds.labels(state)

        # Discord
        self.discord_requests = Counter("herald_discord_requests", "Discord REST requests by HTTP status.",
                                        ["status"], registry=r)
        self.discord_seconds = Histogram("herald_discord_request_seconds", "Discord REST request latency.",
                                         buckets=_REQUEST_BUCKETS, registry=r)
        self.discord_429 = Counter("herald_discord_rate_limited", "429 answers from Discord (discord.py waits and "
                                   "retries most of them itself).", registry=r)
        self.delivery_429 = Counter("herald_delivery_rate_limited", "429s that reached Herald's delivery (after "
                                    "discord.py's own retries; webhooks included).", registry=r)
        self.gateway_latency = Gauge("herald_discord_gateway_latency_seconds",
                                     "Gateway heartbeat latency (NaN when not connected).", registry=r)
        self.gateway_connected = Gauge("herald_discord_gateway_connected", "1 when the gateway is connected.",
                                       registry=r)
        self._sink_429_seen = 0
        self._feeds_checked = -math.inf
        self._unknown: set[str] = set()

        self._counters: dict[str, Callable[[str, float], None]] = {
            "poll": lambda label, n: self.polls.labels(label).inc(n),
            "delivery": lambda label, n: self.announcements.labels(label).inc(n),
            "entries_stored": lambda _label, n: self.entries_stored.inc(n),
            "feed_paused": self._feed_paused,
        }
        self._histograms: dict[str, Histogram] = {
            "fetch_seconds": self.fetch_seconds,
            "parse_seconds": self.parse_seconds,
            "delivery_seconds": self.delivery_seconds,
        }

    # --- the hooks the pipeline calls ------------------------------------------------------------

    def count(self, name: str, label: str = "", amount: float = 1) -> None:
        fn = self._counters.get(name)
        if fn is None:
            self._warn_unknown(name)
            return
        if amount:
            fn(label, amount)

    def observe(self, name: str, value: float) -> None:
        hist = self._histograms.get(name)
        if hist is None:
            self._warn_unknown(name)
            return
        hist.observe(value)

    def _feed_paused(self, _label: str, n: float) -> None:
        self.feed_pauses.inc(n)
        self.invalidate_feed_states()

    def knows(self, name: str) -> bool:
        return name in self._counters or name in self._histograms

    def _warn_unknown(self, name: str) -> None:
        if name not in self._unknown:
            self._unknown.add(name)
            log.warning("no metric is defined for %r; add it to bot/metrics.py", name)

    # --- Discord REST requests (an aiohttp trace on discord.py's session) -------------------------

    def trace_config(self) -> aiohttp.TraceConfig:
        """Times every Discord REST request and counts its status; the gateway upgrade is left out."""

        async def start(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
            ctx.herald_started = time.perf_counter()

        async def end(_session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
            status = params.response.status
            if status == 101 or params.url.scheme in ("ws", "wss"):
                return
            self.discord_seconds.observe(time.perf_counter() - getattr(ctx, "herald_started", time.perf_counter()))
            self.discord_requests.labels(str(status)).inc()
            if status == 429:
                self.discord_429.inc()

        async def failed(_session: Any, _ctx: SimpleNamespace, _params: Any) -> None:
            self.discord_requests.labels("error").inc()

        tc = aiohttp.TraceConfig()
        tc.on_request_start.append(start)
        tc.on_request_end.append(end)
        tc.on_request_exception.append(failed)
        return tc

    # --- scrape time ---------------------------------------------------------------------------------

    async def refresh(
        self, *, storage: Any = None, last_cycle: float | None = None, gateway_latency: float | None = None,
        gateway_connected: bool | None = None, sink_rate_limited: int | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        """Sets the gauges that describe current state. Storage errors leave the old values."""
        self.last_cycle.set(last_cycle or 0)
        if gateway_connected is not None:
            self.gateway_connected.set(1 if gateway_connected else 0)
            self.gateway_latency.set(gateway_latency if gateway_latency is not None else math.nan)
        if sink_rate_limited is not None and sink_rate_limited > self._sink_429_seen:
            self.delivery_429.inc(sink_rate_limited - self._sink_429_seen)
            self._sink_429_seen = sink_rate_limited
        if storage is None:
            return
        await _quietly(self._refresh_deliveries(storage), "delivery counts")
        if now() - self._feeds_checked >= FEED_STATE_TTL:
            await _quietly(self._refresh_feeds(storage, now), "feed states")

    async def _refresh_deliveries(self, storage: Any) -> None:
        counts = await storage.delivery_counts()
        self.queue_depth.set(counts.get("pending", 0))
        self.oldest_pending.set(counts.get("oldest_pending", 0))
        self.deliveries_failed.set(counts.get("failed", 0))

    async def _refresh_feeds(self, storage: Any, now: Callable[[], float]) -> None:
        feeds = await storage.list_feeds()
        paused = sum(1 for f in feeds if f.paused)
        self.feeds.labels("paused").set(paused)
        self.feeds.labels("active").set(len(feeds) - paused)
        self._feeds_checked = now()

    def invalidate_feed_states(self) -> None:
        """The next refresh reads the feed states again (after a pause, or in tests)."""
        self._feeds_checked = -math.inf

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def _quietly(coro: Awaitable[None], what: str) -> None:
    try:
        await coro
    except Exception as exc:  # a scrape must not fail because the database hiccuped; /healthz reports that
        log.debug("metrics: could not read %s: %s", what, exc)
