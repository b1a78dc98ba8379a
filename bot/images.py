"""Which image an announcement shows, and whether as the large image or the thumbnail. Pure.

A feed entry names images in many places: ``media:content`` and ``media:thumbnail``,
enclosures, the episode's ``itunes:image`` and ``<img>`` elements in its HTML. Many are not
the post's picture at all: tracking pixels, FeedBurner flare and share buttons, feed ads,
avatars and emoji. :func:`choose_image` takes the candidates in the order a feed gives them
and picks one; :func:`content_images` finds the ``<img>`` candidates of an entry's HTML with a
small, bounded scan of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from bot.urls import discord_url

# An image declared narrower than this goes in the embed's thumbnail (a small square on the
# right) instead of its image (full width, where a small picture is blown up and blurred).
THUMBNAIL_MAX_WIDTH = 300
# Declared this small (either side, in pixels) an image is a tracking pixel; 0 counts too.
PIXEL_MAX_PX = 2
# An <img> in the content declared this small is an icon, emoji or avatar, not the post's picture.
ICON_MAX_PX = 48
# The content scan reads at most this much HTML after the first <img>, and keeps this many.
MAX_SCAN_CHARS = 200_000
MAX_CANDIDATES = 32

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".svg", ".jfif", ".pjpeg")

# Hosts whose images are never a post's picture: trackers, feed ads, share buttons.
_NOT_PICTURE_HOSTS = frozenset({
    "ads.pheedo.com", "tags.bluekai.com", "insight.adsrvr.org", "pixel.wp.com", "stats.wordpress.com",
    "feedads.g.doubleclick.net", "ad.doubleclick.net", "pubads.g.doubleclick.net", "www.google-analytics.com",
    "pixel.quantserve.com", "b.scorecardresearch.com", "sb.scorecardresearch.com", "api.tweetmeme.com",
    "rss.buysellads.com", "srv.buysellads.com", "da.feedsportal.com", "pi.feedsportal.com", "www.assoc-amazon.com",
    "feeds.wordpress.com", "s7.addthis.com", "s.w.org", "medium.com", "pixel.facebook.com", "www.facebook.com",
    "counter.theconversation.com", "certify.alexametrics.com", "mf.feeds.reuters.com", "rss.feedsportal.com",
})
# Path prefixes (host + path) of the same kinds, for hosts that also serve real images.
_NOT_PICTURE_PREFIXES = (
    "feeds.feedburner.com/~r/",   # FeedBurner's 1x1 view counter
    "feeds.feedburner.com/~ff/",  # FeedBurner flare ("share this", "email this" buttons)
    "feeds.feedburner.com/~a/",   # FeedBurner ads
    "feedproxy.google.com/~r/",
    "feedproxy.google.com/~ff/",
    "images.pheedo.com/images/mm/",  # Pheedo's share buttons
    "res3.feedsportal.com/social/",
    "www.gravatar.com/avatar/", "secure.gravatar.com/avatar/", "0.gravatar.com/avatar/", "1.gravatar.com/avatar/",
    "2.gravatar.com/avatar/",
    "blogger.googleusercontent.com/tracker/",
    "i.creativecommons.org/", "licensebuttons.net/",  # licence badges
)
# Path segments that mark trackers, ads and buttons wherever they are served.
_NOT_PICTURE_SEGMENTS = frozenset({"pixel", "pixel.gif", "pixel.png", "tracker", "beacon", "1x1.gif", "spacer.gif",
                                   "blank.gif", "clear.gif", "transparent.gif", "emoji", "smilies", "sharing",
                                   "buttons", "badges", "_stat"})
# File names (without extension) of share buttons and social icons.
_SHARE_NAMES = frozenset({"facebook", "twitter", "reddit", "stumbleit", "stumbleupon", "digg", "delicious",
                          "linkedin", "pinterest", "email", "mail", "print", "share", "tweet", "googleplus", "gplus",
                          "google_plus", "addthis", "sharethis", "whatsapp", "telegram", "mastodon", "rss", "feed",
                          "feed-icon", "feedicon", "subscribe", "technorati", "newsvine", "slashdot", "buffer"})
# alt or title text of a button, not a picture ("Add to Twitter", "Share on Facebook")
_BUTTON_TEXT = re.compile(r"^\s*(?:add to|share (?:on|to|this|via)|tweet (?:this|it)|email this|print this|"
                          r"subscribe|follow (?:us|me)|like us|pin it)\b", re.I)
# "facebook_32", "twitter-icon", "twitter_icon_large": a share name, then sizes or button words
_BUTTON_WORDS = frozenset({"icon", "icons", "button", "btn", "logo", "share", "small", "large", "big", "mini", "square",
                           "round", "circle", "white", "black", "color", "colour", "grey", "gray", "badge"})
_NAME_PARTS = re.compile(r"[-_.]")
_ICON_CLASSES = frozenset({"emoji", "wp-smiley", "avatar", "icon", "gravatar", "emoticon", "smiley"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_NUMBER = re.compile(r"\s*(\d{1,6})(?:\.\d*)?\s*(?:px)?\s*$", re.I)
_IMG_TAG = re.compile(r"<img\b", re.I)

SOURCES = ("media", "enclosure", "itunes", "content")  # in the order they are preferred


@dataclass(frozen=True, slots=True)
class ImageCandidate:
    """One image an entry names, with what the feed declares about it."""

    url: str
    source: str  # one of SOURCES
    width: int | None = None
    height: int | None = None
    mime: str | None = None  # "image/jpeg"; None when not declared
    medium: str | None = None  # media:content's medium ("image", "video", ...)
    alt: str = ""
    css_class: str = ""
    hidden: bool = False  # style="display:none": a tracker
    thumbnail_element: bool = False  # media:thumbnail: an image by definition


@dataclass(frozen=True, slots=True)
class ChosenImage:
    url: str  # well-formed for Discord (bot.urls.discord_url)
    thumbnail: bool  # True: the embed's thumbnail; False: its large image


def dimension(value: object) -> int | None:
    """A declared width or height ("300", "300px", 300) in pixels; None for "100%", "auto" or junk."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if 0 <= value < 1e6 else None
    if not isinstance(value, str) or len(value) > 16:
        return None
    m = _NUMBER.match(value)
    return int(m.group(1)) if m else None


def looks_like_image(c: ImageCandidate) -> bool:
    """By medium, MIME type or file extension; a media:thumbnail always is one."""
    if c.thumbnail_element:
        return True
    medium = (c.medium or "").strip().lower()
    mime = (c.mime or "").strip().lower()
    if medium:
        return medium == "image"
    if mime:
        return mime.startswith("image/")
    return _has_image_extension(c.url) or c.source in ("itunes", "content")


def _has_image_extension(url: str) -> bool:
    try:
        path = urlsplit(url).path.lower()
    except ValueError:
        return False
    return path.endswith(_IMAGE_EXTENSIONS)


def is_tracker(c: ImageCandidate) -> bool:
    """A tracking pixel (declared 0–2 px, hidden, or a known counter), an ad or a share button."""
    if c.hidden:
        return True
    if (c.width is not None and c.width <= PIXEL_MAX_PX) or (c.height is not None and c.height <= PIXEL_MAX_PX):
        return True
    try:
        parts = urlsplit(c.url)
    except ValueError:
        return True
    host = (parts.hostname or "").lower()
    if host in _NOT_PICTURE_HOSTS:
        return True
    where = host + parts.path
    if where.startswith(_NOT_PICTURE_PREFIXES):
        return True
    segments = [s for s in parts.path.lower().split("/") if s]
    if any(s in _NOT_PICTURE_SEGMENTS for s in segments[:-1]) or (segments and segments[-1] in _NOT_PICTURE_SEGMENTS):
        return True
    if segments:
        words = _NAME_PARTS.split(segments[-1].rsplit(".", 1)[0][:64])
        if words[0] in _SHARE_NAMES and all(w in _BUTTON_WORDS or w.isdigit() or _is_size(w) for w in words[1:]):
            return True
    return bool(_BUTTON_TEXT.match(c.alt[:64]))


def _is_size(word: str) -> bool:
    """ "32x32", "16px" """
    w, x, h = word.partition("x")
    return (bool(x) and w.isdigit() and (h.isdigit() or h == "")) or (word.endswith("px") and word[:-2].isdigit())


def is_icon(c: ImageCandidate) -> bool:
    """An <img> in the content that is icon-sized (declared), or marked as an emoji or avatar."""
    if (c.width is not None and c.width <= ICON_MAX_PX) or (c.height is not None and c.height <= ICON_MAX_PX):
        return True
    classes = set(c.css_class.lower().split()[:16])
    return bool(classes & _ICON_CLASSES)


def acceptable(c: ImageCandidate) -> bool:
    if not looks_like_image(c) or is_tracker(c):
        return False
    return not (c.source == "content" and is_icon(c))


def _media_rank(c: ImageCandidate) -> int:
    """Among media elements: large declared first, then undeclared, then small (thumbnails)."""
    if c.width is None:
        return 1
    return 2 if c.width >= THUMBNAIL_MAX_WIDTH else 0


def choose_image(candidates: Iterable[ImageCandidate]) -> ChosenImage | None:
    """The entry's picture: the best media element, else the first image enclosure, else the
    item's itunes:image, else the first content <img> that is a picture. Declared narrower
    than THUMBNAIL_MAX_WIDTH, it is a thumbnail. None when there is nothing worth showing."""
    by_source: dict[str, list[tuple[ImageCandidate, str]]] = {s: [] for s in SOURCES}
    for c in candidates:
        if c.source not in by_source or not acceptable(c):
            continue
        url = discord_url(c.url)
        if url is not None:
            by_source[c.source].append((c, url))
    for source in SOURCES:
        found = by_source[source]
        if not found:
            continue
        if source == "media":  # stable: the first of the best rank, then the widest within it
            best = max(enumerate(found), key=lambda p: (_media_rank(p[1][0]), p[1][0].width or 0, -p[0]))[1]
        else:
            best = found[0]
        c, url = best
        return ChosenImage(url, thumbnail=c.width is not None and c.width < THUMBNAIL_MAX_WIDTH)
    return None


def feed_thumbnail(urls: Sequence[str | None]) -> str | None:
    """The feed's own image or logo, as a fallback thumbnail: the first well-formed one that is
    not a tracker or button."""
    for url in urls:
        if not url:
            continue
        c = ImageCandidate(url, "itunes")
        if is_tracker(c):
            continue
        good = discord_url(url)
        if good is not None:
            return good
    return None


class _ImgScanner(HTMLParser):
    """Collects <img> attributes; stops at MAX_CANDIDATES."""

    class Full(Exception):
        pass

    def __init__(self, base: str | None, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.limit = limit
        self.found: list[ImageCandidate] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            return
        a = {k: (v or "") for k, v in attrs[:32]}
        src = a.get("src", "").strip()
        if not src or src.lower().startswith("data:"):
            src = (a.get("data-src") or a.get("data-lazy-src") or "").strip()  # lazy loading
        if not src:
            return
        if self.base:
            try:
                src = urljoin(self.base, src)
            except ValueError:
                return
        self.found.append(ImageCandidate(
            url=src, source="content", width=dimension(a.get("width")), height=dimension(a.get("height")),
            alt=(a.get("alt") or a.get("title") or "")[:256], css_class=a.get("class", "")[:256],
            hidden=bool(_HIDDEN_STYLE.search(a.get("style", "")[:512])),
        ))
        if len(self.found) >= self.limit:
            raise self.Full

    handle_startendtag = handle_starttag


def content_images(html: str, base: str | None = None, *, max_chars: int = MAX_SCAN_CHARS,
                   max_candidates: int = MAX_CANDIDATES) -> list[ImageCandidate]:
    """The <img> elements of an entry's HTML (src, width, height, alt, class), in order.

    Reads at most ``max_chars`` characters from the first ``<img`` on and returns at most
    ``max_candidates``: bounded whatever the entry."""
    if not html:
        return []
    m = _IMG_TAG.search(html)
    if m is None:
        return []
    scanner = _ImgScanner(base, max_candidates)
    try:
        scanner.feed(html[m.start(): m.start() + max_chars])
        scanner.close()
    except _ImgScanner.Full:
        pass
    except Exception:  # nosec B110 # html.parser is lenient; still, odd markup must not lose the entry
        pass
    return scanner.found
