"""Small helpers shared by the cogs: formatting for Discord, feed-name autocomplete."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import escape, limits
from bot.manage import autocomplete_names
from bot.render import truncate

if TYPE_CHECKING:
    from bot.service import FeedService

_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)?")
_LEFTOVER_URL = re.compile(r"\]\([^)\s]*\)?|\(https?://[^)\s]*\)?")
_HEADING = re.compile(r"(?m)^[ \t]*#+[ \t]*")
_KEEP_BOLD = "\x00"  # stands for a highlight marker while the text is cut; escape.plain drops it from text
NAME_CHARS = 100  # a feed's name in a list line
LABEL_CHARS = 200  # a post's title in a list line


_ESCAPE = re.compile(r"\\([^0-9A-Za-z\s])")
_ESCAPED_STAR = "\x01"


def clean_snippet(snippet: str, limit: int = 300) -> str:
    """A search snippet fit for an embed: links reduced to their text, Markdown escaped
    except the ``**`` that marks matched terms, on one line. Summaries are stored with their
    text escaped (bot.markdown): those escapes are undone first, so nothing is escaped twice."""
    text = _ESCAPE.sub(lambda m: _ESCAPED_STAR if m.group(1) == "*" else m.group(1), snippet)
    text = _MD_LINK.sub(r"\1", text)
    text = _LEFTOVER_URL.sub("", text)
    text = _HEADING.sub("", text)
    text = " ".join(text.split()).replace("[", "").replace("]", "")
    parts = text.split("**")
    if len(parts) % 2 == 0:  # an odd marker out is not a highlight: shown as typed
        parts[-2:] = [parts[-2] + "**" + parts[-1]]
    pieces = []
    for i, part in enumerate(parts):
        shown = escape.plain(part.replace(_ESCAPED_STAR, "*"), one_line=True)
        pieces.append(_KEEP_BOLD + shown + _KEEP_BOLD if i % 2 and shown.strip() else shown)
    text = "".join(pieces)
    text = truncate(text, limit)
    if text.count(_KEEP_BOLD) % 2:  # truncation cut a highlighted term: drop its opening marker
        head, _, tail = text.rpartition(_KEEP_BOLD)
        text = head + tail
    return text.replace(_KEEP_BOLD, "**")


def feed_name(name: str | None) -> str:
    """A feed's name (often the feed's own title, so untrusted) as plain text on one line."""
    return escape.plain(truncate(" ".join(escape.clean(name or "").split()), NAME_CHARS), one_line=True)


def link_line(title: str, url: str | None) -> str:
    """A post's title linking to it; a title that shows another URL names the real host."""
    text = truncate(" ".join(escape.clean(title).split()) or "Untitled post", LABEL_CHARS)
    target = escape.link_url(url) if url and len(url) <= limits.EMBED_URL else None
    if target is None:
        return escape.plain(text, one_line=True)
    return f"[{escape.link_text(text, url)}]({target})"


def shown_url(url: str) -> str:
    """A feed's URL: a link showing itself when it is http(s), else plain text."""
    target = escape.link_url(url) if len(url) <= limits.EMBED_URL else None
    return f"<{target}>" if target else escape.plain(truncate(url, LABEL_CHARS), one_line=True)


def when(ts: float | None) -> str:
    return f"<t:{int(ts)}:d>" if ts else "undated"


async def feed_choices(feeds: FeedService, interaction: discord.Interaction,
                       current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete for a ``feed`` option: this server's feed names matching what is typed."""
    if interaction.guild_id is None:
        return []
    names = autocomplete_names(await feeds.names.names(interaction.guild_id), current, limits.AUTOCOMPLETE_CHOICES)
    return [app_commands.Choice(name=n[: limits.CHOICE_NAME], value=n[: limits.CHOICE_VALUE]) for n in names]
