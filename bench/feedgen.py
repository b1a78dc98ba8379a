"""Deterministic synthetic feeds for the benchmarks.

Every feed is RSS 2.0 or Atom 1.0 (mixed by index), holds ``entries`` entries
(20 by default) newest first, and every entry has a title, a link, a GUID, a
date and an HTML body of roughly 1-3 KB with paragraphs, links, an image, and
now and then a list, a quote or a code block. The same (seed, feed index,
entry serial) always gives the same bytes: the RNG of an entry is seeded from
those three values only.

``SyntheticFeed.change()`` adds one new entry at the top (and drops the
oldest, so the size stays the same), as a blog does when it publishes.

    python -m bench.feedgen --index 3 > /tmp/feed3.xml   # look at one
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from email.utils import format_datetime
from datetime import datetime, timezone
from xml.sax.saxutils import escape

# Entries are dated from here on, one every few hours, so dates are stable across runs.
EPOCH = 1_700_000_000

# A plain vocabulary written for this benchmark.
_WORDS = (
    "river stone harbour lantern window garden morning evening signal network kernel process "
    "thread memory buffer socket packet server client request answer header cookie session "
    "storage index query table column record update delete insert commit branch merge review "
    "release version patch module package library function method object class value number "
    "string letter paper pencil coffee bread market street bridge tunnel station engine wheel "
    "mountain valley forest meadow winter summer autumn spring weather cloud thunder rain snow "
    "quiet rapid gentle bright narrow broad simple careful honest patient clever curious "
    "build write read send wait listen measure compare choose follow notice gather explain "
    "the a of and to in on for with from by about after before under over between through"
).split()
_TAGS = ("python", "databases", "networking", "release-notes", "tutorial", "opinion", "hardware", "travel")
_HOSTS = ("example.com", "example.org", "example.net", "blog.example.com", "news.example.org")


def _sentence(rng: random.Random, lo: int = 8, hi: int = 22) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice((".", ".", ".", "?", "!"))


def _paragraph(rng: random.Random, host: str) -> str:
    parts = []
    for _ in range(rng.randint(2, 5)):
        s = _sentence(rng)
        if rng.random() < 0.35:  # a link inside the sentence
            w = rng.choice(_WORDS)
            s = s.replace(" ", f' <a href="https://{rng.choice(_HOSTS)}/{w}/{rng.randint(1, 9999)}">{w}</a> ', 1)
        if rng.random() < 0.2:
            s = s.replace(" ", " <em>", 1).replace(".", "</em>.", 1) if "." in s else s
        if rng.random() < 0.15:
            s = s.replace(" ", " <strong>" + rng.choice(_WORDS) + "</strong> ", 1)
        parts.append(s)
    return "<p>" + " ".join(parts) + "</p>"


def _body(rng: random.Random, host: str, slug: str) -> str:
    """An HTML body of roughly 1-3 KB."""
    target = rng.randint(1000, 3000)
    blocks: list[str] = []
    if rng.random() < 0.7:
        blocks.append(f'<p><img src="https://{host}/images/{slug}.jpg" alt="{escape(rng.choice(_WORDS))}" '
                      f'width="{rng.choice((640, 800, 1200))}" height="{rng.choice((360, 450, 675))}"></p>')
    size = sum(map(len, blocks))
    while size < target:
        r = rng.random()
        if r < 0.1:
            b = "<ul>" + "".join(f"<li>{_sentence(rng, 3, 8)}</li>" for _ in range(rng.randint(2, 5))) + "</ul>"
        elif r < 0.16:
            b = f"<blockquote><p>{_sentence(rng)}</p></blockquote>"
        elif r < 0.22:
            b = "<pre><code>" + escape("\n".join(f"{rng.choice(_WORDS)} = {rng.randint(0, 999)}  # {rng.choice(_WORDS)}"
                                                for _ in range(rng.randint(2, 6)))) + "</code></pre>"
        elif r < 0.28:
            b = f"<h3>{_sentence(rng, 2, 5)[:-1]}</h3>"
        else:
            b = _paragraph(rng, host)
        blocks.append(b)
        size += len(b)
    return "\n".join(blocks)


@dataclass(frozen=True)
class Entry:
    serial: int
    title: str
    link: str
    guid: str
    published: int  # Unix time
    author: str
    tags: tuple[str, ...]
    html: str


def make_entry(seed: int, feed_index: int, serial: int) -> Entry:
    rng = random.Random(f"herald-bench:{seed}:{feed_index}:{serial}")
    host = f"feed{feed_index}.{_HOSTS[feed_index % len(_HOSTS)]}"
    title = _sentence(rng, 3, 10)[:-1]
    slug = "-".join(title.lower().split()[:6]) + f"-{serial}"
    return Entry(
        serial=serial,
        title=title,
        link=f"https://{host}/{2023 + serial // 400}/{slug}/",
        guid=f"tag:{host},2023:post-{serial}" if feed_index % 3 else f"https://{host}/p/{serial}",
        published=EPOCH + serial * 3 * 3600 + rng.randint(0, 3000),
        author=f"{rng.choice(_WORDS).capitalize()} {rng.choice(_WORDS).capitalize()}",
        tags=tuple(sorted(rng.sample(_TAGS, rng.randint(0, 3)))),
        html=_body(rng, host, slug),
    )


def _rfc822(ts: int) -> str:
    return format_datetime(datetime.fromtimestamp(ts, tz=timezone.utc), usegmt=True)


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SyntheticFeed:
    """One feed: ``kind`` is "rss" or "atom"; ``entries`` newest first."""

    seed: int
    index: int
    size: int = 20
    version: int = 0  # how many times change() was called
    entries: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.entries:
            # serials 0..size-1 at the start; the newest has the highest serial
            self.entries = [make_entry(self.seed, self.index, s) for s in range(self.size - 1, -1, -1)]

    @property
    def kind(self) -> str:
        return "atom" if self.index % 2 else "rss"

    @property
    def host(self) -> str:
        return f"feed{self.index}.{_HOSTS[self.index % len(_HOSTS)]}"

    @property
    def updated(self) -> int:
        return max(e.published for e in self.entries)

    def change(self) -> Entry:
        """Publishes one new entry at the top; the oldest falls off the end."""
        self.version += 1
        new = make_entry(self.seed, self.index, self.size - 1 + self.version)
        self.entries = [new, *self.entries[: self.size - 1]]
        return new

    def render(self) -> bytes:
        return (_atom(self) if self.kind == "atom" else _rss(self)).encode("utf-8")


def _rss(f: SyntheticFeed) -> str:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<channel>",
        f"<title>Synthetic feed {f.index}</title>",
        f"<link>https://{f.host}/</link>",
        f"<description>Posts about {escape(' and '.join(_TAGS[f.index % 4: f.index % 4 + 2]))}</description>",
        f'<atom:link href="https://{f.host}/feed.xml" rel="self" type="application/rss+xml"/>',
        f"<lastBuildDate>{_rfc822(f.updated)}</lastBuildDate>",
        "<generator>herald-bench feedgen</generator>",
    ]
    for e in f.entries:
        permalink = e.guid.startswith("https://")
        out.append("<item>")
        out.append(f"<title>{escape(e.title)}</title>")
        out.append(f"<link>{escape(e.link)}</link>")
        out.append(f'<guid isPermaLink="{"true" if permalink else "false"}">{escape(e.guid)}</guid>')
        out.append(f"<pubDate>{_rfc822(e.published)}</pubDate>")
        out.append(f"<dc:creator>{escape(e.author)}</dc:creator>")
        out.extend(f"<category>{t}</category>" for t in e.tags)
        if e.serial % 2:  # half the items escape their HTML, half wrap it in CDATA
            out.append(f"<description>{escape(e.html)}</description>")
        else:
            out.append(f"<description><![CDATA[{e.html}]]></description>")
        out.append("</item>")
    out.append("</channel>")
    out.append("</rss>")
    return "\n".join(out) + "\n"


def _atom(f: SyntheticFeed) -> str:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>Synthetic feed {f.index}</title>",
        f'<link href="https://{f.host}/" rel="alternate"/>',
        f'<link href="https://{f.host}/atom.xml" rel="self"/>',
        f"<id>tag:{f.host},2023:feed</id>",
        f"<updated>{_rfc3339(f.updated)}</updated>",
    ]
    for e in f.entries:
        out.append("<entry>")
        out.append(f'<title type="html">{escape(e.title)}</title>')
        out.append(f'<link href="{escape(e.link)}" rel="alternate" type="text/html"/>')
        out.append(f"<id>{escape(e.guid)}</id>")
        out.append(f"<published>{_rfc3339(e.published)}</published>")
        out.append(f"<updated>{_rfc3339(e.published + 600)}</updated>")
        out.append(f"<author><name>{escape(e.author)}</name></author>")
        out.extend(f'<category term="{t}"/>' for t in e.tags)
        out.append(f'<content type="html">{escape(e.html)}</content>')
        out.append("</entry>")
    out.append("</feed>")
    return "\n".join(out) + "\n"


def make_feeds(n: int, seed: int = 1, size: int = 20) -> list[SyntheticFeed]:
    return [SyntheticFeed(seed, i, size) for i in range(n)]


def changed_indexes(n: int, fraction: float, seed: int, round_: int) -> list[int]:
    """Which feeds change in a given round: the same list for every client measured."""
    k = max(1, round(n * fraction)) if fraction > 0 else 0
    rng = random.Random(f"herald-bench-change:{seed}:{round_}")
    return sorted(rng.sample(range(n), k))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--entries", type=int, default=20)
    ap.add_argument("--changes", type=int, default=0, help="call change() this many times first")
    args = ap.parse_args(argv)
    f = SyntheticFeed(args.seed, args.index, args.entries)
    for _ in range(args.changes):
        f.change()
    sys.stdout.buffer.write(f.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
