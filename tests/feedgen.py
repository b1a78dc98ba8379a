"""Writing small RSS feeds for tests."""

from __future__ import annotations

from email.utils import formatdate
from pathlib import Path
from xml.sax.saxutils import escape


def rss(items: list[dict], title: str = "Test Feed", link: str = "https://example.org/") -> bytes:
    """items: dicts with title, link, guid (optional), description, date (Unix time), author."""
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>{escape(title)}</title>'
             f"<link>{escape(link)}</link><description>test</description>"]
    for it in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(it.get('title', ''))}</title>")
        if it.get("link"):
            parts.append(f"<link>{escape(it['link'])}</link>")
        if it.get("guid"):
            parts.append(f"<guid isPermaLink=\"false\">{escape(it['guid'])}</guid>")
        if it.get("description") is not None:
            parts.append(f"<description>{escape(it['description'])}</description>")
        if it.get("author"):
            parts.append(f"<author>{escape(it['author'])}</author>")
        if it.get("date") is not None:
            parts.append(f"<pubDate>{formatdate(it['date'], usegmt=True)}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def numbered_items(n: int, *, start: int = 0, base_time: float = 1_700_000_000.0, prefix: str = "Post") -> list[dict]:
    """n items, newest first (as feeds write them), numbered start..start+n-1 by age."""
    items = [
        {"title": f"{prefix} {i}", "link": f"https://example.org/posts/{i}", "guid": f"post-{i}",
         "description": f"<p>Body of post {i}.</p>", "date": base_time + i * 60}
        for i in range(start, start + n)
    ]
    return list(reversed(items))


def write_feed(path: Path, items: list[dict], **kw: str) -> str:
    path.write_bytes(rss(items, **kw))
    return path.as_uri()
