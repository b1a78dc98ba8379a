"""Finding a feed advertised by an HTML page. Pure functions."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json", "application/json")


class _LinkFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "link":
            return
        a = {k.lower(): (v or "") for k, v in attrs}
        rels = a.get("rel", "").lower().split()
        ctype = a.get("type", "").lower().split(";")[0].strip()
        if "alternate" in rels and ctype in FEED_TYPES and a.get("href"):
            self.links.append((ctype, a["href"].strip()))


def looks_like_html(body: bytes, content_type: str | None = None) -> bool:
    if content_type and "html" in content_type.lower():
        return True
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:200]


def find_feed_links(html: str, base_url: str) -> list[str]:
    """Feed URLs a page advertises with ``<link rel="alternate" type="...">``, best first."""
    finder = _LinkFinder()
    try:
        finder.feed(html)
        finder.close()
    except Exception:  # nosec B110 # malformed HTML: keep the links found so far
        pass
    order = {t: i for i, t in enumerate(FEED_TYPES)}
    ranked = sorted(enumerate(finder.links), key=lambda x: (order.get(x[1][0], 99), x[0]))
    out: list[str] = []
    for _, (_, href) in ranked:
        url = urljoin(base_url, href)
        if url not in out:
            out.append(url)
    return out
