"""An announcement's fields on every real feed: a real title, authors as names, dates
feedparser cannot read, well-formed URLs, the summary length and [defaults], and --json
printing the exact request body (compared with what the real sink sends to the fake Discord)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sqlite3
from calendar import timegm
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.discord_markdown import read
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import limits
from bot.config import StorageConfig
from bot.deliver import ConsoleSink, DeliveryWorker, nonce_for, render_claimed
from bot.fields import FALLBACK_TITLE_CHARS, clean_author, fallback_title, tolerant_date
from bot.identity import entry_key
from bot.models import (DEFAULT_SUMMARY_LENGTH, Delivery, MessageDefaults, StoredEntry, Subscription)
from bot.parse import parse_feed
from bot.render import render_digest, render_entry
from bot.storage.base import ClaimedDelivery, PollOutcome
from bot.storage.sqlite import SQLiteStorage
from bot.urls import discord_url
from tests.feedserver import rss

FEEDS = Path(__file__).resolve().parent / "feeds"
REAL = FEEDS / "real-world"
NOW = 1_700_000_000.0


def one(body: bytes, url: str | None = "https://social.example/@jo.rss", headers: dict | None = None):
    [e] = parse_feed(body, headers or {}, url).entries
    return e


def stored(e, **kw: Any) -> StoredEntry:
    fields = dict(id=1, feed_id=1, key=e.key, title=e.title, link=e.link, summary=e.summary, author=e.author,
                  published=e.published, image=e.image, first_seen=NOW, thumbnail=e.thumbnail)
    fields.update(kw)
    return StoredEntry(**fields)


def sub(**kw: Any) -> Subscription:
    return Subscription(id=1, feed_id=1, target="channel:1", **kw)


# --- a title for every entry ----------------------------------------------------------------------------------------

MASTODON_STATUS = ('<p>Just shipped <a href="https://social.example/tags/herald" class="mention hashtag" rel="tag">'
                   '#<span>herald</span></a> 2.0! Thanks <span class="h-card"><a href="https://social.example/@bo" '
                   'class="u-url mention">@<span>bo</span></a></span> for the review.</p><p>More soon.</p>')


def test_a_mastodon_status_without_a_title_gets_its_first_sentence() -> None:
    link = "https://social.example/@jo/111222333444555666"
    e = one(rss([{"link": link, "guid": link, "guid_permalink": True, "date": NOW, "description": MASTODON_STATUS}]))
    assert e.title == "Just shipped #herald 2.0!"
    embed = render_entry(stored(e), "Jo")["embeds"][0]
    assert embed["title"] == "Just shipped #herald 2.0!" and embed["url"] == link


def test_a_title_that_is_only_the_status_url_is_replaced_by_the_text() -> None:
    link = "https://micro.example/2024/05/01/120000.html"
    text = "<p>Coffee, then a long walk by the sea</p>"
    e = one(rss([{"title": link, "link": link, "guid": "g", "description": text}]))
    assert e.title == "Coffee, then a long walk by the sea"


def test_a_long_untitled_text_is_cut_at_a_word() -> None:
    text = " ".join(["lorem"] * 60)  # no sentence end
    e = one(rss([{"guid": "g", "description": text}]))
    assert len(e.title) <= FALLBACK_TITLE_CHARS and e.title.endswith("…")
    assert text.startswith(e.title[:-1]) and text[len(e.title) - 1] == " "


def test_an_untitled_json_feed_item_gets_a_title_from_its_text() -> None:
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Micro", "items": [
        {"id": "1", "url": "https://micro.example/1", "content_text": "Sunny today. Going out."},
        {"id": "2", "url": "https://micro.example/2", "content_html": "<p>A <b>bold</b> claim! Really.</p>"},
    ]}).encode()
    parsed = parse_feed(body, {"content-type": "application/feed+json"}, None)
    assert [e.title for e in parsed.entries] == ["Sunny today.", "A bold claim!"]


def test_the_identity_key_keeps_the_feeds_own_title() -> None:
    """Entries stored before titles were made up must keep their keys, or they would be announced again."""
    e = one(rss([{"date": "Tue, 14 Nov 2023 22:13:20 GMT", "description": "<p>No guid, no link. Just text.</p>"}]))
    assert e.title == "No guid, no link."
    assert e.key == entry_key(None, None, "", "Tue, 14 Nov 2023 22:13:20 GMT", e.summary)


def test_html_titles_become_plain_text() -> None:
    body = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>'
            b'<entry><title type="html">&lt;b&gt;Bold&lt;/b&gt; &amp;amp; &lt;i&gt;more&lt;/i&gt;</title><id>urn:1</id>'
            b'<updated>2024-05-01T10:00:00Z</updated></entry></feed>')
    assert one(body, None).title == "Bold & more"


def test_without_title_or_text_the_link_is_the_title() -> None:
    e = one((FEEDS / "feedparser-entry_id_no_normalization_4.xml").read_bytes(), None)
    assert e.title == ""
    title = render_entry(stored(e), None)["embeds"][0]["title"]
    assert read(title).text == "HTTP://www.example.org/thing"  # shown as typed (the title escapes "://")
    assert read(title).spans == ()


def test_fallback_title_examples() -> None:
    assert fallback_title("Dr. Who is back on TV tonight. Really.") == "Dr. Who is back on TV tonight."
    assert fallback_title("  Hello   world  ") == "Hello world"
    assert fallback_title("") == ""
    assert len(fallback_title("x" * 5000)) == FALLBACK_TITLE_CHARS


# --- GitHub commits and releases -------------------------------------------------------------------------------------

GITHUB_COMMITS = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/" xml:lang="en-US">
  <id>tag:github.com,2008:/octo/repo/commits/main</id>
  <link type="text/html" rel="alternate" href="https://github.com/octo/repo/commits/main"/>
  <title>Recent Commits to repo:main</title>
  <updated>2024-05-02T10:00:00Z</updated>
  <entry>
    <id>tag:github.com,2008:Grit::Commit/0123abcd</id>
    <link type="text/html" rel="alternate" href="https://github.com/octo/repo/commit/0123abcd"/>
    <title>Fix the parser on empty titles</title>
    <updated>2024-05-02T10:00:00Z</updated>
    <media:thumbnail height="30" width="30" url="https://avatars.githubusercontent.com/u/1?s=30&amp;v=4"/>
    <author><name>octocat</name><uri>https://github.com/octocat</uri></author>
    <content type="html">&lt;pre style='white-space:pre-wrap;width:81ex'&gt;Fix the parser on empty titles&lt;/pre&gt;
    </content>
  </entry>
</feed>"""


def test_github_commits_atom() -> None:
    e = one(GITHUB_COMMITS, "https://github.com/octo/repo/commits/main.atom")
    assert e.title == "Fix the parser on empty titles" and e.author == "octocat"
    assert e.link == "https://github.com/octo/repo/commit/0123abcd"
    assert e.image is None and e.thumbnail == "https://avatars.githubusercontent.com/u/1?s=30&v=4"
    assert e.published == float(timegm((2024, 5, 2, 10, 0, 0)))


def test_github_releases_atom() -> None:
    entries = parse_feed((REAL / "gulp-atom.atom").read_bytes(), {}, "https://github.com/gulpjs/gulp/releases.atom").entries
    assert [e.title for e in entries[:3]] == ["v3.9.0", "v3.8.11", "v3.8.10"]
    assert {e.author for e in entries} == {"contra"}
    assert entries[0].link == "https://github.com/gulpjs/gulp/releases/tag/v3.9.0"


# --- authors ------------------------------------------------------------------------------------------------------


def test_email_and_name_authors_become_the_name() -> None:
    for raw in ("jo@example.org (Jo Doe)", "Jo Doe (jo@example.org)"):
        e = one(rss([{"title": "T", "guid": "g", "raw": f"<author>{raw}</author>"}]))
        assert e.author == "Jo Doe", raw
    [first, *_] = parse_feed((REAL / "many-links.rss").read_bytes(), {}, None).entries
    assert first.author == "Google Testing Bloggers"  # <author>noreply@blogger.com (Google Testing Bloggers)</author>


def test_dc_creator_and_itunes_author() -> None:
    body = rss([{"title": "T", "guid": "g", "raw": "<dc:creator>Ana Lima</dc:creator>"}]).replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">')
    assert one(body).author == "Ana Lima"
    podcast = rss([{"title": "Episode 1", "guid": "e1", "raw": (
        '<itunes:author>The Hosts</itunes:author>'
        '<itunes:image href="https://pod.example/ep1.jpg"/>'
        '<enclosure url="https://pod.example/ep1.mp3" type="audio/mpeg" length="1"/>')}]).replace(
        b'<rss version="2.0">', b'<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">')
    e = one(podcast)
    assert e.author == "The Hosts" and e.image == "https://pod.example/ep1.jpg"
    [rogan] = parse_feed((REAL / "feed-itunes.xml").read_bytes(), {}, None).entries
    assert rogan.author == "Joe Rogan"


def test_clean_author_examples() -> None:
    assert clean_author("x@y.z (@everyone)") == "@everyone"
    assert clean_author("Jo Doe <jo@example.org>") == "Jo Doe"
    assert clean_author("Jo (the editor)") == "Jo (the editor)"  # not an email: kept
    assert clean_author("  ") is None and clean_author(None) is None


# --- dates ---------------------------------------------------------------------------------------------------------


def test_a_date_feedparser_cannot_read_is_read_tolerantly() -> None:
    [e] = parse_feed((REAL / "feed-test-hindi-channel-image.xml").read_bytes(), {}, None).entries
    assert e.published == float(timegm((2021, 1, 29, 16, 42, 0)))  # "Friday, January 29, 2021 04:42 PM"
    embed = render_entry(stored(e, first_seen=float(timegm((2021, 2, 1, 0, 0, 0)))), "F")["embeds"][0]
    assert embed["timestamp"] == "2021-01-29T16:42:00+00:00"  # not the time first seen


@pytest.mark.parametrize("text, expected", [
    ("Friday, January 29, 2021 04:42 PM", (2021, 1, 29, 16, 42, 0)),
    ("22.11.2022 12:16:00", (2022, 11, 22, 12, 16, 0)),
    ("Fri, 05/03/2019 - 15:21", (2019, 5, 3, 15, 21, 0)),
    ("January 29, 2021 4:42 pm PST", (2021, 1, 30, 0, 42, 0)),
    ("Jan 29 2021 04:42PM -0800", (2021, 1, 30, 0, 42, 0)),
])
def test_unparseable_date_strings(text, expected) -> None:
    e = one(rss([{"title": "T", "guid": "g", "date": text}]))
    assert e.published == float(timegm(expected)), text


@pytest.mark.parametrize("text", ["Friday", "January 29", "0001-01-01", "soon", "1 1 1", "5/3", "x" * 500,
                                  "Friday, January 29, 1921 04:42 PM"])
def test_absurd_or_partial_dates_fall_back_to_the_time_first_seen(text) -> None:
    e = one(rss([{"title": "T", "guid": "g", "date": text}]))
    assert e.published is None, text
    assert tolerant_date(text) is None


def test_json_feed_dates_are_read_tolerantly_too() -> None:
    body = json.dumps({"version": "https://jsonfeed.org/version/1", "title": "J", "items": [
        {"id": "1", "title": "T", "date_published": "January 5, 2024 10:00 AM"}]}).encode()
    assert one(body, None, {"content-type": "application/json"}).published == float(timegm((2024, 1, 5, 10, 0, 0)))


# --- well-formed URLs --------------------------------------------------------------------------------------------


def test_an_upper_case_scheme_goes_out_lower_case() -> None:
    e = one((FEEDS / "feedparser-entry_id_no_normalization_4.xml").read_bytes(), None)
    assert e.link == "HTTP://www.example.org/thing"  # stored as the feed wrote it
    assert render_entry(stored(e), None)["embeds"][0]["url"] == "http://www.example.org/thing"


def test_spaced_and_non_ascii_links_are_percent_encoded() -> None:
    e = one(rss([{"title": "T", "guid": "g", "link": "https://bücher.example/neue bücher/straße?q=ä ö"}]))
    embed = render_entry(stored(e), "F")["embeds"][0]
    assert embed["url"] == "https://xn--bcher-kva.example/neue%20b%C3%BCcher/stra%C3%9Fe?q=%C3%A4%20%C3%B6"
    digest = render_digest([stored(e)], "F")["embeds"][0]["description"]
    assert "(https://xn--bcher-kva.example/neue%20b%C3%BCcher/" in digest


def test_urls_that_cannot_be_made_well_formed_are_dropped() -> None:
    e = stored(one(rss([{"title": "T", "guid": "g"}])), link="https://good.example/\x00bad",
               image="https://user:pw@cdn.example/a.jpg", thumbnail="https://cdn.example/" + "a" * limits.EMBED_URL)
    embed = render_entry(e, "F")["embeds"][0]
    assert "url" not in embed and "image" not in embed and "thumbnail" not in embed


@pytest.mark.parametrize("url, expected", [
    ("HTTP://www.example.org/thing", "http://www.example.org/thing"),
    ("https://EXAMPLE.org", "https://example.org"),
    ("https://blog.example/with space", "https://blog.example/with%20space"),
    ("https://blog.example/a%20b/100%", "https://blog.example/a%20b/100%25"),
    ("  https://blog.example/x\n", "https://blog.example/x"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("https://blog.example/p?a=1&b=<2>#top", "https://blog.example/p?a=1&b=%3C2%3E#top"),
    ("javascript:alert(1)", None), ("ftp://x.example/", None), ("https://", None), ("//x.example/", None),
    ("https://x.example:99999/", None), ("https://trusted.example@evil.example/", None),
    ("https://a..b/", None), ("https://ex\x07ample.org/", None), ("https://bad\ud800.example/", None),
    ("https://x.example/" + "a" * limits.EMBED_URL, None), (None, None), (42, None),
])
def test_discord_url_examples(url, expected) -> None:
    assert discord_url(url) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.builds(lambda s: "https://x.example/" + s, st.text(max_size=200)),
                 st.builds(lambda s: "HTTP://" + s, st.text(max_size=100))))
def test_discord_urls_are_well_formed_and_stable(url) -> None:
    out = discord_url(url)
    if out is None:
        return
    assert out.startswith(("http://", "https://")) and out.isascii() and len(out) <= limits.EMBED_URL
    assert not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in out)
    assert discord_url(out) == out
    assert urlsplit(out).hostname


# --- summary length and [defaults] -------------------------------------------------------------------------------

LONG = " ".join(f"word{i}" for i in range(2000))


def long_entry() -> StoredEntry:
    return StoredEntry(id=1, feed_id=1, key="id:1", title="T", link="https://blog.example/p", summary=LONG,
                       author=None, published=NOW, image=None, first_seen=NOW)


def test_summary_length_zero_means_no_description() -> None:
    assert "description" not in render_entry(long_entry(), "F", sub(summary_length=0))["embeds"][0]


def test_summary_length_bounds_the_description() -> None:
    desc = render_entry(long_entry(), "F", sub(summary_length=120))["embeds"][0]["description"]
    assert 60 < len(desc) <= 120 and desc.endswith("…")
    desc = render_entry(long_entry(), "F", None)["embeds"][0]["description"]
    assert DEFAULT_SUMMARY_LENGTH // 2 < len(desc) <= DEFAULT_SUMMARY_LENGTH == 500
    desc = render_entry(long_entry(), "F", sub(summary_length=limits.EMBED_DESCRIPTION))["embeds"][0]["description"]
    assert limits.EMBED_DESCRIPTION // 2 < len(desc) <= limits.EMBED_DESCRIPTION


def claimed_for(subscription: Subscription) -> ClaimedDelivery:
    return ClaimedDelivery(Delivery(1, 1, (1,), "entry"), subscription, [long_entry()], "F")


def test_defaults_apply_and_a_feeds_own_value_wins() -> None:
    defaults = MessageDefaults(summary_length=120)
    desc = render_claimed(claimed_for(sub()), defaults)["embeds"][0]["description"]
    assert len(desc) <= 120
    desc = render_claimed(claimed_for(sub(summary_length=300)), defaults)["embeds"][0]["description"]
    assert 150 < len(desc) <= 300
    assert "description" not in render_claimed(claimed_for(sub(summary_length=0)), defaults)["embeds"][0]
    assert "description" not in render_claimed(claimed_for(sub()), MessageDefaults(summary_length=0))["embeds"][0]


class Recorder:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    async def send(self, claimed: ClaimedDelivery, payload: dict[str, Any], nonce: str) -> str:
        self.payloads.append(payload)
        return str(len(self.payloads))


async def test_a_feed_added_from_discord_gets_the_defaults(tmp_path) -> None:
    storage = SQLiteStorage(str(tmp_path / "h.db"))
    await storage.open()
    try:
        feed_id = await storage.add_feed("https://blog.example/feed", target="channel:5", guild_id=7, name="b",
                                         backfill=1, now=NOW)
        body = rss([{"title": "T", "guid": "g", "link": "https://blog.example/p", "date": NOW - 60,
                     "description": LONG}],
                   extra_channel="<image><url>https://blog.example/logo.png</url><title>b</title>"
                                 "<link>https://blog.example/</link></image>")
        parsed = parse_feed(body, {}, "https://blog.example/feed")
        from bot.decide import decide
        from bot.models import Known, Policy

        decision = decide(Known(first_fetch=True), parsed.entries, Policy(backfill=1), NOW)
        await storage.apply_polls([PollOutcome(feed_id, NOW, NOW + 600, "new", http_status=200, title=parsed.title,
                                               image=parsed.image, decision=decision)])
        sink = Recorder()
        worker = DeliveryWorker(storage, sink, clock=lambda: NOW,
                                defaults=MessageDefaults(summary_length=80, feed_image=True))
        assert await worker.deliver_due() == 1
    finally:
        await storage.close()
    [embed] = sink.payloads[0]["embeds"]
    assert len(embed["description"]) <= 80
    assert embed["thumbnail"] == {"url": "https://blog.example/logo.png"}


# --- --json prints the exact request --------------------------------------------------------------------------------

@pytest.fixture
def fake_message_rate() -> tuple[int, float]:
    return (50, 0.5)  # the shared `fake` (conftest.py) with room for this module's messages


async def test_json_is_the_exact_body_the_sink_sends(tmp_path, fake, monkeypatch) -> None:
    from bot.app import Herald
    from tests.discord_harness import running_bot
    from tests.support import TOKEN, TOKEN_ENV, make_config
    from tests.feedgen import numbered_items, write_feed

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    guild = fake.add_guild()
    text = fake.add_channel(guild, "text")
    news = fake.add_channel(guild, "news")
    hook_url = fake.add_webhook(text)
    monkeypatch.setenv("HERALD_HOOK", hook_url)
    feeds = [
        {"url": write_feed(tmp_path / "f.xml", numbered_items(2)), "name": "hooked", "webhooks": ["HERALD_HOOK"],
         "backfill": 2, "username": "Feed Bot", "avatar_url": "https://example.org/a.png"},
        {"url": write_feed(tmp_path / "g.xml", numbered_items(1, prefix="Channel post")), "name": "chan",
         "channels": [news], "backfill": 1, "mention_roles": [777], "summary_length": 40},
    ]
    # one feed at a time; the nonce is made from the entry's id in its own database, and the two runs
    # may poll the feeds in a different order, so each nonce is checked against its own database
    config = make_config(tmp_path, feeds, fake=fake, defaults={"summary_length": 60}, polling={"concurrency": 1})

    out = io.StringIO()
    dry = dataclasses.replace(config, storage=StorageConfig(url=f"sqlite:///{tmp_path / 'dry.db'}"))
    async with Herald(dry, ConsoleSink(out, as_json=True)) as herald:
        await herald.run_once()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3

    async with running_bot(config, TOKEN):
        await fake.wait_until(lambda: len(fake.messages(text)) >= 2 and len(fake.messages(news)) >= 1, timeout=20,
                              what="three deliveries")
    hook_reqs = [r for r in fake.requests if r.method == "POST" and r.path.startswith("/webhooks/")]
    chan_reqs = [r for r in fake.requests if r.method == "POST" and r.path == f"/channels/{news}/messages"]
    assert len(hook_reqs) == 2 and len(chan_reqs) == 1

    hooked = [line for line in lines if line["feed"] == "hooked"]
    [chan] = [line for line in lines if line["feed"] == "chan"]
    hook_path = urlsplit(hook_url).path
    token = hook_path.rsplit("/", 1)[1]
    for line, req in zip(hooked, hook_reqs, strict=True):
        # the same JSON, key for key and in the same order: what was printed is what is sent
        assert json.dumps(line["payload"]) == json.dumps(req.json)
        assert line["payload"]["username"] == "Feed Bot" and line["payload"]["avatar_url"] == "https://example.org/a.png"
        assert line["endpoint"] == f"POST {hook_path.rsplit('/', 1)[0]}/<token>?wait=true"
        assert req.query == {"wait": "true"}  # what was printed is the query sent
        assert len(line["payload"]["embeds"][0]["description"]) <= 60  # [defaults]
    assert token not in out.getvalue()
    def entry_id(db: str) -> int:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            [(found,)] = conn.execute("SELECT id FROM entries WHERE title = 'Channel post 0'").fetchall()
        return int(found)

    printed, sent = chan["payload"], chan_reqs[0].json
    assert printed["nonce"] == nonce_for(f"channel:{news}", "entry", (entry_id(str(tmp_path / "dry.db")),))
    assert sent["nonce"] == nonce_for(f"channel:{news}", "entry", (entry_id(config.storage.url.split("///", 1)[1]),))
    # apart from that nonce, the same JSON, key for key and in the same order
    assert json.dumps(dict(printed, nonce="")) == json.dumps(dict(sent, nonce=""))
    assert chan["endpoint"] == f"POST /channels/{news}/messages"
    assert printed["enforce_nonce"] is True
    assert chan["payload"]["content"] == "<@&777>"
    assert len(chan["payload"]["embeds"][0].get("description", "")) <= 40  # the feed's own value
