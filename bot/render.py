"""Entry to Discord message payload. Pure functions; every limit comes from bot.limits."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from bot import limits
from bot.identity import normalise_link
from bot.models import StoredEntry, Subscription

ELLIPSIS = "…"
EMBED_COLOR = 0xE67E22
_MD_SPECIAL = re.compile(r"([\\*_~`|\[\]])")
_MD_LINE_START = re.compile(r"^(\s*)(?:([#>-])|(\d+)\.)", re.M)
_MASKED_LINK = re.compile(r"\[([^\]\n]{0,512})\]\((<?)([^)\s>]+)(>?)\)")
_URLISH = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S|^[\w-]+(?:\.[\w-]+)+(?:/\S*)?$", re.I)


def escape_markdown(text: str) -> str:
    """Escapes every Markdown control character, so a title shows as written."""
    def line_start(m: re.Match[str]) -> str:
        return m.group(1) + ("\\" + m.group(2) if m.group(2) else m.group(3) + "\\.")

    return _MD_LINE_START.sub(line_start, _MD_SPECIAL.sub(r"\\\1", text))


def truncate(text: str, limit: int) -> str:
    """Cuts ``text`` to at most ``limit`` characters at a word boundary, ending with "…"."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    cut = text[: limit - len(ELLIPSIS)]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= len(cut) // 2:
        cut = cut[:space]
    # never leave half a masked link "[text](http..." behind
    open_bracket = cut.rfind("[")
    if open_bracket != -1 and "](" in cut[open_bracket:] and not cut.endswith(")"):
        tail = cut[open_bracket:]
        if tail.count("(") > tail.count(")"):
            cut = cut[:open_bracket]
    # a trailing backslash would escape the ellipsis
    cut = cut.rstrip()
    while cut.endswith("\\"):
        cut = cut[:-1]
    return cut + ELLIPSIS


def defuse_masked_links(markdown: str) -> str:
    """``[https://good](https://evil)`` shows one URL and opens another: show the real target."""

    def repl(m: re.Match[str]) -> str:
        text, url = m.group(1), m.group(3)
        if _URLISH.search(text.strip()) and normalise_link(text.strip()) != normalise_link(url):
            return f"{escape_markdown(text)} (<{url}>)" if text.strip() else url
        return m.group(0)

    return _MASKED_LINK.sub(repl, markdown)


def iso_timestamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _http_url(url: str | None) -> str | None:
    if url and re.match(r"^https?://", url, re.I) and len(url) <= limits.EMBED_URL and not re.search(r"\s", url):
        return url
    return None


def allowed_mentions(sub: Subscription | None) -> dict[str, Any]:
    """Feed text never pings anyone; only the subscription's configured roles may be."""
    roles = list(sub.mention_roles) if sub else []
    out: dict[str, Any] = {"parse": []}
    if roles:
        out["roles"] = [str(r) for r in roles]
    return out


def _content(sub: Subscription | None) -> str | None:
    if sub and sub.mention_roles:
        return truncate(" ".join(f"<@&{r}>" for r in sub.mention_roles), limits.MESSAGE_CONTENT)
    return None


def embed_length(embed: dict[str, Any]) -> int:
    """The characters Discord counts toward the 6000 total of one embed."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    for f in embed.get("fields", []):
        total += len(f.get("name", "")) + len(f.get("value", ""))
    return total


def render_entry(entry: StoredEntry, feed_title: str | None, sub: Subscription | None = None) -> dict[str, Any]:
    """The JSON body of ``POST /channels/{id}/messages`` announcing one entry."""
    embed: dict[str, Any] = {"type": "rich", "color": EMBED_COLOR}
    title = " ".join(entry.title.split()) or (entry.link or "Untitled post")
    embed["title"] = truncate(escape_markdown(title), limits.EMBED_TITLE)
    url = _http_url(entry.link)
    if url:
        embed["url"] = url
    if entry.author:
        embed["author"] = {"name": truncate(" ".join(entry.author.split()), limits.EMBED_AUTHOR_NAME)}
    footer = " ".join((feed_title or "").split())
    if footer:
        embed["footer"] = {"text": truncate(footer, limits.EMBED_FOOTER_TEXT)}
    ts = entry.published
    if ts is None or ts > entry.first_seen + 86400:
        ts = entry.first_seen  # no date, or dated in the future: the time Herald first saw it
    try:
        embed["timestamp"] = iso_timestamp(ts)
    except (OverflowError, OSError, ValueError):
        pass
    image = _http_url(entry.image)
    if image:
        embed["image"] = {"url": image}
    room = limits.EMBED_TOTAL - embed_length(embed)
    description = defuse_masked_links(entry.summary.strip())
    if description:
        embed["description"] = truncate(description, min(limits.EMBED_DESCRIPTION, room))
        if not embed["description"]:
            del embed["description"]
    payload: dict[str, Any] = {"embeds": [embed], "allowed_mentions": allowed_mentions(sub)}
    content = _content(sub)
    if content:
        payload["content"] = content
    return payload


def render_digest(entries: list[StoredEntry], feed_title: str | None, sub: Subscription | None = None) -> dict[str, Any]:
    """One message that lists entries not announced one by one."""
    name = " ".join((feed_title or "this feed").split())
    title = truncate(f"and {len(entries)} more from {escape_markdown(name)}", limits.EMBED_TITLE)
    lines: list[str] = []
    budget = min(limits.EMBED_DESCRIPTION, limits.EMBED_TOTAL - len(title) - 64)
    used = 0
    for i, e in enumerate(entries):
        label = truncate(escape_markdown(" ".join(e.title.split()) or "Untitled post"), 200)
        url = _http_url(e.link)
        line = f"- [{label}]({url})" if url else f"- {label}"
        remaining = len(entries) - i
        tail = f"\n… and {remaining} more"
        if used + len(line) + 1 + len(tail) > budget:
            lines.append(f"… and {remaining} more")
            break
        lines.append(line)
        used += len(line) + 1
    embed: dict[str, Any] = {"type": "rich", "color": EMBED_COLOR, "title": title, "description": "\n".join(lines)}
    payload: dict[str, Any] = {"embeds": [embed], "allowed_mentions": allowed_mentions(sub)}
    content = _content(sub)
    if content:
        payload["content"] = content
    return payload


def thread_name(entry: StoredEntry) -> str:
    """A forum post's or thread's name: the entry's title, plain, ≤ 100 characters."""
    name = " ".join(entry.title.split()) or " ".join((entry.link or "").split()) or "New post"
    return truncate(name, limits.THREAD_NAME)
