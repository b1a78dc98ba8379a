"""An entry's fields as an announcement needs them: images, a title, an author, dates. Pure.

:mod:`bot.parse` reads feeds with feedparser (and JSON Feed by hand); the functions here turn
what it found into the values Herald stores, whatever the feed got wrong.
"""

from __future__ import annotations

import html as htmllib
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin

from dateutil import parser as dateparser

from bot.images import ImageCandidate, dimension

# --- images -------------------------------------------------------------------------------------


def _resolve(url: object, base: str | None) -> str | None:
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    if base:
        try:
            return urljoin(base, url)
        except ValueError:
            return None
    return url


def entry_images(e: Mapping[str, Any], base: str | None) -> list[ImageCandidate]:
    """The images a feedparser entry names outside its HTML: media:content and media:thumbnail,
    enclosures and the item's own itunes:image, in that order (bot.images.SOURCES)."""
    out: list[ImageCandidate] = []
    for m in (e.get("media_content") or [])[:64]:
        url = _resolve(m.get("url"), base) if isinstance(m, Mapping) else None
        if url:
            out.append(ImageCandidate(url, "media", width=dimension(m.get("width")), height=dimension(m.get("height")),
                                      mime=m.get("type") or None, medium=m.get("medium") or None))
    for t in (e.get("media_thumbnail") or [])[:64]:
        url = _resolve(t.get("url"), base) if isinstance(t, Mapping) else None
        if url:
            out.append(ImageCandidate(url, "media", width=dimension(t.get("width")), height=dimension(t.get("height")),
                                      thumbnail_element=True))
    for enc in (e.get("enclosures") or [])[:64]:
        url = _resolve(enc.get("href"), base) if isinstance(enc, Mapping) else None
        if url:
            out.append(ImageCandidate(url, "enclosure", mime=enc.get("type") or None))
    itunes = dict.get(e, "image") if isinstance(e, dict) else None  # feedparser: the item's itunes:image
    if isinstance(itunes, Mapping):
        url = _resolve(itunes.get("href") or itunes.get("url"), base)
        if url:
            out.append(ImageCandidate(url, "itunes", width=dimension(itunes.get("width")),
                                      height=dimension(itunes.get("height"))))
    return out


def feed_image_urls(feed: Mapping[str, Any], base: str | None) -> list[str]:
    """The feed's own image (RSS <image>, itunes:image), Atom logo and icon, in that order."""
    out = []
    image = feed.get("image")
    if isinstance(image, Mapping):
        out.append(_resolve(image.get("href") or image.get("url"), base))
    out.append(_resolve(feed.get("logo"), base))
    out.append(_resolve(feed.get("icon"), base))
    return [u for u in out if u]


# --- titles -------------------------------------------------------------------------------------

# A title made up from an entry's text: its first sentence, or this many characters at a word.
FALLBACK_TITLE_CHARS = 100
# How much of an entry's HTML (and of its text) the title is taken from.
_TITLE_SOURCE_CHARS = 20_000
_BLOCK_TAGS = frozenset({"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
                         "tr", "td", "th", "table", "hr", "figure", "figcaption", "section", "article", "header",
                         "footer", "dd", "dt", "img"})
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]{0,15})?[^<>]*>?")
_DROPPED_TAGS = ("script", "style", "template")  # their content is not text
_MIN_SENTENCE_CHARS = 10
_SENTENCE_END = re.compile(r"[.!?…。！？](?=\s|$)")
_BARE_URL = re.compile(r"(?:https?://|www\.)\S{1,2048}", re.I)
ELLIPSIS = "…"


def plain_text(fragment: str) -> str:
    """The text of the start of an HTML fragment, on one line: block elements become spaces,
    inline ones disappear ("@<span>user</span>" stays "@user"), entities are decoded."""
    if not fragment:
        return ""
    fragment = fragment[:_TITLE_SOURCE_CHARS]
    if "<" in fragment:
        fragment = _drop_elements(fragment)

        def tag(m: re.Match[str]) -> str:
            name = (m.group(2) or "").lower()
            return " " if name in _BLOCK_TAGS else ""

        fragment = _TAG.sub(tag, fragment)
    return " ".join(htmllib.unescape(fragment).split())


def _drop_elements(fragment: str) -> str:
    """``fragment`` without its script, style and template elements (one pass with str.find)."""
    lower = fragment.lower()
    if not any(f"<{t}" in lower for t in _DROPPED_TAGS):
        return fragment
    out, pos = [], 0
    while True:
        starts = [(i, t) for t in _DROPPED_TAGS if (i := lower.find(f"<{t}", pos)) != -1]
        if not starts:
            break
        start, name = min(starts)
        end = lower.find(f"</{name}", start)
        out.append(fragment[pos:start])
        if end == -1:
            pos = len(fragment)
            break
        close = lower.find(">", end)
        pos = len(fragment) if close == -1 else close + 1
    out.append(fragment[pos:])
    return " ".join(out)


def title_is_missing(title: str, link: str | None) -> bool:
    """No title, or one that is only a URL (microblogs put the status URL there)."""
    title = title.strip()
    return not title or _BARE_URL.fullmatch(title) is not None


def fallback_title(text: str) -> str:
    """A title for an entry without one: the first sentence of its text when it is short
    enough, else its first FALLBACK_TITLE_CHARS characters cut at a word, ending with "…"."""
    text = " ".join(text[:_TITLE_SOURCE_CHARS].split())
    if not text:
        return ""
    head = text[: FALLBACK_TITLE_CHARS + 1]
    for m in _SENTENCE_END.finditer(head):  # "Dr." or "v1." at the start is not a sentence
        if _MIN_SENTENCE_CHARS <= m.end() <= FALLBACK_TITLE_CHARS:
            return head[: m.end()]
    if len(text) <= FALLBACK_TITLE_CHARS:
        return text
    cut = text[: FALLBACK_TITLE_CHARS - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space >= FALLBACK_TITLE_CHARS // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + ELLIPSIS


# --- authors ------------------------------------------------------------------------------------


def _is_email(text: str) -> bool:
    local, at, domain = text.partition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in text))


def clean_author(name: str | None) -> str | None:
    """An author as a name: "jo@example.org (Jo Doe)" and "Jo Doe (jo@example.org)" become "Jo Doe"."""
    if not name:
        return None
    name = " ".join(name.split())
    if name.endswith(")") and "(" in name:
        i = name.rfind("(")
        outer, inner = name[:i].strip(), name[i + 1:-1].strip()
        if inner and _is_email(outer):
            return inner
        if outer and _is_email(inner):
            return outer
    if name.endswith(">") and "<" in name:  # "Jo Doe <jo@example.org>"
        i = name.rfind("<")
        outer, inner = name[:i].strip(), name[i + 1:-1].strip()
        if outer and _is_email(inner):
            return outer
    return name or None


# --- dates --------------------------------------------------------------------------------------

# Longer date strings are not dates; dateutil's time grows with the input.
MAX_DATE_CHARS = 80
# A date before this is a parsing accident (or "0001-01-01"); the time first seen is better.
# Dates in the future are bounded where "now" is known: render_entry uses the time first seen for
# an entry dated more than a day after it (parse stays pure and does not read the clock).
MIN_YEAR = 1990
MIN_TIMESTAMP = datetime(MIN_YEAR, 1, 1, tzinfo=timezone.utc).timestamp()
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
_TZ_HOURS = {"UTC": 0, "UT": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6,
             "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10, "CET": 1, "CEST": 2, "BST": 1, "EET": 2,
             "EEST": 3, "MSK": 3, "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11}
_TZINFOS = {name: hours * 3600 for name, hours in _TZ_HOURS.items()}
# Two defaults that differ in every field: a string that leaves out its day, month or year
# parses to two different dates, and is refused (dateutil would fill in today's).
_DEFAULT_A = datetime(2001, 1, 1)
_DEFAULT_B = datetime(2002, 2, 2)


def tolerant_date(text: str | None) -> float | None:
    """Unix time of a date feedparser could not read ("Friday, January 29, 2021 04:42 PM"),
    with python-dateutil; UTC when it names no zone. None for anything that is not a whole
    date (day, month and year) after MIN_YEAR."""
    if not text or not isinstance(text, str):
        return None
    text = " ".join(text.split())
    if not text or len(text) > MAX_DATE_CHARS or not _YEAR.search(text):
        return None  # without a four-digit year, "1 1 1" or "5/3" would be read as dates
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # UnknownTimezoneWarning: an unknown zone name is read as UTC
            a = dateparser.parse(text, default=_DEFAULT_A, tzinfos=_TZINFOS)
            b = dateparser.parse(text, default=_DEFAULT_B, tzinfos=_TZINFOS)
    except (ValueError, OverflowError, TypeError, ArithmeticError):
        return None
    if (a.year, a.month, a.day) != (b.year, b.month, b.day):
        return None
    if a.tzinfo is None or a.utcoffset() is None:
        a = a.replace(tzinfo=timezone.utc)
    try:
        return plausible(a.timestamp())
    except (OverflowError, ValueError, OSError):
        return None


def plausible(ts: float | None) -> float | None:
    """``ts`` unless it is before MIN_YEAR (a parsing accident, from feedparser or dateutil)."""
    return ts if ts is not None and ts >= MIN_TIMESTAMP else None
