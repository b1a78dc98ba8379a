"""Small helpers shared by the cogs: formatting for Discord, feed-name autocomplete."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import limits
from bot.manage import autocomplete_names
from bot.render import escape_markdown, truncate

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot

_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)?")
_LEFTOVER_URL = re.compile(r"\]\([^)\s]*\)?|\(https?://[^)\s]*\)?")
_KEEP_BOLD = "\x00"


_ESCAPE = re.compile(r"\\([^0-9A-Za-z\s])")
_ESCAPED_STAR = "\x01"


def clean_snippet(snippet: str, limit: int = 300) -> str:
    """A search snippet fit for an embed: links reduced to their text, Markdown escaped
    except the ``**`` that marks matched terms, on one line. Summaries are stored with their
    text escaped (bot.markdown): those escapes are undone first, so nothing is escaped twice."""
    text = _ESCAPE.sub(lambda m: _ESCAPED_STAR if m.group(1) == "*" else m.group(1), snippet)
    text = text.replace("**", _KEEP_BOLD).replace(_ESCAPED_STAR, "*")
    text = _MD_LINK.sub(r"\1", text)
    text = _LEFTOVER_URL.sub("", text)
    text = re.sub(r"(?m)^\s*#+\s*", "", text)
    text = " ".join(text.split())
    text = escape_markdown(text.replace("[", "").replace("]", ""))
    text = truncate(text, limit)
    if text.count(_KEEP_BOLD) % 2:  # truncation cut a highlighted term: drop its opening marker
        head, _, tail = text.rpartition(_KEEP_BOLD)
        text = head + tail
    return text.replace(_KEEP_BOLD, "**")


def link_line(title: str, url: str | None) -> str:
    label = truncate(escape_markdown(" ".join(title.split()) or "Untitled post"), 200)
    if url and re.match(r"^https?://\S+$", url) and len(url) <= limits.EMBED_URL:
        return f"[{label}](<{url}>)" if ")" in url else f"[{label}]({url})"
    return label


def when(ts: float | None) -> str:
    return f"<t:{int(ts)}:d>" if ts else "undated"


class FeedNames:
    """Per-guild feed names for autocomplete, cached briefly so answers come well within 3 s."""

    TTL = 5.0

    def __init__(self, bot: "HeraldBot") -> None:
        self.bot = bot
        self._cache: dict[int, tuple[float, list[str]]] = {}

    def invalidate(self, guild_id: int | None) -> None:
        if guild_id is not None:
            self._cache.pop(guild_id, None)

    async def names(self, guild_id: int) -> list[str]:
        hit = self._cache.get(guild_id)
        now = time.monotonic()
        if hit and now - hit[0] < self.TTL:
            return hit[1]
        feeds = await self.bot.storage.list_feeds(guild_id)
        names = [f.name for f in feeds]
        self._cache[guild_id] = (now, names)
        return names

    async def choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        names = autocomplete_names(await self.names(interaction.guild_id), current, limits.AUTOCOMPLETE_CHOICES)
        return [app_commands.Choice(name=n[: limits.CHOICE_NAME], value=n[: limits.CHOICE_VALUE]) for n in names]


def feed_names(bot: "HeraldBot") -> FeedNames:
    existing = getattr(bot, "_feed_names", None)
    if existing is None:
        existing = FeedNames(bot)
        bot._feed_names = existing  # type: ignore[attr-defined]
    return existing
