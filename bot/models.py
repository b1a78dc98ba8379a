"""Plain data passed between the pipeline's stages. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot import limits


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One entry as parsed from a feed, before anything is known about it."""

    key: str  # identity key: "id:<guid>", "link:<url>" or "hash:<sha256>"
    link_key: str | None  # the normalised link, the second identity key
    title: str  # plain text
    link: str | None
    summary: str  # Markdown
    author: str | None = None
    published: float | None = None  # Unix time, UTC
    updated: float | None = None
    image: str | None = None  # the embed's large image
    position: int = 0  # index in the document, 0 = first
    thumbnail: str | None = None  # an image declared too narrow for the large image: the embed's thumbnail


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str | None
    link: str | None
    entries: tuple[ParsedEntry, ...]
    warning: str | None = None  # set when the feed was malformed but still yielded entries
    version: str | None = None
    image: str | None = None  # the feed's own image or logo (a fallback thumbnail, see Subscription.feed_image)


@dataclass(frozen=True, slots=True)
class Policy:
    """What a feed's subscriptions want from the decider."""

    backfill: int = 0
    max_per_poll: int = 10


@dataclass(frozen=True, slots=True)
class Known:
    """What the store already knows about the parsed entries of one feed."""

    first_fetch: bool
    keys: frozenset[str] = frozenset()
    link_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    """The decider's verdict on one poll of one feed."""

    new: tuple[ParsedEntry, ...]  # every entry not seen before (stored), oldest first
    announce: tuple[ParsedEntry, ...]  # announced one by one, oldest first
    digest: tuple[ParsedEntry, ...]  # announced together in one digest message, oldest first
    rekey: tuple[tuple[str, str], ...] = ()  # (link_key, new key): same post, new GUID


@dataclass(slots=True)
class FeedState:
    """A feed row as the poller needs it."""

    id: int
    url: str
    name: str | None = None
    title: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    error_count: int = 0
    first_error_at: float | None = None
    last_success: float | None = None
    next_fetch: float = 0.0
    interval: float | None = None
    backfill: int = 0
    max_per_poll: int | None = None
    paused: bool = False


@dataclass(slots=True)
class StoredEntry:
    id: int
    feed_id: int
    key: str
    title: str
    link: str | None
    summary: str
    author: str | None
    published: float | None
    image: str | None
    first_seen: float
    feed_title: str | None = None
    feed_name: str | None = None
    thumbnail: str | None = None
    feed_image: str | None = None  # the feed's own image or logo


DEFAULT_SUMMARY_LENGTH = 500  # characters of Markdown in an announcement's description
MAX_SUMMARY_LENGTH = limits.EMBED_DESCRIPTION
DEFAULT_FEED_IMAGE = False  # the feed's logo on every post without an image is noise, and often a banner


@dataclass(frozen=True, slots=True)
class MessageDefaults:
    """The ``[defaults]`` table: per-feed message options for every feed that does not set them."""

    summary_length: int = DEFAULT_SUMMARY_LENGTH  # 0: no summary
    feed_image: bool = DEFAULT_FEED_IMAGE  # the feed's own image as the thumbnail of entries without one


@dataclass(slots=True)
class Subscription:
    id: int
    feed_id: int
    target: str  # "channel:<id>" or "webhook:<ENV_NAME>"
    guild_id: int | None = None
    mention_roles: tuple[int, ...] = ()
    create_thread: bool = False
    username: str | None = None
    avatar_url: str | None = None
    paused: bool = False
    pause_reason: str | None = None
    source: str = "config"
    alerts_channel: int | None = None  # where notices about this feed go (FeedConfig.alerts_channel)
    # message options: None means the [defaults] value (MessageDefaults), applied before rendering
    summary_length: int | None = None
    feed_image: bool | None = None

    def with_defaults(self, defaults: MessageDefaults) -> Subscription:
        """This subscription with every message option it does not set taken from ``defaults``."""
        return replace(
            self,
            summary_length=defaults.summary_length if self.summary_length is None else self.summary_length,
            feed_image=defaults.feed_image if self.feed_image is None else self.feed_image,
        )

    @property
    def channel_id(self) -> int | None:
        kind, _, value = self.target.partition(":")
        return int(value) if kind == "channel" else None

    @property
    def webhook_env(self) -> str | None:
        kind, _, value = self.target.partition(":")
        return value if kind == "webhook" else None


@dataclass(slots=True)
class Delivery:
    id: int
    subscription_id: int
    entry_ids: tuple[int, ...]  # one entry, or several for a digest
    kind: str  # "entry" or "digest"
    attempts: int = 0


@dataclass(slots=True)
class PollOutcome:
    """Everything one poll of one feed writes (the pipeline's output), applied in one batch with others."""

    feed_id: int
    now: float
    next_fetch: float
    status: str  # "new" (parsed), "unchanged" (identical body), "not_modified" (304), "error"
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
    """What writing one :class:`PollOutcome` did."""

    feed_id: int
    stored: int = 0
    announced: int = 0  # delivery rows created
    paused: bool = False
