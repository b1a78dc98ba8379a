"""The parser: feed bytes to plain entries with Markdown summaries. Pure, so no server here."""

from __future__ import annotations

import json
import re
from calendar import timegm
from email.utils import parsedate_tz, mktime_tz
from pathlib import Path

import pytest

from bot.errors import ParseError
from bot.markdown import html_to_markdown, strip_tags
from bot.parse import MAX_SUMMARY_CHARS, parse_feed
from tests.feedserver import rss

FEEDS = Path(__file__).resolve().parent / "feeds"
SEED_URL = "https://vsoch.github.io/feed.xml"
RSS_HEADERS = {"content-type": "application/rss+xml; charset=utf-8"}

SEED_POSTS = [  # title, link, pubDate: in document order (newest first)
    ("Treading Water", "https://vsoch.github.io/2026/treading-water/", "Tue, 14 Apr 2026 00:11:50 +0000"),
    ("Observation", "https://vsoch.github.io/2026/observation/", "Fri, 10 Apr 2026 00:22:00 +0000"),
    ("I Love You, All of Your Pieces", "https://vsoch.github.io/2026/come-with-me/", "Sun, 22 Mar 2026 00:22:00 +0000"),
    ("The Fifth Decade", "https://vsoch.github.io/2026/fifth-decade/", "Fri, 02 Jan 2026 00:09:00 +0000"),
    ("Gifts", "https://vsoch.github.io/2025/gifts/", "Mon, 22 Dec 2025 00:00:00 +0000"),
    ("Agentic Orchestration of an HPC Workload in Cloud",
     "https://vsoch.github.io/2025/hpc-orchestration-hpc-workload-in-cloud/", "Fri, 21 Nov 2025 09:00:00 +0000"),
    ("Rootless User-Space Kubernetes with GPU", "https://vsoch.github.io/2025/rootless-usernetes-gpu/",
     "Sat, 22 Feb 2025 00:00:00 +0000"),
    ("Reflections for 2024", "https://vsoch.github.io/2024/reflections/", "Sun, 22 Dec 2024 00:00:00 +0000"),
    ("For Coach", "https://vsoch.github.io/2024/for-coach/", "Mon, 25 Nov 2024 00:00:00 +0000"),
    ("A Future for HPC and Cloud: Collaboration Across Boundaries", "https://vsoch.github.io/2024/across-boundaries/",
     "Sun, 17 Nov 2024 08:30:00 +0000"),
]

# what must never be left in a summary: tags, entities, and what embedded media leave behind
LEFTOVER_TAG = re.compile(r"</?(?:p|div|span|br|img|a|em|strong|iframe|audio|video|source|script|style|embed|pre|code|h\d|"
                          r"li|ul|ol|blockquote|figure|table)\b[^>]*>", re.I)
ENTITY = re.compile(r"&(?:[a-z][a-z0-9]{1,31}|#[0-9]{1,7}|#x[0-9a-f]{1,6});", re.I)
MEDIA_REMNANTS = ("youtube.com/embed", "<iframe", "<audio", "<video", "<script", "frameborder", "allowfullscreen",
                  "your browser does not support", "controls=", ".m4a")
MARKDOWN_LINK = re.compile(r"\]\(<?([^)\s>]+)>?\)")


def seed(seed_bytes: bytes):
    return parse_feed(seed_bytes, {"content-type": "application/xml"}, SEED_URL)


# --- the seed feed -------------------------------------------------------------------------------------


def test_seed_feed_has_its_10_posts_with_exact_titles_and_links(seed_bytes) -> None:
    parsed = seed(seed_bytes)
    assert parsed.title == "VanessaSaurus"
    assert parsed.link == "https://vsoch.github.io/"
    assert parsed.version == "rss20"
    assert [(e.title, e.link) for e in parsed.entries] == [(t, link) for t, link, _ in SEED_POSTS]
    assert [e.position for e in parsed.entries] == list(range(10))
    for e, (_, link, date) in zip(parsed.entries, SEED_POSTS):
        assert e.key == "id:" + link  # the permalink GUID
        assert e.link_key == link.removeprefix("https://").rstrip("/")
        assert e.published == float(mktime_tz(parsedate_tz(date)))
        assert e.updated is None  # RSS items have no separate update date


def test_seed_summaries_are_readable_markdown(seed_bytes) -> None:
    for e in seed(seed_bytes).entries:
        assert len(e.summary) > 500, e.title
        assert not LEFTOVER_TAG.search(e.summary), (e.title, LEFTOVER_TAG.search(e.summary))
        assert not ENTITY.search(e.summary), (e.title, ENTITY.search(e.summary))
        lowered = e.summary.lower()
        for remnant in MEDIA_REMNANTS:
            assert remnant not in lowered, (e.title, remnant)
        assert "\n\n\n" not in e.summary
        assert e.summary == e.summary.strip()


def test_seed_summaries_keep_the_prose_and_its_markup(seed_bytes) -> None:
    entries = {e.title: e for e in seed(seed_bytes).entries}
    assert entries["Treading Water"].summary.startswith("There were once a man and a woman")
    assert "\n\n**Going off a Cliff**\n\n" in entries["Observation"].summary  # a heading: a bold line of its own
    assert "[HPSF](https://bsky.app/profile/vsoch.bsky.social/post/3mi5gfllbsc2s)" in entries["Observation"].summary
    assert "\n\n1. To continue to live with authenticity and integrity.\n2. To be inspired" in entries["The Fifth Decade"].summary
    assert "love all of *your* pieces" in entries["I Love You, All of Your Pieces"].summary
    # the long post is capped, the short ones are whole
    capped = entries["A Future for HPC and Cloud: Collaboration Across Boundaries"].summary
    # cut at a sentence end in the last third of the room, and marked as cut
    assert MAX_SUMMARY_CHARS * 2 // 3 <= len(capped) <= MAX_SUMMARY_CHARS and capped.endswith(". …")
    assert entries["Treading Water"].summary.endswith("the joy and strength resides within her.")


def test_seed_links_and_images_are_absolute_https(seed_bytes) -> None:
    parsed = seed(seed_bytes)
    for e in parsed.entries:
        for url in MARKDOWN_LINK.findall(e.summary):
            assert url.startswith(("https://", "http://", "mailto:")), (e.title, url)
    images = {e.title: e.image for e in parsed.entries}
    # these posts use site-relative <img src="/assets/...">: resolved against the entry's link
    assert images["The Fifth Decade"] == "https://vsoch.github.io/assets/images/posts/new-year-2026/vanessa-goblin.jpeg"
    assert images["Rootless User-Space Kubernetes with GPU"] == \
        "https://vsoch.github.io/assets/images/posts/nvidia/nvidia-device-plugin.png"
    assert images["For Coach"] == "https://vsoch.github.io/assets/images/posts/coach/coach.JPG"
    assert images["Treading Water"] is None


def test_seed_parses_the_same_without_headers_or_url(seed_bytes) -> None:
    a = seed(seed_bytes)
    b = parse_feed(seed_bytes)
    assert [(e.key, e.title, e.link, e.summary) for e in a.entries] == [(e.key, e.title, e.link, e.summary)
                                                                         for e in b.entries]


# --- HTML to Markdown -------------------------------------------------------------------------------------


def test_relative_links_and_images_resolve_against_the_entry_link() -> None:
    html = ('<p>See <a href="/about/">about</a>, <a href="next/">the next one</a> and '
            '<a href="//cdn.example/x">cdn</a>.</p><img src="pic.png" alt="a picture">')
    body = rss([{"title": "Relative", "link": "https://blog.example/2024/post/", "guid": "p1", "description": html}])
    [e] = parse_feed(body, RSS_HEADERS, "https://feeds.example/blog.xml").entries
    assert "[about](https://blog.example/about/)" in e.summary
    assert "[the next one](https://blog.example/2024/post/next/)" in e.summary
    assert "[cdn](https://cdn.example/x)" in e.summary
    assert e.image == "https://blog.example/2024/post/pic.png"


def test_relative_item_links_resolve_against_the_feed_url() -> None:
    body = rss([{"title": "T", "link": "/posts/1", "guid": "g"}], link="/")
    [e] = parse_feed(body, RSS_HEADERS, "https://blog.example/feed.xml").entries
    assert e.link == "https://blog.example/posts/1"


def test_unsafe_and_useless_markup_is_dropped() -> None:
    html = ('<p>Hello <script>alert("x")</script>world</p><style>p{color:red}</style>'
            '<iframe src="https://www.youtube.com/embed/x">Your browser does not support iframes</iframe>'
            '<video controls><source src="/v.mp4">Your browser does not support video</video>'
            '<audio controls src="/a.m4a">no audio</audio>'
            '<p><a href="javascript:alert(1)">click</a> <a href="data:text/html,x">data</a></p>'
            '<object data="x.swf">flash</object><form><input value="q"><button>Go</button></form>')
    md, image = html_to_markdown(html, "https://blog.example/post/")
    assert "Hello world" in md
    for gone in ("alert", "color:red", "youtube", "browser", "v.mp4", "no audio", "javascript", "data:", "flash",
                 "Go", "<"):
        assert gone not in md, gone
    assert "click" in md and "data" in md  # the text of a refused link stays, without the link
    assert image is None


def test_entities_are_decoded_once() -> None:
    md, _ = html_to_markdown("<p>Fish &amp; chips &lt;3 &#8212; caf&eacute; &#x1F600; &amp;amp;</p>")
    assert md == "Fish & chips <3 — café 😀 &amp;"


def test_plain_text_summaries_are_kept() -> None:
    md, _ = html_to_markdown("Just some text,\r\nwith a line break.  ")
    assert md == "Just some text,\nwith a line break."


def test_titles_are_plain_text() -> None:
    body = rss([
        {"title": "Fish &amp; Chips &lt;3", "guid": "1"},
        {"raw": "<title><![CDATA[<b>Bold</b> move &amp; more]]></title><guid>2</guid>"},
        {"title": "  lots \n of   space  ", "guid": "3"},
        {"title": "Vec<T> and Option<T> in Rust: a < b > c", "guid": "4"},
        {"raw": "<title><![CDATA[HashMap<K, V> explained]]></title><guid>5</guid>"},
        {"raw": "<title>Double &amp;amp; escaped</title><guid>6</guid>"},
        {"title": "Line <br/> break and <span class='x'>span</span>", "guid": "7"},
    ], title="Types & <Generics>")
    parsed = parse_feed(body, RSS_HEADERS, "https://blog.example/feed")
    assert [e.title for e in parsed.entries] == [
        "Fish & Chips <3", "Bold move & more", "lots of space", "Vec<T> and Option<T> in Rust: a < b > c",
        "HashMap<K, V> explained", "Double & escaped", "Line break and span",
    ]
    assert parsed.title == "Types & <Generics>"
    assert strip_tags("<i>a</i> &lt;b&gt;") == "a <b>"


def test_atom_text_and_html_titles() -> None:
    body = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Map&lt;K, V&gt;</title>
      <entry><title type="text">Vec&lt;T&gt; in Rust</title><id>urn:1</id></entry>
      <entry><title type="html">Vec&amp;lt;T&amp;gt; &lt;em&gt;now&lt;/em&gt;</title><id>urn:2</id></entry></feed>"""
    parsed = parse_feed(body, {"content-type": "application/atom+xml"}, "https://a.example/feed")
    assert parsed.title == "Map<K, V>"
    assert [e.title for e in parsed.entries] == ["Vec<T> in Rust", "Vec<T> now"]


def test_huge_summaries_are_capped() -> None:
    html = "<p>" + "word " * 100_000 + "</p>"
    body = rss([{"title": "Huge", "guid": "h", "description": html}])
    [e] = parse_feed(body, RSS_HEADERS, "https://blog.example/feed").entries
    assert 0 < len(e.summary) <= MAX_SUMMARY_CHARS


def test_content_encoded_is_preferred_when_longer() -> None:
    raw = ('<content:encoded xmlns:content="http://purl.org/rss/1.0/modules/content/">'
           '<![CDATA[<p>The <em>whole</em> post, much longer than the teaser.</p>]]></content:encoded>')
    body = rss([{"title": "T", "guid": "g", "description": "Teaser", "raw": raw}]).replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">')
    [e] = parse_feed(body, RSS_HEADERS, "https://blog.example/feed").entries
    assert e.summary == "The *whole* post, much longer than the teaser."


def test_media_thumbnail_is_the_image() -> None:
    raw = '<media:thumbnail xmlns:media="http://search.yahoo.com/mrss/" url="/thumb.jpg"/>'
    body = rss([{"title": "T", "link": "https://blog.example/p/", "guid": "g", "raw": raw}]).replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">')
    [e] = parse_feed(body, RSS_HEADERS, "https://blog.example/feed").entries
    assert e.image == "https://blog.example/thumb.jpg"


# --- Atom and JSON Feed ---------------------------------------------------------------------------------------


def test_atom_with_xml_base() -> None:
    parsed = parse_feed((FEEDS / "feedparser-atom10.xml").read_bytes(), {"content-type": "application/atom+xml"},
                        "http://example.org/atom10.xml")
    assert parsed.version == "atom10" and parsed.title == "Sample Feed"
    [e] = parsed.entries
    assert e.title == "First entry title"
    assert e.link == "http://example.org/entry/3"
    assert e.key == "id:tag:feedparser.org,2005-11-09:/docs/examples/atom10.xml:3"
    assert e.published == float(timegm((2005, 11, 9, 0, 23, 47)))
    assert e.updated == float(timegm((2005, 11, 9, 11, 56, 34)))
    assert "nasty tricks" in e.summary and "javascript" not in e.summary
    assert e.author and "Mark Pilgrim" in e.author


def test_atom_updated_only_dates_are_the_published_date() -> None:
    body = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
      <entry><title>One</title><id>urn:1</id><link href="https://a.example/1"/><updated>2024-05-01T10:00:00Z</updated>
      <content type="html">&lt;p&gt;Hi&lt;/p&gt;</content></entry></feed>"""
    [e] = parse_feed(body, {"content-type": "application/atom+xml"}, "https://a.example/feed").entries
    assert e.published == e.updated == float(timegm((2024, 5, 1, 10, 0, 0)))
    assert e.summary == "Hi"


def test_json_feed() -> None:
    parsed = parse_feed((FEEDS / "lemon24-full.json").read_bytes(), {"content-type": "application/feed+json"},
                        "https://example.org/feed.json")
    assert parsed.title == "My Example Feed" and parsed.version == "json1.1"
    second, first = parsed.entries
    assert second.key == "id:2" and second.title == "Title" and second.link == "https://example.org/second-item"
    assert second.summary == "Content with [link](http://example.com/)"
    assert second.published == float(timegm((2020, 1, 2, 21, 0, 0)))  # 14:00 at -07:00
    assert second.updated == float(timegm((2020, 1, 4, 0, 0, 0)))  # 01:00 at +01:00
    assert first.key == "id:1" and first.summary == "Hello, world!" and first.author == "Jane"
    assert first.published == float(timegm((2020, 1, 2, 12, 0, 0)))


def test_json_feed_text_content_relative_urls_and_odd_values() -> None:
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "title": "J",
        "home_page_url": "https://j.example/",
        "items": [
            {"id": 7, "url": "/posts/7", "title": "<b>Seven</b>", "content_text": "a < b & c\nnext line",
             "date_published": "not a date", "image": "javascript:alert(1)"},
            {"url": "https://j.example/8", "summary": "plain <summary>", "date_modified": "2024-01-01T00:00:00Z"},
            "not an item",
            {"id": None, "title": "No id, no url", "content_html": "<p>x</p>", "authors": [{"name": "Ann"}]},
        ],
    }
    parsed = parse_feed(json.dumps(doc).encode(), {"content-type": "application/json"}, "https://j.example/feed.json")
    seven, eight, nine = parsed.entries
    assert seven.key == "id:7" and seven.link == "https://j.example/posts/7" and seven.title == "Seven"
    assert seven.summary == "a < b & c\nnext line"
    assert seven.published is None and seven.image is None
    assert eight.key == "link:https://j.example/8" and eight.summary == "plain <summary>"
    assert eight.published == eight.updated == float(timegm((2024, 1, 1, 0, 0, 0)))
    assert nine.key.startswith("hash:") and nine.author == "Ann" and nine.link is None


# --- not feeds, and broken feeds -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"",
    b"   \n",
    b"<!doctype html><html><head><title>Home</title></head><body><p>Hello</p></body></html>",
    b"\x00\x01\x02\xff\xfe binary",
    b'{"hello": "world"}',
    b"{not json",
    b'{"version": "https://jsonfeed.org/version/1.1", "items": "nope"}',
    b"[1, 2, 3]",
    b"Just a plain text file.",
])
def test_things_that_are_not_feeds_raise_parse_error(body) -> None:
    with pytest.raises(ParseError):
        parse_feed(body, {}, "https://x.example/")


def test_a_malformed_feed_still_yields_its_entries_with_a_warning() -> None:
    body = rss([{"title": "One", "guid": "1"}, {"title": "Two", "guid": "2"}]).replace(b"</channel></rss>", b"")
    body += b"<item><title>Broken & unescaped</title>"
    parsed = parse_feed(body, RSS_HEADERS, "https://x.example/feed")
    assert [e.title for e in parsed.entries][:2] == ["One", "Two"]
    assert parsed.warning


def test_non_http_links_are_dropped() -> None:
    body = rss([{"title": "T", "link": "javascript:alert(1)", "guid": "g"},
                {"title": "U", "link": "ftp://files.example/x", "guid": "h"}])
    entries = parse_feed(body, RSS_HEADERS, "https://x.example/feed").entries
    assert [e.link for e in entries] == [None, None]
    assert [e.link_key for e in entries] == [None, None]
