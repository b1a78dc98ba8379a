"""The storage interface. SQLite and PostgreSQL both implement it and pass the same contract tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from bot.config import FeedConfig
from bot.errors import StorageError
from bot.models import Decision, Delivery, FeedState, PollStatus, StoredEntry, Subscription, SubscriptionSource


class DataRejected(StorageError):
    """The database refused a value it was given (a character it cannot store, a key too
    long for its index, a broken constraint): the data's fault, not the database's, so other
    writes still work. Both backends raise it for the same causes."""


@dataclass(slots=True)
class PollOutcome:
    """Everything one poll of one feed writes, applied in one batch with others."""

    feed_id: int
    now: float
    next_fetch: float
    status: PollStatus  # "new" (parsed), "unchanged" (identical body), "not_modified" (304), "error"
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    title: str | None = None
    link: str | None = None
    image: str | None = None  # the feed's own image or logo
    error: str | None = None
    decision: Decision | None = None
    new_url: str | None = None  # after a permanent redirect
    pause_reason: str | None = None  # pause the feed (410 Gone, failing for too long)


@dataclass(slots=True)
class PollResult:
    feed_id: int
    stored: int = 0
    announced: int = 0  # delivery rows created
    paused: bool = False


@dataclass(slots=True)
class FeedInfo:
    """A feed as listed and inspected by managers (per guild when guild_id is set)."""

    id: int
    url: str
    name: str
    title: str | None
    source: SubscriptionSource
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


class Storage(Protocol):
    """What the pipeline, the delivery worker and the commands need from a database."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # feeds and subscriptions
    async def sync_config_feeds(self, feeds: Sequence[FeedConfig], now: float,
                                default_interval: float | None = None) -> None: ...
    async def add_feed(
        self, url: str, *, target: str, guild_id: int | None, name: str | None, backfill: int, now: float,
        title: str | None = None, source: SubscriptionSource = "discord",
    ) -> int: ...
    async def remove_subscriptions(self, feed_id: int, guild_id: int) -> int: ...
    async def set_paused(self, feed_id: int, paused: bool, reason: str | None = None, guild_id: int | None = None) -> int: ...
    async def list_feeds(self, guild_id: int | None = None) -> list[FeedInfo]: ...
    async def find_feed(self, name_or_url: str, guild_id: int | None = None) -> FeedInfo | None: ...
    async def set_subscription_guild(self, target: str, guild_id: int) -> None:
        """Records the server of a target's subscriptions that have none yet."""
    async def subscriptions(self, feed_id: int | None = None) -> list[Subscription]: ...
    async def pause_target(self, target: str, reason: str, now: float) -> list[Subscription]: ...

    # polling
    async def claim_due_feeds(self, now: float, limit: int, lease: float, due_by: float | None = None) -> list[FeedState]: ...
    async def next_due_time(self) -> float | None: ...
    async def known(self, feed_id: int, keys: Sequence[str], link_keys: Sequence[str]) -> tuple[set[str], set[str]]: ...
    async def apply_polls(self, outcomes: Sequence[PollOutcome]) -> list[PollResult]: ...

    # delivery outbox
    async def due_targets(self, now: float) -> list[str]: ...
    async def claim_delivery(self, target: str, now: float, lease: float) -> ClaimedDelivery | None: ...
    async def mark_delivered(self, delivery_id: int, message_id: str | None, now: float) -> None: ...
    async def mark_failed(self, delivery_id: int, error: str, now: float) -> None: ...
    async def retry_later(self, delivery_id: int, at: float, error: str) -> None: ...
    async def release(self, delivery_id: int) -> None: ...
    async def release_all_leases(self) -> None: ...

    @property
    def exclusive(self) -> bool: ...
    async def next_delivery_time(self) -> float | None: ...
    async def delivery_counts(self) -> dict[str, int]: ...

    # reading
    async def get_entries(self, entry_ids: Sequence[int]) -> list[StoredEntry]: ...
    async def recent(self, *, guild_id: int | None, feed_id: int | None, limit: int) -> list[StoredEntry]: ...
    async def search(
        self, query: str, *, guild_id: int | None = None, feed_id: int | None = None, since: float | None = None,
        limit: int = 5, offset: int = 0,
    ) -> SearchPage: ...
    async def ping(self) -> None: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...
