"""The storage interface, by domain. SQLite and PostgreSQL both implement it and pass the same contract tests.

:class:`Storage` is what the rest of Herald holds: the union of four small protocols, each
implemented once in SQL (:mod:`bot.storage.feeds`, :mod:`bot.storage.polling`,
:mod:`bot.storage.outbox`, :mod:`bot.storage.reading`) plus each backend's own
:class:`SearchIndex`, composed by :class:`bot.storage.sql.SqlStorage`. Code that needs one
domain only may ask for that protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.config import FeedConfig
from bot.errors import StorageError
from bot.models import Delivery, FeedState, PollOutcome, PollResult, StoredEntry, Subscription

__all__ = [
    "ClaimedDelivery", "DataRejected", "FeedInfo", "FeedStore", "Outbox", "PollOutcome", "PollResult", "PollStore",
    "Reader", "SearchHit", "SearchIndex", "SearchPage", "Storage",
]


class DataRejected(StorageError):
    """The database refused a value it was given (a character it cannot store, a key too
    long for its index, a broken constraint): the data's fault, not the database's, so other
    writes still work. Both backends raise it for the same causes."""


@dataclass(slots=True)
class FeedInfo:
    """A feed as listed and inspected by managers (per guild when guild_id is set)."""

    id: int
    url: str
    name: str
    title: str | None
    source: str
    paused: bool
    pause_reason: str | None
    targets: list[str] = field(default_factory=list)
    last_fetch: float | None = None
    last_success: float | None = None
    next_fetch: float | None = None
    last_error: str | None = None
    error_count: int = 0
    entries: int = 0
    pending: int = 0
    failed: int = 0


@dataclass(slots=True)
class SearchHit:
    entry: StoredEntry
    feed_name: str
    snippet: str
    rank: float


@dataclass(slots=True)
class SearchPage:
    total: int
    hits: list[SearchHit]


@dataclass(slots=True)
class ClaimedDelivery:
    delivery: Delivery
    subscription: Subscription
    entries: list[StoredEntry]
    feed_title: str | None


class FeedStore(Protocol):
    """Feeds and their subscriptions: what the config file and the managers' commands change."""

    async def sync_config_feeds(self, feeds: Sequence[FeedConfig], now: float,
                                default_interval: float | None = None) -> None: ...
    async def add_feed(
        self, url: str, *, target: str, guild_id: int | None, name: str | None, backfill: int, now: float,
        title: str | None = None, source: str = "discord",
    ) -> int: ...
    async def remove_subscriptions(self, feed_id: int, guild_id: int) -> int: ...
    async def set_paused(
        self, feed_id: int, paused: bool, reason: str | None = None, guild_id: int | None = None,
    ) -> int: ...
    async def list_feeds(self, guild_id: int | None = None) -> list[FeedInfo]: ...
    async def find_feed(self, name_or_url: str, guild_id: int | None = None) -> FeedInfo | None:
        """The feed (with an active subscription, in the server when ``guild_id`` is set) whose
        name, URL or id is ``name_or_url``, case-insensitively; the first as listed."""
    async def feed_in_target(self, url: str, target: str, guild_id: int | None = None) -> FeedInfo | None:
        """The feed at ``url`` when ``target`` (in the server, when set) is subscribed to it."""
    async def discord_feed_count(self, guild_id: int) -> int:
        """How many of the server's feeds were added from Discord (its quota counts these)."""
    async def set_subscription_guild(self, target: str, guild_id: int) -> None:
        """Records the server of a target's subscriptions that have none yet."""
    async def subscriptions(self, feed_id: int | None = None) -> list[Subscription]: ...
    async def pause_target(self, target: str, reason: str, now: float) -> list[Subscription]: ...


class PollStore(Protocol):
    """The poller's side: leasing due feeds, what is known of parsed entries, writing polls."""

    async def claim_due_feeds(
        self, now: float, limit: int, lease: float, due_by: float | None = None,
    ) -> list[FeedState]: ...
    async def next_due_time(self) -> float | None: ...
    async def known(self, feed_id: int, keys: Sequence[str], link_keys: Sequence[str]) -> tuple[set[str], set[str]]: ...
    async def apply_polls(self, outcomes: Sequence[PollOutcome]) -> list[PollResult]: ...


class Outbox(Protocol):
    """The delivery outbox: pending messages per target, claimed one head at a time under a lease."""

    @property
    def exclusive(self) -> bool: ...
    async def due_targets(self, now: float) -> list[str]: ...
    async def claim_delivery(self, target: str, now: float, lease: float) -> ClaimedDelivery | None: ...
    async def mark_delivered(self, delivery_id: int, message_id: str | None, now: float) -> None: ...
    async def mark_failed(self, delivery_id: int, error: str, now: float) -> None: ...
    async def retry_later(self, delivery_id: int, at: float, error: str) -> None: ...
    async def release(self, delivery_id: int) -> None: ...
    async def release_all_leases(self) -> None: ...
    async def next_delivery_time(self) -> float | None: ...
    async def delivery_counts(self) -> dict[str, int]: ...


class Reader(Protocol):
    """Reading stored entries back (``/recent``, previews, search results)."""

    async def get_entries(self, entry_ids: Sequence[int]) -> list[StoredEntry]: ...
    async def recent(self, *, guild_id: int | None, feed_id: int | None, limit: int) -> list[StoredEntry]: ...


class SearchIndex(Protocol):
    """Full-text search over stored entries: each backend provides its own."""

    async def search(
        self, query: str, *, guild_id: int | None = None, feed_id: int | None = None, since: float | None = None,
        limit: int = 5, offset: int = 0,
    ) -> SearchPage: ...


class Storage(FeedStore, PollStore, Outbox, Reader, SearchIndex, Protocol):
    """What the pipeline, the delivery worker and the commands need from a database."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...
