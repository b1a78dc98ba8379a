"""Where an announcement goes: a Discord channel, or an incoming webhook. Pure; no I/O here.

A target is stored and logged as text, ``channel:<id>`` or ``webhook:<ENV_NAME>`` (the name
of the environment variable holding the webhook's URL, never the URL: it is a secret).
:func:`parse_target` and :func:`format_target` are the only code that reads or writes that
text; everything else holds a :data:`Target`.

A channel target's id may name a text or announcement channel, a forum or media channel, or
a thread: they share one id space, and which request posts into it depends on the channel's
type, which only Discord knows (:func:`post_shape` maps it once it is known). A webhook posts
into its own channel, or into a thread of it when its URL carries ``?thread_id=<id>``
(:func:`webhook_address`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias
from urllib.parse import parse_qs, urlsplit


TargetKind: TypeAlias = Literal["channel", "webhook"]
CHANNEL: Final = "channel"
WEBHOOK: Final = "webhook"


@dataclass(frozen=True, slots=True)
class ChannelTarget:
    """A channel, forum, media channel or thread, by id; Herald posts as the bot."""

    channel_id: int

    def __str__(self) -> str:
        return format_target(self)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """An incoming webhook whose URL is in the environment variable ``env``."""

    env: str

    def __str__(self) -> str:
        return format_target(self)


Target: TypeAlias = ChannelTarget | WebhookTarget

# A target's text is short (an id or a variable name); a longer one is not a target.
MAX_TARGET_CHARS = 200


def parse_target(text: str) -> Target:
    """``channel:<id>`` or ``webhook:<ENV_NAME>`` → a Target. Raises ValueError, naming the text,
    for anything else (the text comes from Herald's own database, so this means a bug or a
    database edited by hand)."""
    kind, sep, value = text.partition(":")
    if sep and len(text) <= MAX_TARGET_CHARS:
        if kind == CHANNEL and value.isascii() and value.isdigit():
            return ChannelTarget(int(value))
        if kind == WEBHOOK and value and value.strip() == value:
            return WebhookTarget(value)
    raise ValueError(f"not a target: {text[:MAX_TARGET_CHARS]!r} (expected 'channel:<id>' or 'webhook:<ENV_NAME>')")


def format_target(target: Target) -> str:
    """A Target → its stored text; ``parse_target(format_target(t)) == t``."""
    if isinstance(target, ChannelTarget):
        return f"{CHANNEL}:{target.channel_id}"
    return f"{WEBHOOK}:{target.env}"


def channel_id_of(text: str) -> int | None:
    """The channel id of a stored target, or None for a webhook (or a target that is not one)."""
    try:
        target = parse_target(text)
    except ValueError:
        return None
    return target.channel_id if isinstance(target, ChannelTarget) else None


def webhook_env_of(text: str) -> str | None:
    """The webhook variable of a stored target, or None for a channel (or a target that is not one)."""
    try:
        target = parse_target(text)
    except ValueError:
        return None
    return target.env if isinstance(target, WebhookTarget) else None


# --- how a message gets into a channel, once its type is known ---

PostShape: TypeAlias = Literal["message", "forum_post"]

# discord.py's ChannelType names (str(channel.type)) of channels that take a message as a new post
FORUM_CHANNEL_TYPES = frozenset({"forum", "media"})
# ... and of those where Herald can open a thread on its message (create_thread)
THREADABLE_CHANNEL_TYPES = frozenset({"text", "news"})


def post_shape(channel_type: str) -> PostShape:
    """``forum_post`` (``POST /channels/{id}/threads`` with the message) for a forum or media
    channel, ``message`` (``POST /channels/{id}/messages``) for a text, announcement or thread."""
    return "forum_post" if channel_type in FORUM_CHANNEL_TYPES else "message"


# --- the webhook behind a webhook target ---


@dataclass(frozen=True, slots=True)
class WebhookAddress:
    """A webhook URL taken apart: ``{base}/webhooks/{webhook_id}/{token}[?thread_id=<id>]``.
    ``base`` is the API root the URL names (``https://discord.com/api``)."""

    base: str
    webhook_id: int
    token: str
    thread_id: int | None = None


_WEBHOOKS_SEGMENT = "webhooks"


def webhook_address(url: str) -> WebhookAddress | None:
    """A webhook URL's parts, or None when ``url`` is not an http(s) URL ending in
    ``/webhooks/<id>/<token>`` (an optional ``thread_id`` in its query names a thread)."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unbalanced [ in the host, a port out of range
        return None
    segments = parts.path.rstrip("/").split("/")
    if not valid or len(segments) < 3 or segments[-3] != _WEBHOOKS_SEGMENT:
        return None
    webhook_id, token = segments[-2], segments[-1]
    if not (webhook_id.isascii() and webhook_id.isdigit()) or not token:
        return None
    thread_values = parse_qs(parts.query).get("thread_id") or [""]
    thread = thread_values[-1]
    if thread and not (thread.isascii() and thread.isdigit()):
        return None
    base = f"{parts.scheme}://{parts.netloc}{'/'.join(segments[:-3])}"
    return WebhookAddress(base, int(webhook_id), token, int(thread) if thread else None)
