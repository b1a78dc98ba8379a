"""Feed bytes to :class:`~bot.models.ParsedFeed`. Pure: no I/O, safe in a worker process.

feedparser is CPU-bound, so the pipeline runs :func:`parse_feed` in a process
pool; everything it returns is plain, picklable data.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin

import feedparser
from feedparser.datetimes import _parse_date as _feedparser_date

from bot import escape
from bot.errors import ParseError
from bot.fields import (clean_author, entry_images, fallback_title, feed_image_urls, plain_text, plausible,
                        title_is_missing, tolerant_date)
from bot.identity import entry_key, normalise_link
from bot.images import ChosenImage, ImageCandidate, choose_image, content_images, feed_thumbnail
from bot.markdown import MAX_OUTPUT_CHARS, html_to_markdown, strip_tags
from bot.models import ParsedEntry, ParsedFeed

# Stored summaries are capped: enough for any embed and for search, bounded for 5 MB entries.
MAX_SUMMARY_CHARS = MAX_OUTPUT_CHARS  # html_to_markdown cuts its Markdown to this already
_MAX_HTML_CHARS = 400_000

# feedparser resolves relative URIs and sanitizes HTML itself; we do both in bot.markdown.
feedparser.RESOLVE_RELATIVE_URIS = 0
feedparser.SANITIZE_HTML = 1


class _SanitizeMemo:
    """Remembers feedparser's sanitized HTML, by a SHA-256 of its input, in a bounded LRU.

    feedparser sanitizes every HTML field of every entry while it parses: about a third of
    its time. A changed feed repeats most entries of its previous version, and sanitizing
    is a pure function of (HTML, encoding, content type), so a parse worker that has seen
    an entry before gets the same text back without sanitizing it again.
    """

    MIN_CHARS = 256  # titles and short fields: not worth a lookup

    def __init__(self, fn: Callable[[str, Any, Any], str], limit_chars: int) -> None:
        self.fn = fn
        self.limit_chars = limit_chars
        self.chars = 0
        self.items: OrderedDict[bytes, str] = OrderedDict()
        self.lock = threading.Lock()  # the inline parser runs in threads

    def __call__(self, html_source: Any, encoding: Any, _type: Any) -> Any:
        if not isinstance(html_source, str) or len(html_source) < self.MIN_CHARS:
            return self.fn(html_source, encoding, _type)
        key = hashlib.sha256(
            f"{encoding}\x00{_type}\x00".encode("utf-8", "surrogatepass") + html_source.encode("utf-8", "surrogatepass")
        ).digest()
        with self.lock:
            hit = self.items.get(key)
            if hit is not None:
                self.items.move_to_end(key)
                return hit
        out = self.fn(html_source, encoding, _type)
        if isinstance(out, str) and len(out) <= self.limit_chars // 8:
            with self.lock:
                if key not in self.items:
                    self.items[key] = out
                    self.chars += len(out)
                    while self.chars > self.limit_chars:
                        _, old = self.items.popitem(last=False)
                        self.chars -= len(old)
        return out


# up to ~16 MB of sanitized text per parse process (entries of a few hundred feeds)
SANITIZED_CACHE_CHARS = 16_000_000
if callable(getattr(getattr(feedparser, "mixin", None), "_sanitize_html", None)):
    feedparser.mixin._sanitize_html = _SanitizeMemo(feedparser.mixin._sanitize_html, SANITIZED_CACHE_CHARS)

_JSON_START = re.compile(rb"^\s*(\xef\xbb\xbf)?\s*\{")


def parse_feed(
    body: bytes, headers: Mapping[str, str] | None = None, url: str | None = None, *,
    deferred: dict[int, tuple[str, str | None]] | None = None,
) -> ParsedFeed:
    """Parses RSS, Atom, RDF or JSON Feed. Raises ParseError when it is not a feed.

    With ``deferred`` (a dict to fill), an entry whose identity key does not depend on its
    summary (it has a GUID or a link) is returned with an empty summary and no fallback
    image; its HTML is put in ``deferred[position]`` instead, for :func:`summarise` to
    convert later, if the entry turns out to be new. HTML to Markdown is half the cost of
    a parse, and a changed feed usually has one new entry among many known ones.
    """
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    ctype = lower.get("content-type", "").lower()
    if _JSON_START.match(body[:64]) or "json" in ctype:
        return _parse_json_feed(body, url)
    response_headers = dict(lower)
    if url and not response_headers.get("content-location"):
        response_headers["content-location"] = url  # the base for relative links, with or without other headers
    try:
        result = feedparser.parse(body, response_headers=response_headers)
    except Exception as exc:  # feedparser raises on some malformed input
        raise ParseError(f"feed could not be parsed: {type(exc).__name__}: {exc}") from None
    warning = None
    if result.get("bozo"):
        bozo = result.get("bozo_exception")
        warning = f"{type(bozo).__name__}: {bozo}" if bozo else "malformed feed"
        if not result.entries and not result.get("version"):
            raise ParseError(f"not a feed ({_short(warning)})")
    if not result.get("version") and not result.entries:
        raise ParseError("not a feed (no RSS, Atom or JSON Feed found)")
    feed = result.feed
    base = feed.get("link") or url
    entries = []
    for i, e in enumerate(result.entries):
        try:
            entries.append(_entry_from_feedparser(e, i, base, deferred))
        except Exception as exc:  # one odd entry must not lose the others
            warning = warning or f"entry {i} skipped: {type(exc).__name__}"
    return ParsedFeed(
        title=_plain_title(feed) or None,
        link=feed.get("link") or None,
        entries=tuple(entries),
        warning=warning,
        version=result.get("version") or None,
        image=feed_thumbnail(feed_image_urls(feed, base)),
    )


def _short(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _ts(parsed: Any) -> float | None:
    if not parsed:
        return None
    try:
        return float(calendar.timegm(parsed))
    except (TypeError, ValueError, OverflowError):
        return None


def _entry_from_feedparser(e: Any, position: int, base: str | None,
                           deferred: dict[int, tuple[str, str | None]] | None = None) -> ParsedEntry:
    link = _first_link(e)
    raw_title = _plain_title(e)
    html = ""
    content = e.get("content")
    if content:
        html = max((c.get("value", "") for c in content), key=len)
    summary_html = e.get("summary", "")
    if not html or (summary_html and len(summary_html) >= len(html)):
        html = summary_html or html
    html = html[:_MAX_HTML_CHARS]
    guid = e.get("id")
    chosen = choose_image(entry_images(e, link or base))  # media, enclosures, itunes:image: no HTML needed
    if deferred is not None and ((guid and guid.strip()) or (link and link.strip())):  # entry_key needs no summary
        deferred[position] = (html, link or base)
        summary = ""
    else:
        summary, from_content = summarise_html(html, link or base, image=chosen is None)
        chosen = chosen or from_content
    published = _date(e, "published") or _date(e, "updated")
    updated = _date(e, "updated", own=True)
    date_text = e.get("published") or e.get("updated")
    title = raw_title
    if title_is_missing(raw_title, link):
        title = fallback_title(plain_text(html)) or raw_title
    return ParsedEntry(
        # the identity key keeps the title as the feed gives it: a derived title must not re-announce old entries
        key=entry_key(guid, link, raw_title, date_text, summary),
        link_key=normalise_link(link),
        title=title,
        link=link,
        summary=summary,
        author=_author(e),
        published=published,
        updated=updated,
        image=chosen.url if chosen and not chosen.thumbnail else None,
        thumbnail=chosen.url if chosen and chosen.thumbnail else None,
        position=position,
    )


def _date(e: Any, name: str, *, own: bool = False) -> float | None:
    """``published`` or ``updated`` as Unix time: feedparser's parse, else a tolerant one of the text.

    ``own``: the entry's own field only (feedparser answers ``updated`` with the published date)."""
    get = (lambda k: dict.get(e, k)) if own else e.get
    ts = plausible(_ts(get(f"{name}_parsed")))
    if ts is None:
        text = get(name)
        ts = tolerant_date(text) if isinstance(text, str) else None
    return ts


def _author(e: Any) -> str | None:
    """The entry's author (Atom author, RSS author, dc:creator, itunes:author), a name not an email."""
    detail = e.get("author_detail") or {}
    for value in (detail.get("name"), e.get("author"), e.get("itunes_author")):
        if isinstance(value, str):
            name = clean_author(strip_tags(value[:1024]))
            if name:
                return name
    return None


# HTML elements found in titles that feedparser still calls plain text ("a <br/> b")
_TITLE_TAG = re.compile(
    r"</?(?:a|abbr|b|big|br|cite|code|del|div|em|font|h[1-6]|i|img|ins|kbd|mark|p|q|s|small|span|strike|strong|"
    r"sub|sup|tt|u|script|style|iframe)(?:\s[^<>]*)?/?>", re.I)


def _plain_title(d: Any) -> str:
    """A title as plain text. feedparser says whether it is text or HTML: a text title keeps
    "Vec<T>" and "a < b" (only known HTML tags go); an HTML one loses every tag and has its
    entities decoded."""
    title = d.get("title", "") or ""
    if (d.get("title_detail") or {}).get("type") == "text/plain":
        return " ".join(_TITLE_TAG.sub("", title).split())
    return strip_tags(title)


def _first_link(e: Any) -> str | None:
    link = e.get("link")
    if not link:
        for candidate in e.get("links", []) or []:
            if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
                link = candidate["href"]
                break
    if not link:
        guid = e.get("id", "")
        if e.get("guidislink") and guid.startswith(("http://", "https://")):
            link = guid
    if link and not re.match(r"^https?://", link, re.I):
        return None
    return link.strip() if link else None


def _parse_json_feed(body: bytes, url: str | None) -> ParsedFeed:
    nested = "not a feed (the JSON is nested too deeply; a JSON Feed is a few levels deep)"
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"not a feed (invalid JSON: {exc})") from None
    except RecursionError:
        raise ParseError(nested) from None
    try:
        return _json_feed(data, url)
    except RecursionError:  # a deeply nested value inside the document (a title that is a list of lists…)
        raise ParseError(nested) from None


def _json_feed(data: Any, url: str | None) -> ParsedFeed:
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise ParseError("not a feed (JSON without a JSON Feed version)")
    items = data.get("items")
    if not isinstance(items, list):
        raise ParseError("not a feed (JSON Feed without items)")
    base = data.get("home_page_url") if isinstance(data.get("home_page_url"), str) else url
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        link = item.get("url") if isinstance(item.get("url"), str) else None
        if link and not re.match(r"^https?://", link, re.I):
            link = urljoin(base, link) if base else None
        raw_title = strip_tags(str(item.get("title") or ""))
        raw = item.get("content_html") or item.get("summary") or ""
        if isinstance(raw, str) and raw and not item.get("content_html"):
            raw = raw.replace("&", "&amp;").replace("<", "&lt;")
        if not raw and isinstance(item.get("content_text"), str):
            raw = item["content_text"].replace("&", "&amp;").replace("<", "&lt;").replace("\n", "<br>")
        html = str(raw)[:_MAX_HTML_CHARS]
        named = [ImageCandidate(urljoin(base, u.strip()) if base else u.strip(), "media")
                 for u in (item.get("image"), item.get("banner_image")) if isinstance(u, str) and u.strip()]
        summary, from_content = summarise_html(html, link or base, image=choose_image(named) is None)
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        author = None
        if authors and isinstance(authors[0], dict):
            author = clean_author(strip_tags(str(authors[0].get("name") or "")[:1024]))
        published = _iso_ts(item.get("date_published"))
        updated = _iso_ts(item.get("date_modified"))
        chosen = choose_image(named) or from_content
        title = raw_title
        if title_is_missing(raw_title, link):
            title = fallback_title(plain_text(html)) or raw_title
        guid = item.get("id")
        entries.append(
            ParsedEntry(
                key=entry_key(str(guid) if guid is not None else None, link, raw_title, item.get("date_published"),
                              summary),
                link_key=normalise_link(link),
                title=title,
                link=link,
                summary=summary,
                author=author,
                published=published or updated,
                updated=updated,
                image=chosen.url if chosen and not chosen.thumbnail else None,
                thumbnail=chosen.url if chosen and chosen.thumbnail else None,
                position=i,
            )
        )
    return ParsedFeed(
        title=strip_tags(str(data.get("title") or "")) or None,
        link=base,
        entries=tuple(entries),
        version="json" + str(data.get("version", "")).rsplit("/", 1)[-1],
        image=feed_thumbnail([u for u in (data.get("icon"), data.get("favicon")) if isinstance(u, str)]),
    )


def _iso_ts(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    parsed = _feedparser_date(value)  # feedparser's date parser handles RFC 3339 and friends
    return plausible(_ts(parsed)) or tolerant_date(value)


def summarise_html(html: str, base: str | None, *, image: bool = True) -> tuple[str, ChosenImage | None]:
    """An entry's stored summary (Markdown, capped) and the picture among its HTML's <img>
    elements (with ``image=False``: None, without looking)."""
    summary, _first_img = html_to_markdown(html, base)  # its first <img> may be a pixel: bot.images decides
    return summary, choose_image(content_images(html, base)) if image else None


def complete_deferred(entry: ParsedEntry, done: tuple[str, ChosenImage | None]) -> ParsedEntry:
    """An entry that :func:`parse_feed_deferred` left without a summary, with the result of
    :func:`summarise` for it: the summary, and the content's picture if the entry has no other."""
    summary, chosen = done
    if entry.image or entry.thumbnail or chosen is None:
        return replace(entry, summary=summary)
    if chosen.thumbnail:
        return replace(entry, summary=summary, thumbnail=chosen.url)
    return replace(entry, summary=summary, image=chosen.url)


def parse_feed_deferred(
    body: bytes, headers: Mapping[str, str] | None = None, url: str | None = None,
) -> tuple[ParsedFeed, dict[int, tuple[str, str | None]]]:
    """:func:`parse_feed` with summaries deferred; returns the feed and the deferred HTML by position."""
    deferred: dict[int, tuple[str, str | None]] = {}
    return parse_feed(body, headers, url, deferred=deferred), deferred


def summarise(items: Sequence[tuple[str, str | None]]) -> list[tuple[str, ChosenImage | None]]:
    """:func:`summarise_html` of each deferred (html, base), in order. HTML that fails to
    convert gets :func:`plain_summary` and no picture: an odd entry loses its formatting,
    never its place (nor the others theirs), and nothing is parsed a second time."""
    out: list[tuple[str, ChosenImage | None]] = []
    for html, base in items:
        try:
            out.append(summarise_html(html, base))
        except Exception:
            out.append((plain_summary(html), None))
    return out


def plain_summary(html: str) -> str:
    """The text of ``html`` (its start) as Markdown that shows it as written: the summary of
    an entry whose HTML could not be converted. "" when even that fails."""
    try:
        text = escape.plain(plain_text(html))
    except Exception:  # the same odd input that broke the converter: an empty summary, the entry kept
        return ""
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[:MAX_SUMMARY_CHARS]
        if (len(text) - len(text.rstrip("\\"))) % 2:  # the cut split an escape: drop its lone backslash
            text = text[:-1]
    return text
