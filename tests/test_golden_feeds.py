"""Golden files: what Discord gets for the newest entries of real-world and hand-made feeds.

Each feed below is parsed (``bot.parse.parse_feed``) and its newest three entries rendered
(``bot.render.render_entry`` with a subscription that has the ``[defaults]`` values); the
payloads are compared with ``tests/golden/feeds/<feed>.json``. The goldens were reviewed by
eye, the way a member reads them in Discord. When a change to parsing or rendering is
intended, regenerate them with

    HERALD_UPDATE_GOLDEN=1 python -m pytest tests/test_golden_feeds.py

and review the diff before committing it. Without the variable the test only compares.

The golden is not the only guard: each feed also has explicit assertions about the defect
issue #10 found on it (``test_<feed>_...`` below), so a regenerated golden cannot hide its
return.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from bot.models import MessageDefaults, ParsedEntry, ParsedFeed, StoredEntry, Subscription
from bot.parse import parse_feed
from bot.render import render_entry
from tests.discord_markdown import read

HERE = Path(__file__).resolve().parent
REAL = HERE / "feeds" / "real-world"
HAND = HERE / "feeds" / "hand-made"
GOLDEN_DIR = HERE / "golden" / "feeds"
FIRST_SEEN = 1_796_169_600.0  # a fixed "now" (2026-12-02 00:00 UTC), after every entry of these feeds
NEWEST = 3  # entries rendered per feed

# feed file -> the URL it is served from (the base for its relative links)
FEEDS: dict[str, str] = {
    "real-world/reddit.rss": "https://www.reddit.com/.rss",
    "real-world/reddit-atom.rss": "https://www.reddit.com/r/pics/.rss",
    "real-world/guardian.rss": "https://www.theguardian.com/uk/rss",
    "real-world/many-links.rss": "http://feeds.feedburner.com/blogspot/RLXA",
    "real-world/feedburner.atom": "http://feeds.feedburner.com/TheMaskedBlogger",
    "real-world/gulp-atom.atom": "https://github.com/gulpjs/gulp/releases.atom",
    "real-world/heise.atom": "https://www.heise.de/newsticker/heise-atom.xml",
    "real-world/craigslist.rss": "https://sfbay.craigslist.org/search/sss?format=rss",
    "real-world/uolNoticias.rss": "http://rss.home.uol.com.br/index.xml",
    "real-world/giantbomb-podcast-3.rss": "https://www.giantbomb.com/podcast-xml/giant-bombcast/",
    "real-world/intertwingly.atom": "http://intertwingly.net/blog/index.atom",
    "real-world/wapowellness.xml": "http://feeds.washingtonpost.com/rss/lifestyle/wellness",
    "real-world/rss2sample.xml": "http://liftoff.msfc.nasa.gov/rss.xml",
    "real-world/illegally-nested.xml": "https://feeds.example/illegally-nested.xml",
    "real-world/feed-itunes.xml": "https://feeds.example/feed-itunes.xml",
    "real-world/atom-feed-youtube.xml": "https://www.youtube.com/feeds/videos.xml",
    "real-world/feed-test-hindi-channel-image.xml": "https://feeds.example/hindi.xml",
    "real-world/atom-feed-rss-bridge.xml": "https://rss-bridge.example/?action=display&format=Atom",
    "real-world/feed-test-greek.xml": "https://feeds.example/greek.xml",
    "real-world/feed-test-ru.xml": "https://feeds.example/ru.xml",
    "real-world/atom-feed-reddit.xml": "https://www.reddit.com/r/androiddev/.rss",
    "real-world/feed-google-blog.xml": "https://blog.google/rss/",
    "real-world/lemon24-full.atom": "https://feeds.example/full.atom",
    "lemon24-full.json": "https://feeds.example/full.json",
    "feedparser-entry_id_no_normalization_4.xml": "https://feeds.example/atom.xml",
    "hand-made/mastodon-statuses.rss": "https://social.example/@ada.rss",
    "hand-made/github-commits.atom": "https://github.com/herald-example/herald/commits/main.atom",
    "hand-made/github-releases.atom": "https://github.com/herald-example/herald/releases.atom",
    "hand-made/code-heavy.rss": "https://code-notes.example/feed.xml",
    "hand-made/literal-markdown.rss": "https://literal.example/feed.xml",
}


def golden_name(feed: str) -> str:
    return feed.rsplit("/", 1)[-1] + ".json"


def parse(feed: str) -> ParsedFeed:
    return parse_feed((HERE / "feeds" / feed).read_bytes(), {}, FEEDS[feed])


def newest(parsed: ParsedFeed, n: int = NEWEST) -> list[ParsedEntry]:
    """The ``n`` newest entries: by date (published, else updated), undated ones in document order after."""
    def key(e: ParsedEntry) -> tuple[int, float, int]:
        ts = e.published if e.published is not None else e.updated
        return (0, -ts, e.position) if ts is not None else (1, 0.0, e.position)
    return sorted(parsed.entries, key=key)[:n]


def default_sub() -> Subscription:
    return Subscription(id=1, feed_id=1, target="channel:1").with_defaults(MessageDefaults())


def stored(e: ParsedEntry, parsed: ParsedFeed, i: int) -> StoredEntry:
    return StoredEntry(id=i, feed_id=1, key=e.key, title=e.title, link=e.link, summary=e.summary, author=e.author,
                       published=e.published, image=e.image, first_seen=FIRST_SEEN, feed_title=parsed.title,
                       thumbnail=e.thumbnail, feed_image=parsed.image)


def payloads(feed: str) -> list[dict[str, Any]]:
    parsed = parse(feed)
    sub = default_sub()
    return [render_entry(stored(e, parsed, i), parsed.title, sub) for i, e in enumerate(newest(parsed), 1)]


def embeds(feed: str) -> list[dict[str, Any]]:
    return [p["embeds"][0] for p in payloads(feed)]


def visible(md: str) -> str:
    """The text a member sees for a Markdown description."""
    return read(md).text


@pytest.mark.parametrize("feed", sorted(FEEDS))
def test_golden_feed_payloads(feed: str) -> None:
    got = payloads(feed)
    assert got, f"{feed}: no entries"
    text = json.dumps(got, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    path = GOLDEN_DIR / golden_name(feed)
    if os.environ.get("HERALD_UPDATE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; create it with HERALD_UPDATE_GOLDEN=1 (see the top of this file)"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert got == expected, f"{feed}: rendering changed; if intended, regenerate with HERALD_UPDATE_GOLDEN=1 and review"


def test_every_golden_has_a_feed() -> None:
    # a feed dropped from FEEDS must not leave a stale golden behind
    assert sorted(p.name for p in GOLDEN_DIR.glob("*.json")) == sorted(golden_name(f) for f in FEEDS)
    assert len([f for f in FEEDS if not f.startswith("hand-made/")]) >= 20


@pytest.mark.parametrize("feed", sorted(FEEDS))
def test_golden_feeds_render_within_discords_limits(feed: str) -> None:
    from tests.test_render import assert_within_limits, spoofed_links

    for p in payloads(feed):
        assert_within_limits(p)
        embed = p["embeds"][0]
        desc = embed.get("description", "")
        assert len(desc) <= MessageDefaults().summary_length
        assert spoofed_links(desc) == []
        assert "\ufffd" not in desc + embed["title"], f"{feed}: a character lost in decoding"
        # nothing indented outside code and lists (YouTube's XML indentation, html2text's 4-space code)
        assert not [line for line in _outside_code(desc) if line.startswith("    ") and not _LIST_ITEM.match(line)]


_LIST_ITEM = re.compile(r" {0,12}(?:[-*]|\d{1,9}\.) ")


def _outside_code(md: str) -> list[str]:
    lines, inside = [], False
    for line in md.split("\n"):
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            lines.append(line)
    return lines


def _formatting(md: str) -> set[str]:
    return read(md).kinds() - {"link", "url"}


# --- what issue #10 found on each feed ----------------------------------------------------------------------------


def test_reddit_rss_literal_stars_are_not_bold() -> None:
    # the AMA's "** We'll start taking questions at 6PM EST. **" was shown as bold
    [ama] = [e for e in parse("real-world/reddit.rss").entries if "6PM EST" in e.summary]
    reading = read(ama.summary)
    assert "** We'll start taking questions at 6PM EST. **" in reading.text
    assert not [s for s in reading.of("bold") if "6PM" in s.text]
    first = embeds("real-world/reddit.rss")[0]
    assert "**Master of None**" in first["description"]  # the <strong> the author wrote stays bold


def test_reddit_atom_shows_no_raw_html_and_keeps_spaces_around_links() -> None:
    descs = [e["description"] for e in embeds("real-world/reddit-atom.rss")]
    for desc in descs:
        assert "SC_OFF" not in desc and "<div" not in desc and "&lt;" not in desc and "<p>" not in desc
    assert descs[2].startswith("submitted by [eskimio](https://www.reddit.com/user/eskimio) to [pics](")


def test_reddit_layout_table_keeps_paragraphs_and_lists() -> None:
    # Reddit wraps each post in a two-cell table: the post is not glued into one line of " · "-joined cells
    [post, *_] = embeds("real-world/atom-feed-reddit.xml")
    assert post["description"].startswith("Hello,\n\nAs we are seeing")
    assert "\n- **It's on Bedrock only.**\n" in post["description"]
    assert " · " not in post["description"]
    assert post["image"]["url"].startswith("https://external-preview.redd.it/")


def test_guardian_media_content_without_type_is_the_image_and_lists_survive_br() -> None:
    shown = embeds("real-world/guardian.rss")
    assert all(e["image"]["url"].startswith("https://i.guim.co.uk/") and "w=460" in e["image"]["url"] for e in shown)
    # <li><a>…</a><br></li>: the <br> stays inside the item, the list is not broken
    lines = shown[1]["description"].split("\n")
    assert lines[0].startswith("- [Latest transfer deals") and lines[1].startswith("- [Manchester City")
    assert shown[0]["author"]["name"] == "Scott Murray"


def test_many_links_has_no_flare_button_or_counter() -> None:
    for e in embeds("real-world/many-links.rss"):
        for part in (e.get("image"), e.get("thumbnail")):
            assert part is None or "feedburner" not in part["url"]
        assert "feedburner" not in e["description"] and "feedproxy" not in e["description"]
        assert "~ff" not in e["description"] and "/~r/" not in e["description"]
    assert embeds("real-world/many-links.rss")[0].get("image") is None


def test_whole_summaries_fence_code_and_drop_junk_links() -> None:
    # past the 500 characters an announcement shows, the stored summary (also /search's text) is right too
    [frobber] = [e for e in parse("real-world/many-links.rss").entries if "Add Frobber" in e.summary]
    blocks = read(frobber.summary).of("codeblock")
    assert any(b.text.startswith("Add Frobber to the list of available widgets.\n\nThis allows") for b in blocks)
    assert "    Add Frobber" not in frobber.summary
    guardian = parse("real-world/guardian.rss").entries
    assert len(guardian) > 20
    for e in guardian:  # every description ended with a "Continue reading..." link; two had mailto: links
        assert "Continue reading" not in e.summary and "mailto:" not in e.summary
    assert any("- And email Scott here" in e.summary for e in guardian)
    wapo = parse("real-world/wapowellness.xml").entries
    assert wapo and not [e for e in wapo if "Read full article" in e.summary]  # the "Read full article >>" teaser


def test_feedburner_atom_bold_is_followed_by_its_comma() -> None:
    desc = embeds("real-world/feedburner.atom")[0]["description"]
    assert desc.startswith("After **November 2016**, all releases")
    assert "** ," not in desc and "**November 2016** ," not in desc


def test_gulp_avatar_is_the_thumbnail_not_the_large_image() -> None:
    for e in embeds("real-world/gulp-atom.atom"):
        assert "image" not in e
        assert e["thumbnail"]["url"].startswith("https://avatars3.githubusercontent.com/")
        assert e["author"] == {"name": "contra"}
    assert [e["description"] for e in embeds("real-world/gulp-atom.atom")] == ["3.9.0", "3.8.11", "3.8.10"]


def test_giantbomb_and_itunes_episode_images() -> None:
    shown = embeds("real-world/giantbomb-podcast-3.rss")
    assert [e["image"]["url"].split("/")[-1] for e in shown] == [
        "3132120-mspac-marquee-full.jpg?20191008", "3130741-number1.jpg?20191008",
        "3128934-screen%20shot%202019-09-17%20at%202.46.36%20pm%20copy.png?20191008"]
    [rogan] = embeds("real-world/feed-itunes.xml")
    assert rogan["image"] == {"url": "http://static.libsyn.com/p/assets/6/f/b/6/6fb68f57fbe00fb1/JRE1109.jpg"}
    assert rogan["author"] == {"name": "Joe Rogan"}
    assert read(rogan["title"]).text == "#1109 - Matthew Walker"


def test_intertwingly_code_is_a_fenced_block() -> None:
    first = embeds("real-world/intertwingly.atom")[0]["description"]
    [block] = read(first).of("codeblock")
    assert block.text.startswith("require 'dbus' # gem install ruby-dbus\n")
    assert "\n```\nrequire 'dbus'" in first
    assert "[interface](http://people.gnome.org/~mccann/" in first


def test_wapowellness_has_no_share_icon_pixel_or_ad() -> None:
    for e in embeds("real-world/wapowellness.xml"):
        assert "image" not in e and "thumbnail" not in e
        assert "pheedo" not in e["description"].lower() and "share" not in e["description"].lower()
        assert e["description"].startswith("**")


def test_hindi_feed_keeps_its_own_date() -> None:
    # "Friday, January 29, 2021 04:42 PM": feedparser cannot parse it; the time first seen was shown
    [e] = embeds("real-world/feed-test-hindi-channel-image.xml")
    assert e["timestamp"] == "2021-01-29T16:42:00+00:00"


def test_youtube_description_loses_the_xml_indentation() -> None:
    [e] = embeds("real-world/atom-feed-youtube.xml")
    desc = e["description"]
    assert "                " not in desc and not any(line.startswith(" ") for line in desc.split("\n"))
    assert "\n\nTo enable it:\nEnsure you are using Kotlin 2.1.0" in desc
    assert e["image"] == {"url": "https://i2.ytimg.com/vi/ULBuIB9lHkc/hqdefault.jpg"}


def test_craigslist_teaser_ellipsis_is_one_ellipsis() -> None:
    for e in embeds("real-world/craigslist.rss"):
        assert "[...]" not in e["description"] and "\\[...\\]" not in e["description"]
        assert e["description"].endswith("…")


def test_illegally_nested_drops_the_flare() -> None:
    for e in embeds("real-world/illegally-nested.xml"):
        assert "feedflare" not in e["description"] and "feedburner" not in e["description"]
        assert "image" not in e


def test_entry_without_a_title_gets_its_first_sentence() -> None:
    titles = [e["title"] for e in embeds("real-world/rss2sample.xml")]
    assert titles[1].startswith("Sky watchers in Europe, Asia") and titles[1].endswith("…")
    assert not any(t.startswith("http") for t in titles)


def test_foreign_scripts_and_encodings() -> None:
    [greek, *_] = embeds("real-world/feed-test-greek.xml")
    assert greek["title"].startswith("«Πορτραίτα καραντίνας»") and greek["description"].endswith("…")
    [ru, *_] = embeds("real-world/feed-test-ru.xml")
    assert ru["title"].startswith("СМИ: собака в Таиланде") and ru["image"]["url"].startswith("https://images.aif.ru/")
    [uol, *_] = embeds("real-world/uolNoticias.rss")
    assert uol["description"].startswith("Líder na pesquisa Ibope")  # declared utf-8, really windows-1252
    [bridge] = embeds("real-world/atom-feed-rss-bridge.xml")
    assert bridge["author"] == {"name": "3sat"} and bridge["image"]["url"].startswith("https://api.ardmediathek.de/")


def test_heise_and_google_blog_images_and_authors() -> None:
    assert all(e["image"]["url"].startswith("http://www.heise.de/scale/") for e in embeds("real-world/heise.atom"))
    google = embeds("real-world/feed-google-blog.xml")
    assert [e["author"]["name"] for e in google[:2]] == ["Annette Kroeber-Riel", "Lindsey Lanquist"]


def test_lemon24_fixtures() -> None:
    atom = embeds("real-world/lemon24-full.atom")
    assert atom[0]["description"] == "content with type" and atom[0]["author"] == {"name": "John Doe"}
    assert atom[2]["title"] == "Untitled post" and "url" not in atom[2]  # no title, no link, no text
    [second, first] = embeds("lemon24-full.json")
    assert second["description"] == "Content with [link](http://example.com/)"
    assert first["author"] == {"name": "Jane"}


def test_upper_case_scheme_link_goes_out_well_formed() -> None:
    # feedparser's own test: the entry's only link is HTTP://www.example.org/thing
    [e] = embeds("feedparser-entry_id_no_normalization_4.xml")
    assert e["url"] == "http://www.example.org/thing"


# --- hand-made feeds ---------------------------------------------------------------------------------------------


def test_mastodon_statuses_get_a_title_from_their_text() -> None:
    shown = embeds("hand-made/mastodon-statuses.rss")
    assert [e["title"] for e in shown] == ["Released v2.0 of my parser today!",
                                           "@bob yes, Use \\*args and \\*\\*kwargs there.", "Good morning."]
    assert shown[0]["timestamp"] == "2026-12-01T10:20:00+00:00"
    assert shown[0]["image"]["url"].endswith("/screenshot.png")
    # Mastodon's invisible/ellipsis spans: the link shows its whole URL once
    assert "Changelog: <https://code.example/ada/parser/releases/tag/v2.0>" in shown[0]["description"]
    assert read(shown[1]["description"]).of("mention") == [] and _formatting(shown[1]["description"]) == set()
    assert shown[2]["description"] == "Good morning. Coffee first\nthen code."


def test_github_commits_are_code_blocks_with_the_avatar_as_thumbnail() -> None:
    shown = embeds("hand-made/github-commits.atom")
    assert shown[0]["title"] == "render: cut summaries at a sentence end"
    [block] = read(shown[0]["description"]).of("codeblock")
    assert "The old cut split `**bold**` pairs; see #42." in block.text
    assert read(shown[1]["title"]).text == "Merge pull request #41 from bob/fix_under_scores"
    assert all("image" not in e and e["thumbnail"]["url"].startswith("https://avatars.") for e in shown)


def test_github_release_notes_keep_headings_lists_and_code() -> None:
    [notes, empty] = embeds("hand-made/github-releases.atom")
    desc = notes["description"]
    assert desc.startswith("**What's Changed**\n\n- render: golden files")
    reading = read(desc)
    assert [s.text for s in reading.of("code")][:2] == ["[defaults]", "summary_length"]
    assert [s.text for s in reading.of("codeblock")] == ["pip install --upgrade herald==1.4.0\nherald check\n"]
    assert ("@ada", "https://github.com/ada") in reading.links and reading.of("mention") == []
    assert empty["description"] == "No content."


def test_code_heavy_post_fences_with_language_and_safe_inline_backticks() -> None:
    post = embeds("hand-made/code-heavy.rss")[0]["description"]
    reading = read(post)
    blocks = reading.of("codeblock")
    assert [b.detail for b in blocks] == ["python", "sh"]
    assert blocks[0].text.startswith('def run(*args, **kwargs):\n    """Run __main__ with **kwargs."""\n')
    codes = [s.text.replace("\u200b", "") for s in reading.of("code")]
    assert codes == ["`code`", "``a ` b``", "run(*args, **kwargs)"]
    assert reading.of("heading") == [] and reading.of("italic") == [] and reading.of("bold") == []
    table = embeds("hand-made/code-heavy.rss")[1]["description"]
    assert "Name · Score\nAlice · 10\nBob · 7" in table


def test_literal_markdown_characters_stay_literal() -> None:
    [text_post, plain_post] = embeds("hand-made/literal-markdown.rss")
    reading = read(text_post["description"])
    assert _formatting(text_post["description"]) == set()
    assert reading.text.startswith("Use *args and **kwargs. 2*3*4 is 24. ~~x~~ is not struck, ||x|| is no spoiler, "
                                   "`x` is no code, a__b__c has no underline, and _snake_case_ stays.")
    for line in ("# not a heading", "> not a quote", "1. not a list item", "- not a bullet either"):
        assert f"\n\n{line}\n\n" in reading.text
    assert "<@123456789012345678>" in reading.text and "@everyone" in reading.text
    plain = read(plain_post["description"])
    assert _formatting(plain_post["description"]) == set()
    assert plain.text == ("Plain text: Use *args and **kwargs\n# a line starting with a hash\n"
                          "> a line starting with a quote marker\n1. a line starting with a number")
    assert read(text_post["title"]).text == "Use *args and **kwargs, 2*3*4 and ~~x~~"
