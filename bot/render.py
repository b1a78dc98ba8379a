"""Entry to Discord message payload. Pure functions; every limit comes from bot.limits."""

from __future__ import annotations

import bisect
import re
from datetime import datetime, timezone
from typing import Any

from bot import escape, limits
from bot.identity import normalise_link
from bot.markdown import shorten
from bot.models import DEFAULT_FEED_IMAGE, DEFAULT_SUMMARY_LENGTH, StoredEntry, Subscription
from bot.urls import discord_url

ELLIPSIS = "…"
EMBED_COLOR = 0xE67E22
# The target of a masked link: padded with spaces, maybe in <>, maybe with a "title". The
# lookahead and back-reference make the URL match atomic (no backtracking), so it is linear.
_LINK_TARGET = re.compile(
    r"\s*<?(?=((?:\\.|\([^()]{0,512}\)|[^\s\\()<>]){1,2048}))\1>?(?:\s+(?:\"[^\"]{0,512}\"|'[^']{0,512}'))?\s*\)"
)
_MARKUP = re.compile(r"\\(?=[^0-9A-Za-z\s])|[*_~`|\[\]<>]")


def escape_markdown(text: str) -> str:
    """Escapes every Markdown control character, so a title shows as written (``escape.plain``)."""
    return escape.plain(text)


def truncate(text: str, limit: int) -> str:
    """Cuts ``text`` to at most ``limit`` characters at a word boundary, ending with "…"."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    cut = text[: limit - len(ELLIPSIS)]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= len(cut) // 2 and text[len(cut)] not in " \n":  # already at a word's end: keep that word
        cut = cut[:space]
    # never leave half a masked link "[text](http..." behind
    open_bracket = cut.rfind("[")
    if open_bracket != -1 and "](" in cut[open_bracket:] and not cut.endswith(")"):
        tail = cut[open_bracket:]
        if tail.count("(") > tail.count(")"):
            cut = cut[:open_bracket]
    # a lone trailing backslash would escape the ellipsis; an even run is escaped backslashes, kept
    cut = cut.rstrip()
    while (len(cut) - len(cut.rstrip("\\"))) % 2:
        cut = cut[:-1].rstrip()
    return cut + ELLIPSIS


def _fold(text: str) -> str:
    return escape.fold_for_judging(text)


def _misleading(text: str, url: str) -> bool:
    """True when link text shows a URL (markup aside) that is not where the link goes.

    Judged on the text with invisible characters dropped and lookalike punctuation made ASCII
    (``escape.fold_for_judging``); only the first 512 characters count (``escape.looks_like_other_url``)."""
    return escape.looks_like_other_url(text, url)


def _link_text_ends(md: str) -> list[int]:
    """For each position, where link text read from there ends at the latest: the index of
    the "](" that closes it, or -1. Link text as Discord's Markdown reads it is made of
    "[...]" groups, characters other than brackets, and "]" when the next bracket after it is
    a "]" too ("[[a]](u)", "[a]b](u)"). Computed right to left in one pass: linear."""
    last = [-1] * (len(md) + 2)
    next_close = -1  # index of the nearest "]" right of the current position
    next_bracket = ""  # the nearest "[" or "]" right of it
    for p in range(len(md) - 1, -1, -1):
        c = md[p]
        if c == "[":
            last[p] = last[next_close + 1] if next_close != -1 else -1
        elif c == "]":
            here = p if md.startswith("(", p + 1) else -1
            further = last[p + 1] if next_bracket == "]" else -1
            last[p] = further if further != -1 else here
        else:
            last[p] = last[p + 1]
        if c == "]":
            next_close = p
        if c in "[]":
            next_bracket = c
    return last


def _escaped(md: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and md[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


_URL_MARK = re.compile(r"[a-z0-9+.-]://|www\.", re.I)
_HOST_AND_PATH = re.compile(r"[\w-]+(?:\.[\w-]+)+(?:/\S*)?")
_SPACE = re.compile(r"\s")
_NON_SPACE = re.compile(r"\S")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_UNESCAPE = re.compile(r"\\([^0-9A-Za-z\s])")


class _Shown:
    """The Markdown as a reader sees it (markup characters removed, folded for judging), indexed
    so that whether a stretch of it shows a URL takes no work that grows with the stretch's length."""

    def __init__(self, md: str) -> None:
        self.markup = [m.start() for m in _MARKUP.finditer(md)]
        raw = _MARKUP.sub("", md)
        # Folding drops invisible characters and may widen others (NFKC): where it changed the
        # length, and by how much in all up to there, to map a position in ``raw`` to one here.
        self.changed: list[int] = []
        self.shift: list[int] = []
        if raw.isascii():
            self.text = raw
        else:
            parts, pos, total = [], 0, 0
            for m in _NON_ASCII.finditer(raw):
                i = m.start()
                folded = escape.fold_char(m.group())
                parts.append(raw[pos:i])
                parts.append(folded)
                pos = i + 1
                if len(folded) != 1:
                    total += len(folded) - 1
                    self.changed.append(i)
                    self.shift.append(total)
            parts.append(raw[pos:])
            self.text = "".join(parts)
        marks = [(m.start(), m.end()) for m in _URL_MARK.finditer(self.text)]
        self.mark_starts = [a for a, _ in marks]
        self.mark_ends = [b for _, b in marks]
        self.spaces = [m.start() for m in _SPACE.finditer(self.text)]

    def _at(self, i: int) -> int:
        r = i - bisect.bisect_left(self.markup, i)
        k = bisect.bisect_left(self.changed, r)
        return r + (self.shift[k - 1] if k else 0)

    def urlish(self, start: int, end: int) -> bool:
        """Does md[start:end], as shown, hold a scheme or "www.", or is it a host name (and path)?"""
        s0, s1 = self._at(start), self._at(end)
        i = bisect.bisect_left(self.mark_starts, s0)
        if i < len(self.mark_starts) and self.mark_ends[i] < s1:
            return True
        first = _NON_SPACE.search(self.text, s0, s1)
        if first is None:
            return False
        s0 = first.start()
        j = bisect.bisect_left(self.spaces, s0)
        if j < len(self.spaces) and self.spaces[j] < s1:  # one word only, maybe with spaces after it
            if _NON_SPACE.search(self.text, self.spaces[j], s1):
                return False
            s1 = self.spaces[j]
        return _HOST_AND_PATH.fullmatch(self.text, s0, s1) is not None


def defuse_masked_links(markdown: str) -> str:
    """``[https://good](https://evil)`` shows one URL and opens another: show the real target.

    A masked link whose text shows a URL (markup aside) that is not its target becomes
    ``text (<target>)``; one whose target cannot be told for sure is made plain text. Runs in
    about linear time whatever the input, since feed text is hostile input.
    """
    markdown = escape.strip_bidi(markdown)  # an override would show link text in another order
    if "](" not in markdown:
        return markdown
    last = _link_text_ends(markdown)
    shown: _Shown | None = None
    targets: dict[int, re.Match[str] | None] = {}
    out: list[str] = []
    pos = 0
    a = markdown.find("[")
    while a != -1:
        end = last[a + 1]
        if end == -1 or _escaped(markdown, a):
            a = markdown.find("[", a + 1)
            continue
        if end not in targets:
            targets[end] = _LINK_TARGET.match(markdown, end + 2)
        target = targets[end]
        shown = shown or _Shown(markdown)
        if shown.urlish(a + 1, end):
            text = markdown[a + 1:end]
            plain = _fold(_MARKUP.sub("", text)).strip()
            if target is None or normalise_link(plain) != normalise_link(target.group(1)):
                out.append(markdown[pos:a])
                if target is not None:
                    out.append(f"{escape_markdown(text)} ({_real_target(target.group(1))})")
                    pos = target.end()
                else:
                    out.append("\\[" + escape_markdown(text) + "\\](")
                    pos = end + 2
                a = markdown.find("[", pos)
                continue
        # an honest link: what is inside it is its text, not links of its own
        a = markdown.find("[", target.end() if target is not None else a + 1)
    out.append(markdown[pos:])
    return "".join(out)


def _real_target(target: str) -> str:
    """A masked link's target shown as itself: ``<url>`` for an http(s) URL (so it links, and
    nothing in it can end the autolink early), else plain text."""
    url = escape.link_url(_UNESCAPE.sub(r"\1", target))
    return f"<{url}>" if url else escape_markdown(target)


def _shown_title(title: str, url: str | None) -> str:
    """An embed's title, escaped; one that shows a URL other than the one the embed opens is
    followed by the host it really opens, which truncation never cuts off."""
    note = escape_markdown(escape.real_host_note(url)) if url and _misleading(title, url) else ""
    return truncate(escape_markdown(title), limits.EMBED_TITLE - len(note)) + note


def _one_line(text: str | None) -> str:
    """Feed text for one line: what is never shown removed, white space collapsed."""
    return " ".join(escape.clean(text or "").split())


def iso_timestamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _http_url(url: str | None) -> str | None:
    """A URL Discord accepts in an embed (see bot.urls.discord_url), or None."""
    return discord_url(url)


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
    title = _one_line(entry.title) or _one_line(entry.link) or "Untitled post"
    url = _http_url(entry.link)
    if url:
        embed["url"] = url
    embed["title"] = _shown_title(title, url)
    author = " ".join(escape.clean(entry.author or "").split())
    if author:  # Discord refuses an empty author name
        embed["author"] = {"name": truncate(author, limits.EMBED_AUTHOR_NAME)}
    footer = " ".join(escape.clean(feed_title or "").split())
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
    thumbnail = _http_url(entry.thumbnail)
    use_feed_image = sub.feed_image if sub and sub.feed_image is not None else DEFAULT_FEED_IMAGE
    if not image and not thumbnail and use_feed_image:
        thumbnail = _http_url(entry.feed_image)
    if image:
        embed["image"] = {"url": image}
    if thumbnail:
        embed["thumbnail"] = {"url": thumbnail}
    room = limits.EMBED_TOTAL - embed_length(embed)
    length = sub.summary_length if sub and sub.summary_length is not None else DEFAULT_SUMMARY_LENGTH
    description = defuse_masked_links(entry.summary.strip()) if length > 0 else ""
    if description:
        embed["description"] = shorten(description, min(limits.EMBED_DESCRIPTION, room, length))
        if not embed["description"]:
            del embed["description"]
    payload: dict[str, Any] = {"embeds": [embed], "allowed_mentions": allowed_mentions(sub)}
    content = _content(sub)
    if content:
        payload["content"] = content
    return payload


def render_digest(
    entries: list[StoredEntry], feed_title: str | None, sub: Subscription | None = None,
) -> dict[str, Any]:
    """One message that lists entries not announced one by one."""
    name = " ".join(escape.clean(feed_title or "").split()) or "this feed"
    title = truncate(f"and {len(entries)} more from {escape_markdown(name)}", limits.EMBED_TITLE)
    lines: list[str] = []
    budget = min(limits.EMBED_DESCRIPTION, limits.EMBED_TOTAL - len(title) - 64)
    used = 0
    for i, e in enumerate(entries):
        text = " ".join(escape.clean(e.title).split()) or "Untitled post"
        label = truncate(escape_markdown(text), 200)
        raw_url = _http_url(e.link)
        url = escape.link_url(raw_url)
        if url and raw_url and _misleading(text, raw_url):
            line = f"- {label} (<{url}>)"  # a title that shows another URL does not mask the link
        else:
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
    name = _one_line(entry.title) or _one_line(entry.link) or "New post"
    return truncate(name, limits.THREAD_NAME)
