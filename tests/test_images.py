"""The image an announcement shows (bot/images.py), on real-world feeds and on hand-made ones.

Each real-world feed below showed the wrong picture, or none, before bot/images.py: the
FeedBurner flare button (many-links.rss), a share icon (wapowellness.xml), a 30 px avatar
as the large image (gulp-atom.atom); media:content without a type (guardian.rss) and the
episode's itunes:image (feed-itunes.xml, giantbomb-podcast.rss) were ignored.
"""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.images import (ICON_MAX_PX, MAX_CANDIDATES, THUMBNAIL_MAX_WIDTH, ChosenImage, ImageCandidate, choose_image,
                        content_images, is_tracker)
from bot.models import StoredEntry, Subscription
from bot.parse import parse_feed, parse_feed_deferred, summarise, complete_deferred
from bot.render import render_entry
from tests.feedserver import rss

FEEDS = Path(__file__).resolve().parent / "feeds"
REAL = FEEDS / "real-world"
MEDIA_NS = b'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'


def parse(name: str, url: str = "https://feeds.example/feed"):
    return parse_feed((REAL / name).read_bytes(), {}, url)


def media_rss(items: list[dict]) -> bytes:
    return rss(items).replace(b'<rss version="2.0">', MEDIA_NS)


def stored(e, feed_image: str | None = None) -> StoredEntry:
    return StoredEntry(id=1, feed_id=1, key=e.key, title=e.title, link=e.link, summary=e.summary, author=e.author,
                       published=e.published, image=e.image, first_seen=1_700_000_000.0, thumbnail=e.thumbnail,
                       feed_image=feed_image)


# --- real-world feeds -------------------------------------------------------------------------------------------


def test_feedburner_flare_and_counters_are_never_the_image() -> None:
    entries = parse("many-links.rss").entries
    assert len(entries) == 25
    for e in entries:
        for url in (e.image, e.thumbnail):
            assert url is None or "feedburner.com" not in url
    # an entry whose only <img>s are flare and a 1x1 counter has no image at all
    assert entries[0].image is None and entries[0].thumbnail is None
    # Blogger's 72 px media:thumbnail is a thumbnail, not a blown-up large image
    with_thumb = [e for e in entries if e.thumbnail]
    assert with_thumb and all("bp.blogspot.com" in e.thumbnail and "/s72-c/" in e.thumbnail for e in with_thumb)
    assert all(e.image is None for e in with_thumb)


def test_share_buttons_pixels_and_ads_are_never_the_image() -> None:
    entries = parse("wapowellness.xml").entries
    assert len(entries) == 29
    for e in entries:
        for url in (e.image, e.thumbnail):
            assert url is None or ("pheedo.com" not in url and "bluekai" not in url and "adsrvr" not in url), url


def test_a_30px_avatar_is_the_thumbnail_not_the_large_image() -> None:
    entries = parse("gulp-atom.atom", "https://github.com/gulpjs/gulp/releases.atom").entries
    assert len(entries) == 10
    for e in entries:
        assert e.image is None
        assert e.thumbnail == "https://avatars3.githubusercontent.com/u/425716?v=3&s=60"
    embed = render_entry(stored(entries[0]), "Release notes from gulp")["embeds"][0]
    assert "image" not in embed
    assert embed["thumbnail"] == {"url": "https://avatars3.githubusercontent.com/u/425716?v=3&s=60"}


def test_media_content_without_a_type_is_used_and_the_widest_wins() -> None:
    entries = parse("guardian.rss").entries
    assert len(entries) == 55
    with_image = [e for e in entries if e.image]
    assert len(with_image) >= 50
    for e in with_image:  # 140 and 460 px renditions are offered: the 460 one is the large image
        assert e.image.startswith("https://i.guim.co.uk/img/media/") and "w=460" in e.image


def test_the_episodes_itunes_image() -> None:
    [e] = parse("feed-itunes.xml").entries
    # the episode's image, not the show's
    assert e.image == "http://static.libsyn.com/p/assets/6/f/b/6/6fb68f57fbe00fb1/JRE1109.jpg"
    entries = parse("giantbomb-podcast-3.rss").entries
    assert [e.image for e in entries] == [
        "https://giantbomb1.cbsistatic.com/uploads/original/0/30/3132120-mspac-marquee-full.jpg?20191008",
        "https://giantbomb1.cbsistatic.com/uploads/original/36/366200/3130741-number1.jpg?20191008",
        "https://giantbomb1.cbsistatic.com/uploads/original/0/30/3128934-screen%20shot%202019-09-17%20at%202.46.36%20pm%20copy.png?20191008",
    ]


def test_a_small_content_image_is_a_thumbnail() -> None:
    [e] = parse("feed-test-hindi-channel-image.xml").entries  # <img ... height='50' width='76'>
    assert e.image is None
    assert e.thumbnail == "https://images.news18.com/ibnkhabar/uploads/2021/01/who-team-1.jpg"


# --- hand-made feeds --------------------------------------------------------------------------------------------


def test_a_1x1_pixel_and_a_share_icon_before_the_picture_are_skipped() -> None:
    html = ('<p><img src="https://stats.example/p.gif" width="1" height="1">'
            '<a href="https://share.example/">'
            '<img src="https://blog.example/icons/facebook.png" alt="Share on Facebook"></a>'
            '<img src="https://blog.example/emoji.png" class="wp-smiley" width="72">'
            '<img src="https://blog.example/avatar.jpg" width="32" height="32">'
            '<img src="https://blog.example/photo.jpg" width="800" height="600"> Text.</p>')
    [e] = parse_feed(rss([{"title": "T", "guid": "g", "link": "https://blog.example/p", "description": html}]), {},
                     "https://blog.example/feed").entries
    assert e.image == "https://blog.example/photo.jpg" and e.thumbnail is None


def test_an_entry_with_only_trackers_has_no_image() -> None:
    html = ('<img src="https://blog.example/a.gif" height="1" width="1">'
            '<img src="https://blog.example/b.gif" style="display:none">'
            '<img src="http://feeds.feedburner.com/~ff/blog?d=x" border="0">')
    [e] = parse_feed(rss([{"title": "T", "guid": "g", "description": html}]), {}, "https://blog.example/").entries
    assert e.image is None and e.thumbnail is None


def test_media_content_comes_before_enclosures_itunes_and_content() -> None:
    raw = ('<media:content url="https://cdn.example/big.jpg" medium="image" width="1200"/>'
           '<enclosure url="https://cdn.example/enc.jpg" type="image/jpeg" length="1"/>'
           '<itunes:image xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" href="https://cdn.example/ep.jpg"/>')
    html = '<img src="https://cdn.example/inline.jpg" width="900">'
    [e] = parse_feed(media_rss([{"title": "T", "guid": "g", "raw": raw, "description": html}]), {}, None).entries
    assert e.image == "https://cdn.example/big.jpg"


def test_non_image_media_and_enclosures_are_not_images() -> None:
    raw = ('<media:content url="https://cdn.example/clip.mp4" type="video/mp4" width="1280"/>'
           '<media:content url="https://cdn.example/trailer.jpg" medium="video"/>'
           '<enclosure url="https://cdn.example/ep.mp3" type="audio/mpeg" length="1"/>'
           '<enclosure url="https://cdn.example/cover.png" length="1"/>')
    [e] = parse_feed(media_rss([{"title": "T", "guid": "g", "raw": raw}]), {}, None).entries
    assert e.image == "https://cdn.example/cover.png"  # an enclosure without a type, by its extension


def test_an_image_declared_narrow_is_a_thumbnail() -> None:
    pick = choose_image([ImageCandidate("https://cdn.example/a.jpg", "media", width=THUMBNAIL_MAX_WIDTH - 1)])
    assert pick == ChosenImage("https://cdn.example/a.jpg", thumbnail=True)
    pick = choose_image([ImageCandidate("https://cdn.example/a.jpg", "media", width=THUMBNAIL_MAX_WIDTH)])
    assert pick == ChosenImage("https://cdn.example/a.jpg", thumbnail=False)
    pick = choose_image([ImageCandidate("https://cdn.example/a.jpg", "content")])  # no size declared: large
    assert pick == ChosenImage("https://cdn.example/a.jpg", thumbnail=False)


def test_icon_sized_content_images_are_skipped_but_small_media_thumbnails_are_not() -> None:
    icon = ImageCandidate("https://cdn.example/i.png", "content", width=ICON_MAX_PX)
    assert choose_image([icon]) is None
    thumb = ImageCandidate("https://cdn.example/i.png", "media", width=ICON_MAX_PX, thumbnail_element=True)
    assert choose_image([thumb]) == ChosenImage("https://cdn.example/i.png", thumbnail=True)


def test_malformed_image_urls_are_made_well_formed_or_skipped() -> None:
    pick = choose_image([ImageCandidate("javascript:alert(1)", "media", mime="image/png"),
                         ImageCandidate("HTTPS://CDN.Example/a b.jpg", "media", mime="image/png")])
    assert pick == ChosenImage("https://cdn.example/a%20b.jpg", thumbnail=False)


def test_known_trackers_and_buttons() -> None:
    for url in ("http://feeds.feedburner.com/~r/blog/~4/abc", "http://feeds.feedburner.com/~ff/blog?d=x",
                "http://images.pheedo.com/images/mm/twitter.png", "http://ads.pheedo.com/img.phdo?s=1",
                "https://pixel.wp.com/b.gif?x", "https://a.fsdn.com/sd/twitter_icon_large.png",
                "https://blog.example/facebook-32x32.png"):
        assert is_tracker(ImageCandidate(url, "content")), url
    for url in ("https://blog.example/uploads/photo.jpg", "https://blog.example/email-newsletter-hero.jpg",
                "https://i.guim.co.uk/img/media/x/master/3000.jpg?w=460"):
        assert not is_tracker(ImageCandidate(url, "content")), url


def test_the_deferred_parse_chooses_the_same_images() -> None:
    for name in ("many-links.rss", "wapowellness.xml", "gulp-atom.atom", "guardian.rss", "feed-itunes.xml",
                 "feed-test-hindi-channel-image.xml"):
        body = (REAL / name).read_bytes()
        whole = parse_feed(body, {}, "https://feeds.example/feed")
        parsed, deferred = parse_feed_deferred(body, {}, "https://feeds.example/feed")
        done = summarise([deferred[e.position] for e in parsed.entries if e.position in deferred])
        it = iter(done)
        completed = [complete_deferred(e, next(it)) if e.position in deferred else e for e in parsed.entries]
        assert [(e.image, e.thumbnail) for e in completed] == [(e.image, e.thumbnail) for e in whole.entries], name


# --- the feed's own image as the fallback thumbnail ----------------------------------------------------------------


def test_the_feeds_image_is_a_thumbnail_only_when_asked_and_only_without_an_image() -> None:
    parsed = parse("feed-test-hindi-channel-image.xml")
    assert parsed.image == "https://static.hindi.news18.com/ibnkhabar/uploads/2017/01/mainlogo_hindi_new.png"
    body = rss([{"title": "No picture", "guid": "g", "description": "Just text."}],
               extra_channel="<image><url>https://blog.example/logo.png</url><title>T</title>"
                             "<link>https://blog.example/</link></image>")
    plain = parse_feed(body, {}, None)
    assert plain.image == "https://blog.example/logo.png"
    entry = stored(plain.entries[0], feed_image=plain.image)
    on = Subscription(id=1, feed_id=1, target="channel:1", feed_image=True)
    off = Subscription(id=1, feed_id=1, target="channel:1", feed_image=False)
    assert render_entry(entry, "T", on)["embeds"][0]["thumbnail"] == {"url": "https://blog.example/logo.png"}
    assert "thumbnail" not in render_entry(entry, "T", off)["embeds"][0]
    assert "thumbnail" not in render_entry(entry, "T", None)["embeds"][0]  # off unless [defaults] says otherwise
    [gulp] = parse("gulp-atom.atom").entries[:1]
    own = render_entry(stored(gulp, feed_image="https://blog.example/logo.png"), "T", on)["embeds"][0]
    assert own["thumbnail"]["url"].startswith("https://avatars3.githubusercontent.com/")  # the entry's own wins


def test_atom_logo_and_json_feed_icon() -> None:
    atom = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>'
            b'<icon>/favicon.ico</icon><logo>/logo.png</logo>'
            b'<entry><title>One</title><id>urn:1</id><updated>2024-05-01T10:00:00Z</updated></entry></feed>')
    assert parse_feed(atom, {}, "https://a.example/feed.atom").image == "https://a.example/logo.png"
    jf = (b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "icon": "https://j.example/icon.png",'
          b' "items": [{"id": "1", "content_text": "Hi."}]}')
    assert parse_feed(jf, {"content-type": "application/feed+json"}, None).image == "https://j.example/icon.png"


# --- the scan is bounded -----------------------------------------------------------------------------------------


def test_the_content_scan_is_bounded() -> None:
    many = "".join(f'<img src="https://cdn.example/{i}.jpg">' for i in range(10_000))
    assert len(content_images(many)) == MAX_CANDIDATES
    filler = "<p>" + "x" * 300_000 + "</p>"  # the scan starts at the first <img and reads max_chars from there
    found = content_images(filler + '<img src="https://cdn.example/a.jpg">' + filler + '<img src="https://cdn.example/b.jpg">',
                           max_chars=1000)
    assert [c.url for c in found] == ["https://cdn.example/a.jpg"]
    started = time.monotonic()
    hostile = "<img " + 'a="' * 50_000 + "<" * 100_000
    content_images(hostile * 3)
    assert time.monotonic() - started < 30  # finished, not hung


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400))
def test_content_images_never_raises(html) -> None:
    for c in content_images("<img " + html) + content_images(html):
        assert c.source == "content" and len(c.alt) <= 256
