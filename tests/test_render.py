"""The renderer: entries to Discord message payloads that Discord always accepts.

Golden files: ``tests/golden/seed-vsoch.render.json`` holds the payloads of the seed
feed's 10 posts. When a change to the parser or renderer is intended, regenerate it with

    HERALD_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py -k golden

and review the diff before committing it. Without the variable the test only compares.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bot import escape
from bot.escape import clean
from bot.identity import normalise_link
from bot.models import DEFAULT_SUMMARY_LENGTH, StoredEntry, Subscription
from bot.parse import parse_feed
from bot.render import ELLIPSIS, _misleading, escape_markdown, render_digest, render_entry, thread_name, truncate
from tests.discord_markdown import read
from tests.feedserver import rss

GOLDEN = Path(__file__).resolve().parent / "golden" / "seed-vsoch.render.json"
SEED_URL = "https://vsoch.github.io/feed.xml"
FIRST_SEEN = 1_776_800_000.0  # a fixed "now" (2026-04-21), after every seed post

# Discord's documented limits, written down independently of bot.limits
TITLE, DESCRIPTION, AUTHOR, FOOTER, TOTAL, CONTENT, EMBEDS, URL = 256, 4096, 256, 2048, 6000, 2000, 10, 2048
NO_PINGS = {"parse": []}


def stored(title: str = "A post", summary: str = "", *, link: str | None = "https://blog.example/p/1",
           author: str | None = None, published: float | None = 1_700_000_000.0, image: str | None = None,
           first_seen: float = 1_700_000_100.0, entry_id: int = 1) -> StoredEntry:
    return StoredEntry(id=entry_id, feed_id=1, key=f"id:{entry_id}", title=title, link=link, summary=summary,
                       author=author, published=published, image=image, first_seen=first_seen)


def sub(*roles: int) -> Subscription:
    return Subscription(id=1, feed_id=1, target="channel:1", mention_roles=tuple(roles))


def assert_within_limits(payload: dict[str, Any]) -> None:
    assert set(payload) <= {"embeds", "allowed_mentions", "content"}
    embeds = payload["embeds"]
    assert 1 <= len(embeds) <= EMBEDS
    total = 0
    for e in embeds:
        title = e.get("title", "")
        assert 0 < len(title) <= TITLE
        desc = e.get("description")
        if desc is not None:
            assert 0 < len(desc) <= DESCRIPTION
        author = e.get("author", {}).get("name", "")
        footer = e.get("footer", {}).get("text", "")
        assert len(author) <= AUTHOR and len(footer) <= FOOTER
        if "author" in e:
            assert author.strip()
        if "footer" in e:
            assert footer.strip()
        for key in ("url",):
            if key in e:
                assert len(e[key]) <= URL and re.match(r"^https?://\S+$", e[key])
        if "image" in e:
            assert len(e["image"]["url"]) <= URL and re.match(r"^https?://\S+$", e["image"]["url"])
        total += len(title) + len(desc or "") + len(author) + len(footer)
        total += sum(len(f.get("name", "")) + len(f.get("value", "")) for f in e.get("fields", []))
    assert total <= TOTAL
    if "content" in payload:
        assert 0 < len(payload["content"]) <= CONTENT
    json.dumps(payload)  # serialisable as is


# --- Discord's view of Markdown, for the checks ------------------------------------------------------------

_UNESCAPE = re.compile(r"\\([^0-9A-Za-z\s])")
# a masked link as a Markdown renderer in the style of Discord's reads it: link text may hold
# balanced brackets, the target may sit in <>, be padded with spaces or carry a "title"
_DISCORD_LINK = re.compile(
    r"\[((?:\[[^\]]*\]|[^\[\]]|\](?=[^\[]*\]))*)\]"
    r"\(\s*<?((?:\([^)]*\)|[^\s\\]|\\.)*?)>?(?:\s+['\"][\s\S]*?['\"])?\s*\)"
)
# what a reader takes for a URL: a scheme or "www." anywhere, or text that is a host name (and path)
_LOOKS_LIKE_URL = re.compile(r"[a-z][a-z0-9+.-]*:/{1,3}\S|www\.\S|^[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}(?:/\S*)?$", re.I)


def unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def masked_links(markdown: str) -> list[tuple[str, str]]:
    """(shown text, target) of every masked link a Discord-like renderer would make."""
    out, i = [], 0
    while i < len(markdown):
        ch = markdown[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            m = _DISCORD_LINK.match(markdown, i)
            if m:
                out.append((m.group(1), m.group(2)))
                i = m.end()
                continue
        i += 1
    return out


def spoofed_links(markdown: str) -> list[tuple[str, str]]:
    """Masked links that show something URL-like while pointing somewhere else."""
    bad = []
    for text, target in masked_links(markdown):
        shown = re.sub(r"[*_~`|\[\]<>]", "", unescape(text)).strip()
        bare = _BARE_HOST.match(shown)
        if bare and not _SCHEMED.search(shown) and urlsplit(target).hostname:
            # a bare host ("good.example/a") tells where the link goes: only another host misleads
            if _no_www(bare.group(1)) != _no_www(urlsplit(target).hostname or ""):
                bad.append((text, target))
        elif _LOOKS_LIKE_URL.search(shown) and normalise_link(shown) != normalise_link(target):
            bad.append((text, target))
    return bad


_SCHEMED = re.compile(r"[a-z][a-z0-9+.-]*:/{1,3}\S|www\.\S", re.I)
_BARE_HOST = re.compile(r"^((?:[\w-]+\.)+[a-z]{2,})(?::\d+)?(?:/\S*)?$", re.I)


def _no_www(host: str) -> str:
    host = host.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def active_markdown(title: str) -> str | None:
    """The first Markdown control character in ``title`` that is not escaped, if any."""
    if re.match(r"^(?:[#>-]|\d+\.)", title):
        return title[0]
    i = 0
    while i < len(title):
        if title[i] == "\\":
            i += 2
            continue
        if title[i] in "*_~`|[]":
            return title[i]
        i += 1
    return None


# --- strategies --------------------------------------------------------------------------------------------

_TOKENS = ["*", "**", "_", "__", "~~", "`", "```", "||", "[", "]", "(", ")", "\\", "#", "# ", "> ", "- ", "1. ", "-# ",
           "\n", "\n\n", " ", "  ", "https://good.example/", "www.good.example", "<@&123>", "<@456>", "@everyone",
           "@here", "<#789>", "<t:1700000000:R>", ":smile:", "é", "e\u0301", "\u202e", "\u200f", "שלום", "مرحبا", "𝕏",
           "👩‍👩‍👧", "\U0001F600", "\u0000", "\t", "word", "longerword", "&amp;", "<b>", "…"]
markdownish = st.lists(st.sampled_from(_TOKENS) | st.text(max_size=8), max_size=60).map("".join)
anytext = st.text(max_size=300)
huge = st.builds(lambda chunk, n: (chunk or "x") * n, st.text(min_size=1, max_size=12) | markdownish,
                 st.integers(200, 3000))
text_st = st.one_of(st.just(""), anytext, markdownish, huge)
urls = st.one_of(st.none(), st.just("https://blog.example/p/1"), st.just("http://x.example/" + "a" * 3000),
                 st.just("javascript:alert(1)"), st.just("https://blog.example/with space"), st.text(max_size=30))
dates = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                  st.floats(min_value=0, max_value=4e9), st.just(1e20), st.just(-1e15))

entries = st.builds(
    lambda title, summary, link, author, published, image, eid: stored(
        title, summary, link=link, author=author, published=published, image=image, entry_id=eid),
    text_st, text_st, urls, st.one_of(st.none(), text_st), dates, urls, st.integers(1, 10**9),
)
subscriptions = st.one_of(st.none(), st.lists(st.integers(1, 2**63), max_size=400).map(lambda r: sub(*r)))
feed_titles = st.one_of(st.none(), text_st)

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.data_too_large])


# --- limits: whatever the entry ------------------------------------------------------------------------------


@PROPERTY
@given(entries, feed_titles, subscriptions)
def test_rendered_entries_stay_within_discord_limits(entry, feed_title, subscription) -> None:
    payload = render_entry(entry, feed_title, subscription)
    assert_within_limits(payload)
    assert len(thread_name(entry)) <= 100 and thread_name(entry).strip()


small_entries = st.builds(
    lambda title, link, eid: stored(title, link=link, entry_id=eid),
    st.one_of(st.just(""), st.text(max_size=40), markdownish), urls, st.integers(1, 10**9),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(small_entries, entries), max_size=80), feed_titles, subscriptions)
def test_rendered_digests_stay_within_discord_limits(items, feed_title, subscription) -> None:
    assume(items)
    payload = render_digest(items, feed_title, subscription)
    assert_within_limits(payload)
    embed = payload["embeds"][0]
    assert f"and {len(items)} more" in embed["title"]
    assert payload["allowed_mentions"] == ({"parse": [], "roles": [str(r) for r in subscription.mention_roles]}
                                           if subscription and subscription.mention_roles else NO_PINGS)


def test_huge_digests() -> None:
    many = [stored(f"Post number {i} " + "word " * 40, link=f"https://blog.example/{i}" + "x" * 1500, entry_id=i)
            for i in range(500)]
    payload = render_digest(many, "F" * 5000, sub(*range(1, 300)))
    assert_within_limits(payload)
    assert payload["embeds"][0]["description"].endswith("more")
    huge = [stored("𝕏" * 50_000, link="https://blog.example/" + "y" * 3000, entry_id=1)]
    assert_within_limits(render_digest(huge, None))


def test_huge_and_empty_entries() -> None:
    big = ("word " * 50_000).strip()
    payload = render_entry(stored(big, big, author=big), big)
    assert_within_limits(payload)
    embed = payload["embeds"][0]
    assert embed["title"].endswith(ELLIPSIS) and embed["description"].endswith(ELLIPSIS)
    empty = render_entry(stored("", "", link=None, author="", published=None), "")
    assert_within_limits(empty)
    assert empty["embeds"][0]["title"] == "Untitled post"
    assert "description" not in empty["embeds"][0] and "author" not in empty["embeds"][0]
    assert "footer" not in empty["embeds"][0]
    assert unescape(render_entry(stored("", "x", link="https://blog.example/only-link"), None)["embeds"][0]["title"]) \
        == "https://blog.example/only-link"


def test_every_field_at_its_limit_together_stays_under_6000() -> None:
    payload = render_entry(stored("t" * 1000, "d " * 5000, author="a" * 1000), "f" * 5000)
    assert_within_limits(payload)
    e = payload["embeds"][0]
    assert len(e["title"]) == TITLE and len(e["author"]["name"]) == AUTHOR and len(e["footer"]["text"]) == FOOTER
    assert len(e["title"]) + len(e["description"]) + len(e["author"]["name"]) + len(e["footer"]["text"]) <= TOTAL


@pytest.mark.parametrize("text", [
    "𝕏" * 5000, "e\u0301" * 3000, "\u202eevil.exe\u202c " * 500, "שלום עולם " * 800, "👩‍👩‍👧" * 2000,
    "\U0001F600 " * 3000, "`" * 9000, "\\" * 9000, "*" * 9000, "[" * 4000 + "](" * 3000,
])
def test_unicode_and_markdown_heavy_text(text) -> None:
    payload = render_entry(stored(text, text, author=text), text, sub(1))
    assert_within_limits(payload)
    [embed] = payload["embeds"]
    written = " ".join(escape.clean(text).split())  # what one-line fields show: bidi controls gone
    # the title is plain text in Markdown: read as Discord does, it shows the text as written (cut at a
    # word, at least half the room kept, an escaped character taking two) and makes no formatting
    title = read(embed["title"])
    assert title.spans == (), title.spans
    assert_shows_a_cut_of(title.text, written, TITLE // 4)
    # the author name and the footer are not Markdown in Discord: the text itself, cut
    assert_shows_a_cut_of(embed["author"]["name"], written, AUTHOR // 2)
    assert_shows_a_cut_of(embed["footer"]["text"], written, FOOTER // 2)
    # the summary is Markdown already: the description is a cut of it (bidi controls gone), its own
    # formatting kept, and it neither mentions nor links anything
    desc = embed["description"]
    assert escape.strip_bidi(text.strip()).startswith(desc.removesuffix(ELLIPSIS)), desc
    assert len(desc) >= DEFAULT_SUMMARY_LENGTH // 2 and desc.endswith(ELLIPSIS)
    reading = read(desc)
    assert not reading.of("mention") and not reading.links, reading.spans
    assert reading.text.endswith(ELLIPSIS) and len(reading.text) > len(ELLIPSIS)
    if not MARKDOWN_CHARS & set(text):  # no Markdown in it: the description shows the text as written
        assert_shows_a_cut_of(reading.text, escape.clean(text).strip(), DEFAULT_SUMMARY_LENGTH // 2)


MARKDOWN_CHARS = set("\\*_~`|[]<>#-")


def assert_shows_a_cut_of(shown: str, text: str, at_least: int) -> None:
    """``shown`` is ``text`` cut (ending with "…"), keeping at least ``at_least`` characters of it."""
    assert shown.endswith(ELLIPSIS), shown
    kept = shown.removesuffix(ELLIPSIS)
    assert text.startswith(kept), (shown, text[: len(shown)])
    assert len(kept) >= at_least, (len(kept), shown)


def test_bad_dates_do_not_break_rendering() -> None:
    for published in (None, float("nan"), float("inf"), float("-inf"), 1e20, -1e15, 0.0):
        payload = render_entry(stored(published=published), "F")
        assert_within_limits(payload)
    assert render_entry(stored(published=None, first_seen=0.0), "F")["embeds"][0]["timestamp"] == \
        "1970-01-01T00:00:00+00:00"
    future = render_entry(stored(published=1_700_000_100.0 + 10 * 86400, first_seen=1_700_000_100.0), "F")
    assert future["embeds"][0]["timestamp"] == "2023-11-14T22:15:00+00:00"  # first_seen, not the future date


def test_only_http_urls_are_used() -> None:
    e = render_entry(stored(link="javascript:alert(1)", image="data:image/png;base64,xx"), "F")["embeds"][0]
    assert "url" not in e and "image" not in e
    e = render_entry(stored(link="https://blog.example/p", image="https://blog.example/i.png"), "F")["embeds"][0]
    assert e["url"] == "https://blog.example/p" and e["image"] == {"url": "https://blog.example/i.png"}


# --- mentions -------------------------------------------------------------------------------------------------


@PROPERTY
@given(entries, feed_titles)
def test_feed_text_never_pings_anyone(entry, feed_title) -> None:
    payload = render_entry(entry, feed_title, None)
    assert payload["allowed_mentions"] == NO_PINGS
    assert "content" not in payload
    payload = render_entry(entry, feed_title, sub())
    assert payload["allowed_mentions"] == NO_PINGS and "content" not in payload


def test_only_configured_roles_are_mentioned() -> None:
    text = "@everyone @here <@&999> <@123> ping!"
    payload = render_entry(stored(text, text, author=text), text, sub(111, 222))
    assert payload["allowed_mentions"] == {"parse": [], "roles": ["111", "222"]}
    assert payload["content"] == "<@&111> <@&222>"
    digest = render_digest([stored(text, text)], text, sub(111))
    assert digest["allowed_mentions"] == {"parse": [], "roles": ["111"]} and digest["content"] == "<@&111>"
    assert render_digest([stored(text, text)], text)["allowed_mentions"] == NO_PINGS


# --- titles show literally ------------------------------------------------------------------------------------


@pytest.mark.parametrize("title", [
    "**bold** and __underline__", "_italic_ *also*", "~~struck~~", "`code` and ```block```", "||spoiler||",
    "[masked](https://evil.example)", "# Heading", "## Sub", "-# small", "> quote", "- item", "1. first",
    "back\\slash \\*", "C:\\path\\to\\file_name.txt", "a*b*c_d_e", "[[nested]]", "2024. A year",
])
def test_markdown_in_titles_is_escaped(title) -> None:
    shown = render_entry(stored(title), "F")["embeds"][0]["title"]
    assert active_markdown(shown) is None, shown
    assert unescape(shown) == shown_title(title)


def shown_title(title: str) -> str:
    """A title shows as written, except that one showing a URL other than the post's link is
    followed by the host the embed really opens (the post's link is https://blog.example/p/1)."""
    normal = " ".join(clean(title).split()) or "https://blog.example/p/1"  # invisible characters are never shown
    return normal + " → blog.example" if _misleading(normal, "https://blog.example/p/1") else normal


@pytest.mark.parametrize("title,shown", [
    ("https://good.example/login", "https://good.example/login → blog.example"),
    ("www.good.example", "www.good.example → blog.example"),
    ("ｈｔｔｐｓ：／／good.example", "ｈｔｔｐｓ：／／good.example → blog.example"),
    ("https://blog.example/p/1", "https://blog.example/p/1"),
    ("Release 2.0: what changed", "Release 2.0: what changed"),
])
def test_title_showing_another_url_names_the_real_host(title, shown) -> None:
    assert unescape(render_entry(stored(title), "F")["embeds"][0]["title"]) == shown


@PROPERTY
@given(st.one_of(markdownish, anytext))
def test_titles_show_literally(title) -> None:
    shown = render_entry(stored(title), "F")["embeds"][0]["title"]
    assert active_markdown(shown) is None, shown
    normal = shown_title(title)
    if shown.endswith(ELLIPSIS) and unescape(shown) != normal:
        assert normal.startswith(unescape(shown[: -len(ELLIPSIS)]))
    else:
        assert unescape(shown) == normal


# --- masked links -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("summary", [
    "[https://good.example](https://evil.example)",
    "Read [https://good.example](https://evil.example) now",
    "[https://good.example](<https://evil.example>)",
    "[good.example](https://evil.example)",
    "[www.good.example](https://evil.example/x)",
    "[**https://good.example**](https://evil.example)",
    "[[https://good.example]](https://evil.example)",
    '[https://good.example](https://evil.example "Good")',
    "[https://good.example]( https://evil.example )",
    "[https://good.example/a_(b)](https://evil.example/a_(b))",
    "[Visit https://good.example today](https://evil.example)",
    "[https://good.example](https://good.example@evil.example)",
    "[http://good.example](https://good.example.evil.example/)",
])
def test_masked_link_spoofs_are_defused(summary) -> None:
    payload = render_entry(stored("T", summary), "F")
    desc = payload["embeds"][0]["description"]
    assert spoofed_links(desc) == [], desc
    assert "evil.example" in desc  # the real target is shown, not hidden


@pytest.mark.parametrize("text", ["ｈｔｔｐｓ：／／good.example", "ｗｗｗ．good.example", "good。example/login"])
def test_lookalike_url_text_is_defused(text) -> None:
    desc = render_entry(stored("T", f"[{text}](https://evil.example/x)"), "F")["embeds"][0]["description"]
    assert "](https://evil.example/x)" not in desc, desc  # no longer a masked link
    assert "<https://evil.example/x>" in desc


def test_honest_masked_links_are_kept() -> None:
    summary = "See [the docs](https://good.example/docs) and [https://good.example/a](https://good.example/a/)."
    desc = render_entry(stored("T", summary), "F")["embeds"][0]["description"]
    assert desc == summary


@pytest.mark.parametrize("html", [
    '<a href="https://evil.example">https://good.example</a>',
    '<a href="https://evil.example" title="Good">https://good.example</a>',
    '<a href="https://evil.example"><b>https://good.example</b></a>',
    '<a href="https://evil.example">[https://good.example]</a>',
    '<a href="https://evil.example">www.good.example</a>',
])
def test_spoofs_from_feed_html_are_defused(html) -> None:
    body = rss([{"title": "T", "guid": "g", "link": "https://blog.example/p", "description": f"<p>Go: {html}</p>"}])
    [entry] = parse_feed(body, {"content-type": "application/rss+xml"}, "https://blog.example/feed").entries
    desc = render_entry(stored("T", entry.summary), "F")["embeds"][0]["description"]
    assert spoofed_links(desc) == [], desc
    assert "evil.example" in desc


_url_st = st.sampled_from(["https://good.example", "http://good.example/a", "www.good.example", "good.example/a",
                           "https://evil.example", "https://good.example.evil.example", "https://evil.example/a_(b)"])
_spoof_piece = st.builds(
    lambda text, url, open_, close, title, pad: f"[{text}]({pad}{open_}{url}{close}{title}{pad})",
    st.one_of(_url_st, _url_st.map(lambda u: f"**{u}**"), _url_st.map(lambda u: f"[{u}]"),
              _url_st.map(lambda u: f"see {u} now")),
    _url_st, st.sampled_from(["", "<"]), st.sampled_from(["", ">"]), st.sampled_from(["", ' "t"', " 't'"]),
    st.sampled_from(["", " "]),
)


@PROPERTY
@given(st.lists(st.one_of(_spoof_piece, st.sampled_from(_TOKENS)), max_size=12).map("".join))
@example("[https://good.example](https://evil.example)")
def test_no_summary_can_show_one_url_and_link_another(summary) -> None:
    payload = render_entry(stored("T", summary), "F")
    desc = payload["embeds"][0].get("description", "")
    assert spoofed_links(desc) == [], desc


@PROPERTY
@given(st.lists(st.tuples(_url_st, _url_st), min_size=1, max_size=20))
def test_digest_titles_cannot_spoof_their_links(pairs) -> None:
    items = [stored(title, link=link if link.startswith("http") else None, entry_id=i)
             for i, (title, link) in enumerate(pairs)]
    desc = render_digest(items, "F")["embeds"][0]["description"]
    assert spoofed_links(desc) == [], desc


# --- truncation ----------------------------------------------------------------------------------------------------


def test_truncation_at_a_word_boundary_with_an_ellipsis() -> None:
    text = "The quick brown fox jumps over the lazy dog"
    assert truncate(text, 100) == text
    assert truncate(text, len(text)) == text
    assert truncate(text, 20) == "The quick brown fox…"
    assert truncate(text, 22) == "The quick brown fox…"
    assert truncate("Supercalifragilistic", 10) == "Supercali…"  # one long word: a hard cut
    assert truncate("abc", 1) == ELLIPSIS and truncate("abc", 0) == ""
    assert truncate("line one\nline two continues", 14) == "line one\nline…"
    assert truncate("line one\nline two continues", 13) == "line one…"


def test_truncation_never_leaves_half_a_link_or_a_dangling_escape() -> None:
    text = "Intro words here [a link](https://example.com/a/very/long/path/that/gets/cut) tail"
    cut = truncate(text, 60)
    assert cut == "Intro words here…"
    assert truncate("aaaa \\*\\*\\*\\*\\*", 10).endswith(ELLIPSIS)
    assert not truncate("aaaaaaaa\\*bbbb", 10).removesuffix(ELLIPSIS).endswith("\\")


@settings(max_examples=200, deadline=None)
@given(st.one_of(anytext, markdownish), st.integers(0, 300))
def test_truncate_properties(text, limit) -> None:
    out = truncate(text, limit)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    elif limit > len(ELLIPSIS):
        assert out.endswith(ELLIPSIS)
        assert text.startswith(out[: -len(ELLIPSIS)])


def test_long_descriptions_are_cut_at_a_word_boundary() -> None:
    words = " ".join(f"word{i}" for i in range(3000))
    desc = render_entry(stored("T", words), "F")["embeds"][0]["description"]
    assert len(desc) <= DESCRIPTION and desc.endswith(ELLIPSIS)
    kept = desc[: -len(ELLIPSIS)]
    assert words.startswith(kept) and words[len(kept)] == " "


def test_escape_markdown_examples() -> None:
    assert escape_markdown("a*b_c~d`e|f[g]h\\i") == "a\\*b\\_c\\~d\\`e\\|f\\[g\\]h\\\\i"
    assert escape_markdown("# h") == "\\# h" and escape_markdown("12. x") == "12\\. x"
    assert escape_markdown("> q\n- r") == "\\> q\n\\- r"


# --- the seed feed --------------------------------------------------------------------------------------------------


def seed_payloads(seed_bytes: bytes) -> list[dict[str, Any]]:
    parsed = parse_feed(seed_bytes, {"content-type": "application/rss+xml"}, SEED_URL)
    out = []
    for i, e in enumerate(parsed.entries):
        entry = StoredEntry(id=i + 1, feed_id=1, key=e.key, title=e.title, link=e.link, summary=e.summary,
                            author=e.author, published=e.published, image=e.image, first_seen=FIRST_SEEN)
        out.append(render_entry(entry, parsed.title, sub(555) if i == 0 else None))
    return out


def test_seed_posts_render_with_exact_titles_and_links(seed_bytes) -> None:
    payloads = seed_payloads(seed_bytes)
    assert len(payloads) == 10
    from tests.test_parse import SEED_POSTS

    for payload, (title, link, _) in zip(payloads, SEED_POSTS):
        assert_within_limits(payload)
        embed = payload["embeds"][0]
        assert unescape(embed["title"]) == title and embed["url"] == link
        assert embed["footer"] == {"text": "VanessaSaurus"}
        assert embed["description"] and "<p>" not in embed["description"] and "&amp;" not in embed["description"]
        assert spoofed_links(embed["description"]) == []
    assert payloads[0]["allowed_mentions"] == {"parse": [], "roles": ["555"]}
    assert all(p["allowed_mentions"] == NO_PINGS for p in payloads[1:])
    assert payloads[0]["embeds"][0]["timestamp"] == "2026-04-14T00:11:50+00:00"
    long_post = payloads[9]["embeds"][0]["description"]
    assert len(long_post) == DESCRIPTION or long_post.endswith(ELLIPSIS)


def test_golden_seed_payloads(seed_bytes) -> None:
    payloads = seed_payloads(seed_bytes)
    text = json.dumps(payloads, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("HERALD_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), f"{GOLDEN} is missing; create it with HERALD_UPDATE_GOLDEN=1 (see the top of this file)"
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert payloads == expected, "rendering changed; if intended, regenerate with HERALD_UPDATE_GOLDEN=1"


def test_huge_titles_render() -> None:
    # the URL check reads at most what a title can show (it was quadratic: minutes for these)
    for title in ("a" * 100_000, "a." * 50_000, "https://" + "x" * 100_000):
        payload = render_entry(stored(title), "F")
        assert len(payload["embeds"][0]["title"]) <= 256
        assert len(render_digest([stored(title)], "F")["embeds"][0]["description"]) <= 4096
