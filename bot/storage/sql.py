"""The storage object Herald holds: the four SQL domains and a backend's search, composed.

Each domain is a small protocol in :mod:`bot.storage.base` with one SQL implementation that
both databases run (feeds and subscriptions: :mod:`bot.storage.feeds`; polling:
:mod:`bot.storage.polling`; the outbox: :mod:`bot.storage.outbox`; reading:
:mod:`bot.storage.reading`); what differs between the databases is a
:class:`bot.storage.schema.Dialect` and the :class:`bot.storage.base.SearchIndex` each backend
passes in. :class:`SqlStorage` only forwards to them, so callers keep one object with
every method (:class:`bot.storage.base.Storage`), and may hold a single domain instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import FeedConfig
from bot.models import FeedState, PollOutcome, PollResult, StoredEntry, Subscription
from bot.storage.base import ClaimedDelivery, FeedInfo, SearchIndex, SearchPage
from bot.storage.db import Database
from bot.storage.feeds import DEFAULT_INTERVAL_KEY, SqlFeeds
from bot.storage.outbox import SqlOutbox
from bot.storage.polling import SqlPolling
from bot.storage.reading import SqlReader
from bot.storage.rows import ENTRY_COLUMNS
from bot.storage.schema import Dialect

__all__ = ["DEFAULT_INTERVAL_KEY", "ENTRY_COLUMNS", "SqlStorage"]


class SqlStorage:
    """Implements :class:`bot.storage.base.Storage` over a :class:`Database` adapter."""

    def __init__(self, db: Database, dialect: Dialect, search: SearchIndex) -> None:
        self.db = db
        self.dialect = dialect
        self.feeds = SqlFeeds(db, dialect)
        self.polling = SqlPolling(db, dialect)
        self.outbox = SqlOutbox(db, dialect)
        self.reader = SqlReader(db, dialect)
        self.search_index = search

    # --- lifecycle and small settings (command hash, ...) --------------------------------------

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.fetchone("SELECT 1")

    async def get_meta(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- feeds and subscriptions ----------------------------------------------------------------

    async def sync_config_feeds(self, feeds: Sequence[FeedConfig], now: float,
                                default_interval: float | None = None) -> None:
        await self.feeds.sync_config_feeds(feeds, now, default_interval)

    async def add_feed(
        self, url: str, *, target: str, guild_id: int | None, name: str | None, backfill: int, now: float,
        title: str | None = None, source: str = "discord",
    ) -> int:
        return await self.feeds.add_feed(url, target=target, guild_id=guild_id, name=name, backfill=backfill, now=now,
                                         title=title, source=source)

    async def remove_subscriptions(self, feed_id: int, guild_id: int) -> int:
        return await self.feeds.remove_subscriptions(feed_id, guild_id)

    async def set_paused(
        self, feed_id: int, paused: bool, reason: str | None = None, guild_id: int | None = None,
    ) -> int:
        return await self.feeds.set_paused(feed_id, paused, reason, guild_id)

    async def list_feeds(self, guild_id: int | None = None) -> list[FeedInfo]:
        return await self.feeds.list_feeds(guild_id)

    async def find_feed(self, name_or_url: str, guild_id: int | None = None) -> FeedInfo | None:
        return await self.feeds.find_feed(name_or_url, guild_id)

    async def feed_in_target(self, url: str, target: str, guild_id: int | None = None) -> FeedInfo | None:
        return await self.feeds.feed_in_target(url, target, guild_id)

    async def discord_feed_count(self, guild_id: int) -> int:
        return await self.feeds.discord_feed_count(guild_id)

    async def set_subscription_guild(self, target: str, guild_id: int) -> None:
        await self.feeds.set_subscription_guild(target, guild_id)

    async def subscriptions(self, feed_id: int | None = None) -> list[Subscription]:
        return await self.feeds.subscriptions(feed_id)

    async def pause_target(self, target: str, reason: str, now: float) -> list[Subscription]:
        return await self.feeds.pause_target(target, reason, now)

    # --- polling --------------------------------------------------------------------------------

    async def claim_due_feeds(
        self, now: float, limit: int, lease: float, due_by: float | None = None,
    ) -> list[FeedState]:
        return await self.polling.claim_due_feeds(now, limit, lease, due_by)

    async def next_due_time(self) -> float | None:
        return await self.polling.next_due_time()

    async def known(self, feed_id: int, keys: Sequence[str], link_keys: Sequence[str]) -> tuple[set[str], set[str]]:
        return await self.polling.known(feed_id, keys, link_keys)

    async def apply_polls(self, outcomes: Sequence[PollOutcome]) -> list[PollResult]:
        return await self.polling.apply_polls(outcomes)

    # --- the outbox -----------------------------------------------------------------------------

    @property
    def exclusive(self) -> bool:
        return self.outbox.exclusive

    async def due_targets(self, now: float) -> list[str]:
        return await self.outbox.due_targets(now)

    async def claim_delivery(self, target: str, now: float, lease: float) -> ClaimedDelivery | None:
        return await self.outbox.claim_delivery(target, now, lease)

    async def mark_delivered(self, delivery_id: int, message_id: str | None, now: float) -> None:
        await self.outbox.mark_delivered(delivery_id, message_id, now)

    async def mark_failed(self, delivery_id: int, error: str, now: float) -> None:
        await self.outbox.mark_failed(delivery_id, error, now)

    async def retry_later(self, delivery_id: int, at: float, error: str) -> None:
        await self.outbox.retry_later(delivery_id, at, error)

    async def release(self, delivery_id: int) -> None:
        await self.outbox.release(delivery_id)

    async def release_all_leases(self) -> None:
        await self.outbox.release_all_leases()

    async def next_delivery_time(self) -> float | None:
        return await self.outbox.next_delivery_time()

    async def delivery_counts(self) -> dict[str, int]:
        return await self.outbox.delivery_counts()

    # --- reading and search ---------------------------------------------------------------------

    async def get_entries(self, entry_ids: Sequence[int]) -> list[StoredEntry]:
        return await self.reader.get_entries(entry_ids)

    async def recent(self, *, guild_id: int | None, feed_id: int | None, limit: int) -> list[StoredEntry]:
        return await self.reader.recent(guild_id=guild_id, feed_id=feed_id, limit=limit)

    async def search(
        self, query: str, *, guild_id: int | None = None, feed_id: int | None = None, since: float | None = None,
        limit: int = 5, offset: int = 0,
    ) -> SearchPage:
        return await self.search_index.search(query, guild_id=guild_id, feed_id=feed_id, since=since, limit=limit,
                                              offset=offset)
