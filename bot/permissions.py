"""Can Herald announce into a channel? One check for the startup check, ``/feed add`` and ``herald doctor``.

:func:`check_channel` is pure: a channel's type and the bot's permissions there (from discord.py's
cache, or computed by the doctor from the REST API's roles and overwrites) in, the target's kind
and the permissions it lacks out. Each caller words the outcome for its reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import discord

TargetKind = Literal["text", "announcement", "forum", "media", "thread"]

USABLE_TYPES: dict[discord.ChannelType, TargetKind] = {
    discord.ChannelType.text: "text",
    discord.ChannelType.news: "announcement",
    discord.ChannelType.forum: "forum",
    discord.ChannelType.media: "media",
    discord.ChannelType.public_thread: "thread",
    discord.ChannelType.private_thread: "thread",
    discord.ChannelType.news_thread: "thread",
}
USABLE_WORDS = "a text, announcement, forum or thread channel"


def channel_type(value: object) -> discord.ChannelType | None:
    """A channel type from discord.py's value or the REST API's number; None when unknown."""
    if isinstance(value, discord.ChannelType):
        return value
    try:
        return discord.ChannelType(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def required_permissions(kind: TargetKind, create_thread: bool = False) -> dict[str, str]:
    """Permission attribute → the name Discord's UI shows, for a target of ``kind``."""
    needed = {"view_channel": "View Channel", "embed_links": "Embed Links"}
    if kind == "thread":
        needed["send_messages_in_threads"] = "Send Messages in Threads"
    elif kind in ("forum", "media"):
        needed["send_messages"] = "Create Posts"
    else:
        needed["send_messages"] = "Send Messages"
        if create_thread:
            needed["create_public_threads"] = "Create Public Threads"
    return needed


@dataclass(frozen=True, slots=True)
class ChannelCheck:
    """The outcome: ``kind`` None means Herald cannot post into this type of channel at all."""

    kind: TargetKind | None
    missing: tuple[str, ...] = ()  # the permissions the bot lacks there, as Discord's UI names them

    @property
    def usable(self) -> bool:
        return self.kind is not None and not self.missing


def check_channel(ctype: object, perms: discord.Permissions | None, *, create_thread: bool = False) -> ChannelCheck:
    """Checks a channel of type ``ctype`` where the bot has ``perms`` (None: not known here, so
    only the type is checked; sending will tell)."""
    kind = USABLE_TYPES.get(channel_type(ctype))  # type: ignore[arg-type]
    if kind is None:
        return ChannelCheck(None)
    if perms is None:
        return ChannelCheck(kind)
    needed = required_permissions(kind, create_thread)
    return ChannelCheck(kind, tuple(label for attr, label in needed.items() if not getattr(perms, attr)))


def channel_problem(channel: object, channel_id: int, *, create_thread: bool = False) -> str | None:
    """The problem with a discord.py channel object as Herald's log and ``/feed add`` say it, or None."""
    guild = getattr(channel, "guild", None)
    me = getattr(guild, "me", None)
    perms = channel.permissions_for(me) if me is not None else None  # type: ignore[attr-defined]
    ctype = getattr(channel, "type", None)
    result = check_channel(ctype, perms, create_thread=create_thread)
    if result.kind is None:
        return f"channel {channel_id} ({getattr(channel, 'name', '?')}) is a {ctype} channel; use {USABLE_WORDS}"
    if result.missing:
        return f"channel #{getattr(channel, 'name', '?')} ({channel_id}): the bot lacks {', '.join(result.missing)}"
    return None


def can_post_plain(channel: object) -> bool:
    """False only when the cache shows the bot cannot post a plain message (a notice) in
    ``channel``; None (not in the cache) is tried, and Discord's answer decides."""
    if channel is None:
        return True
    ctype = getattr(channel, "type", None)
    if ctype in (discord.ChannelType.forum, discord.ChannelType.media, discord.ChannelType.category):
        return False
    guild = getattr(channel, "guild", None)
    me = getattr(guild, "me", None)
    if me is None:
        return True
    perms = channel.permissions_for(me)  # type: ignore[attr-defined]
    send = perms.send_messages_in_threads if isinstance(channel, discord.Thread) else perms.send_messages
    return bool(perms.view_channel and send)
