"""The whole pipeline against a local feed server and a real SQLite file:
fetch → parse → decide → store → render → deliver, through :class:`bot.app.Herald`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.app import Herald
from bot.config import Config
from bot.deliver import nonce_for
from bot.errors import TransientDeliveryError
from tests.feedserver import FeedServer, numbered_items, rss
from tests.support import START, Clock, RecordingSink, make_config

CHANNEL = 111111111111111111
OTHER_CHANNEL = 222222222222222222


def pipeline_config(tmp_path: Path, feeds: list[dict[str, Any]], **polling: Any) -> Config:
    """:func:`tests.support.make_config` with every feed announcing into CHANNEL unless it says otherwise."""
    return make_config(tmp_path, feeds, channels=[CHANNEL], polling=polling)


class ParseSpy:
    """Counts calls of the parser, wrapping the real one."""

    def __init__(self, herald: Herald) -> None:
        self.calls: list[str] = []
        self._parse = herald.parser.parse
        herald.parser.parse = self  # type: ignore[method-assign]

    async def __call__(self, body: bytes, headers: dict[str, str], url: str):
        self.calls.append(url)
        return await self._parse(body, headers, url)


async def open_herald(config: Config, sink: RecordingSink, clock: Clock | None = None, **kw: Any) -> Herald:
    herald = Herald(config, sink, clock=clock or Clock(), parse_inline=kw.pop("parse_inline", True), **kw)
    await herald.open()
    return herald


CYCLE_TIMEOUT = 30.0  # one cycle takes well under a second; a hang fails the test instead of the run


async def once(herald: Herald):
    """One poll-and-deliver cycle, bounded in time."""
    return await asyncio.wait_for(herald.run_once(), CYCLE_TIMEOUT)


async def feed_info(herald: Herald, url: str):
    for f in await herald.storage.list_feeds():
        if f.url == url:
            return f
    raise AssertionError(f"no feed {url}")


# --- conditional GET and unchanged bodies ----------------------------------------------------------


async def test_conditional_get_with_etag_is_answered_304_and_not_parsed(tmp_path, feed_server: FeedServer) -> None:
    route = feed_server.set("/feed.xml", rss(numbered_items(range(1, 4))), etag="auto")
    sink = RecordingSink()
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml")}]), sink)
    spy = ParseSpy(herald)
    try:
        stats, sent = await once(herald)
        assert (stats.polled, stats.parsed, stats.not_modified, stats.stored) == (1, 1, 0, 3)
        stats, sent = await once(herald)
        assert (stats.polled, stats.parsed, stats.not_modified, stats.stored) == (1, 0, 1, 0)
    finally:
        await herald.close()
    assert feed_server.status_counts("/feed.xml") == {200: 1, 304: 1}
    assert feed_server.last_request_headers("/feed.xml").get("If-None-Match") == route.etag
    assert len(spy.calls) == 1
    assert sink.messages == []  # backfill 0


async def test_conditional_get_with_last_modified(tmp_path, feed_server: FeedServer) -> None:
    route = feed_server.set("/feed.xml", rss(numbered_items([1])), etag=None, last_modified="auto")
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml")}]), RecordingSink())
    try:
        await once(herald)
        stats, _ = await once(herald)
    finally:
        await herald.close()
    assert stats.not_modified == 1 and stats.parsed == 0
    assert feed_server.status_counts("/feed.xml") == {200: 1, 304: 1}
    assert feed_server.last_request_headers("/feed.xml").get("If-Modified-Since") == route.last_modified


async def test_identical_body_without_conditional_get_is_not_parsed_again(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 4))), etag="auto", honour_conditional=False)
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml")}]), RecordingSink())
    spy = ParseSpy(herald)
    try:
        await once(herald)
        stats, _ = await once(herald)
        stats3, _ = await once(herald)
    finally:
        await herald.close()
    assert feed_server.status_counts("/feed.xml") == {200: 3}
    assert (stats.unchanged, stats.parsed, stats.not_modified) == (1, 0, 0)
    assert stats3.unchanged == 1
    assert len(spy.calls) == 1


# --- what gets announced ----------------------------------------------------------------------------


async def test_a_new_item_is_announced_exactly_once(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 4))))
    sink = RecordingSink()
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml")}]), sink)
    try:
        await once(herald)
        assert sink.messages == []
        feed_server.set("/feed.xml", rss(numbered_items(range(1, 5))))
        stats, sent = await once(herald)
        assert sent == 1 and stats.stored == 1
        assert sink.titles == ["Post 4"]
        [message] = sink.messages
        assert message.target == f"channel:{CHANNEL}" and message.kind == "entry"
        embed = message.payload["embeds"][0]
        assert embed["title"] == "Post 4" and embed["url"] == "https://blog.example/posts/4/"
        assert embed["description"] == "Body of post 4."  # the summary of a new entry in a known feed
        assert message.payload["allowed_mentions"] == {"parse": []}
        assert message.nonce == nonce_for(message.target, "entry", (4,))
        await once(herald)
        await once(herald)
        stored = await herald.storage.recent(guild_id=None, feed_id=None, limit=10)
    finally:
        await herald.close()
    assert sink.titles == ["Post 4"]
    assert sorted((e.title, e.summary) for e in stored) == [(f"Post {n}", f"Body of post {n}.") for n in range(1, 5)]


async def test_backfill_0_and_3(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/zero.xml", rss(numbered_items(range(1, 6)), title="Zero"))
    feed_server.set("/three.xml", rss(numbered_items(range(1, 6)), title="Three"))
    config = pipeline_config(tmp_path, [
        {"url": feed_server.url("/zero.xml"), "backfill": 0},
        {"url": feed_server.url("/three.xml"), "backfill": 3, "channels": [OTHER_CHANNEL]},
    ])
    sink = RecordingSink()
    herald = await open_herald(config, sink)
    try:
        stats, sent = await once(herald)
        zero = await feed_info(herald, feed_server.url("/zero.xml"))
    finally:
        await herald.close()
    assert stats.stored == 10 and sent == 3
    assert [s.target for s in sink.messages] == [f"channel:{OTHER_CHANNEL}"] * 3
    assert sink.titles == ["Post 3", "Post 4", "Post 5"]  # the newest three, oldest first
    assert all(s.payload["embeds"][0]["footer"]["text"] == "Three" for s in sink.messages)
    assert zero.entries == 5 and zero.pending == 0


async def test_more_than_max_per_poll_goes_to_one_digest(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/feed.xml", rss(numbered_items([1])))
    sink = RecordingSink()
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "max_per_poll": 10}])
    herald = await open_herald(config, sink)
    try:
        await once(herald)
        feed_server.set("/feed.xml", rss(numbered_items(range(1, 17))))
        _, sent = await once(herald)
    finally:
        await herald.close()
    assert sent == 11
    digest, *singles = sink.messages
    assert digest.kind == "digest" and list(digest.titles) == [f"Post {n}" for n in range(2, 7)]
    assert "and 5 more" in digest.payload["embeds"][0]["title"]
    assert [s.titles[0] for s in singles] == [f"Post {n}" for n in range(7, 17)]


async def test_guidless_entries_do_not_flood(tmp_path, feed_server: FeedServer) -> None:
    link_only = numbered_items(range(1, 4), guid=False)
    no_link = [{"title": f"Note {n}", "description": f"<p>note {n}</p>", "date": START - 1000 * n} for n in (1, 2)]
    feed_server.set("/links.xml", rss(link_only, title="Links"))
    feed_server.set("/notes.xml", rss(no_link, title="Notes"))
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/links.xml")}, {"url": feed_server.url("/notes.xml")}])
    sink = RecordingSink()
    herald = await open_herald(config, sink)
    try:
        await once(herald)
        # the documents change (feed title), every entry stays: parsed again, nothing announced
        feed_server.set("/links.xml", rss(link_only, title="Links, renamed"))
        feed_server.set("/notes.xml", rss(no_link, title="Notes, renamed"))
        stats, sent = await once(herald)
        assert stats.parsed == 2 and stats.stored == 0 and sent == 0
        # one genuinely new entry in each
        feed_server.set("/links.xml", rss(numbered_items(range(1, 5), guid=False), title="Links"))
        new_note = {"title": "Note 0", "description": "<p>note 0</p>", "date": START - 10}
        feed_server.set("/notes.xml", rss([new_note, *no_link], title="Notes"))
        _, sent = await once(herald)
    finally:
        await herald.close()
    assert sent == 2 and sorted(sink.titles) == ["Note 0", "Post 4"]


async def test_podcast_episodes_sharing_one_link_are_each_announced(tmp_path, feed_server: FeedServer) -> None:
    def episodes(numbers):
        return [{"title": f"Episode {n}", "link": "https://podcast.example/", "guid": f"ep-{n}",
                 "date": 1_700_000_000.0 + n * 86400} for n in sorted(numbers, reverse=True)]

    feed_server.set("/feed.xml", rss(episodes(range(1, 4))))
    sink = RecordingSink()
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "backfill": 1}]), sink)
    try:
        stats, _ = await once(herald)
        assert stats.stored == 3 and sink.titles == ["Episode 3"]
        feed_server.set("/feed.xml", rss(episodes(range(1, 5))))
        stats, sent = await once(herald)
    finally:
        await herald.close()
    assert stats.stored == 1 and sent == 1 and sink.titles == ["Episode 3", "Episode 4"]


async def test_every_guid_changing_at_once_announces_nothing(tmp_path, feed_server: FeedServer) -> None:
    old = numbered_items(range(1, 6), base="http://blog.example/posts/")
    feed_server.set("/feed.xml", rss(old))
    sink = RecordingSink()
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "backfill": 1}]), sink)
    try:
        await once(herald)
        assert sink.titles == ["Post 5"]
        # a new generator: https links, GUIDs are now the permalinks
        new = [dict(it, link=it["link"].replace("http://", "https://www."), guid=it["link"].replace("http:", "https:"),
                    guid_permalink=True) for it in numbered_items(range(1, 6), base="http://blog.example/posts/")]
        feed_server.set("/feed.xml", rss(new))
        stats, sent = await once(herald)
        assert stats.parsed == 1 and stats.stored == 0 and sent == 0
        info = await feed_info(herald, feed_server.url("/feed.xml"))
        assert info.entries == 5
        # the new keys stick: the same document again is nothing new either
        feed_server.set("/feed.xml", rss(new, title="Renamed"))
        stats, sent = await once(herald)
        assert stats.stored == 0 and sent == 0
        # and a real new post is still announced
        newest = {"title": "Post 6", "link": "https://www.blog.example/posts/6/", "guid": "https://blog.example/posts/6/",
                  "date": 1_700_000_000.0 + 6 * 86400}
        feed_server.set("/feed.xml", rss([newest, *new]))
        _, sent = await once(herald)
    finally:
        await herald.close()
    assert sent == 1 and sink.titles == ["Post 5", "Post 6"]


async def test_an_entry_dropping_out_and_coming_back_is_not_announced_again(tmp_path, feed_server) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 6))))
    sink = RecordingSink()
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "backfill": 5}]), sink)
    try:
        await once(herald)
        assert len(sink.messages) == 5
        feed_server.set("/feed.xml", rss(numbered_items(range(2, 6))))
        await once(herald)
        feed_server.set("/feed.xml", rss(numbered_items(range(1, 6))))
        stats, sent = await once(herald)
    finally:
        await herald.close()
    assert stats.parsed == 1 and sent == 0 and len(sink.messages) == 5


# --- restarts: nothing repeated, nothing lost ----------------------------------------------------------


async def test_restart_repeats_nothing(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 4))), honour_conditional=False)
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "backfill": 2}])
    first = RecordingSink()
    herald = await open_herald(config, first)
    try:
        await once(herald)
    finally:
        await herald.close()
    assert first.titles == ["Post 2", "Post 3"]

    second = RecordingSink()
    herald = await open_herald(config, second, Clock(START + 3600))
    try:
        stats, sent = await once(herald)
        assert stats.unchanged == 1 and sent == 0  # the body hash survived the restart
        feed_server.set("/feed.xml", rss(numbered_items(range(1, 4)), title="Changed title"))
        stats, sent = await once(herald)
        assert stats.parsed == 1 and stats.stored == 0 and sent == 0
    finally:
        await herald.close()
    assert second.messages == []


async def test_a_delivery_that_failed_before_a_restart_is_delivered_after_it(tmp_path, feed_server) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 4))))
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml")}])
    herald = await open_herald(config, RecordingSink())
    try:
        await once(herald)
    finally:
        await herald.close()

    feed_server.set("/feed.xml", rss(numbered_items(range(1, 5))))
    failing = RecordingSink(fail=TransientDeliveryError("Discord is down", retry_after=30))
    herald = await open_herald(config, failing, Clock(START + 10))
    try:
        _, sent = await once(herald)
        counts = await herald.storage.delivery_counts()
    finally:
        await herald.close()
    assert sent == 0 and failing.attempts == 1 and counts["pending"] == 1

    working = RecordingSink()
    herald = await open_herald(config, working, Clock(START + 3600))
    try:
        _, sent = await once(herald)
        counts = await herald.storage.delivery_counts()
    finally:
        await herald.close()
    assert sent == 1 and working.titles == ["Post 4"]
    assert counts["pending"] == 0 and counts["sent"] == 1


async def test_a_delivery_in_flight_when_herald_died_is_sent_after_the_restart(tmp_path, feed_server) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 3))))
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "backfill": 1}])
    herald = await open_herald(config, RecordingSink())
    try:
        await asyncio.wait_for(herald.poller.poll_due(everything=True), CYCLE_TIMEOUT)
        # a send started (the row is leased) and the process died before recording it
        claimed = await herald.storage.claim_delivery(f"channel:{CHANNEL}", START, 120.0)
        assert claimed is not None and [e.title for e in claimed.entries] == ["Post 2"]
    finally:
        await herald.close()

    sink = RecordingSink()
    herald = await open_herald(config, sink, Clock(START + 600))  # after the lease ran out
    try:
        _, sent = await once(herald)
        _, again = await once(herald)
    finally:
        await herald.close()
    assert sent == 1 and again == 0 and sink.titles == ["Post 2"]
    # the resend carries the same nonce, so Discord drops it if the first send did arrive
    assert sink.messages[0].nonce == nonce_for(f"channel:{CHANNEL}", "entry", claimed.delivery.entry_ids)


# --- failures ------------------------------------------------------------------------------------------------


async def test_a_failing_feed_is_recorded_while_another_carries_on(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set_status("/broken.xml", 500)
    feed_server.set("/fine.xml", rss(numbered_items(range(1, 3))))
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/broken.xml")},
                                    {"url": feed_server.url("/fine.xml"), "backfill": 1}])
    sink = RecordingSink()
    herald = await open_herald(config, sink)
    try:
        stats, sent = await once(herald)
        broken = await feed_info(herald, feed_server.url("/broken.xml"))
        fine = await feed_info(herald, feed_server.url("/fine.xml"))
        # it is retried on the next cycle, and recovers
        feed_server.set("/broken.xml", rss(numbered_items([1])))
        await once(herald)
        recovered = await feed_info(herald, feed_server.url("/broken.xml"))
    finally:
        await herald.close()
    assert stats.errors == 1 and stats.polled == 2 and sent == 1 and sink.titles == ["Post 2"]
    assert broken.last_error and "500" in broken.last_error and broken.error_count == 1 and not broken.paused
    assert fine.last_error is None and fine.error_count == 0 and fine.entries == 2
    assert recovered.last_error is None and recovered.error_count == 0 and recovered.entries == 1


async def test_a_feed_that_is_not_a_feed_is_an_error(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/page.html", b"<html><body><p>Not a feed</p></body></html>", "text/html")
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/page.html")}]), RecordingSink())
    try:
        stats, _ = await once(herald)
        info = await feed_info(herald, feed_server.url("/page.html"))
    finally:
        await herald.close()
    assert stats.errors == 1 and info.last_error and "not a feed" in info.last_error


async def test_410_gone_pauses_the_feed(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set_status("/gone.xml", 410)
    feed_server.set("/fine.xml", rss(numbered_items([1])))
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/gone.xml")}, {"url": feed_server.url("/fine.xml")}])
    herald = await open_herald(config, RecordingSink())
    try:
        await once(herald)
        info = await feed_info(herald, feed_server.url("/gone.xml"))
        stats, _ = await once(herald)
    finally:
        await herald.close()
    assert info.paused and info.pause_reason and "410" in info.pause_reason
    assert feed_server.requests("/gone.xml") == 1  # not polled again while paused
    assert stats.polled == 1


# --- the real process pool and the long-running loop ------------------------------------------------------


async def test_the_seed_feed_through_the_real_process_pool(tmp_path, feed_server: FeedServer, seed_bytes) -> None:
    feed_server.set("/feed.xml", seed_bytes, "application/rss+xml")
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "backfill": 10}], parse_workers=1)
    sink = RecordingSink()
    herald = await open_herald(config, sink, parse_inline=False)
    try:
        assert not herald.parser.inline
        stats, sent = await once(herald)
    finally:
        await herald.close()
    assert stats.parsed == 1 and sent == 10
    from tests.test_parse import SEED_POSTS

    assert sink.titles == [t for t, _, _ in reversed(SEED_POSTS)]
    assert [s.payload["embeds"][0]["url"] for s in sink.messages] == [link for _, link, _ in reversed(SEED_POSTS)]


async def test_run_polls_and_delivers_until_stopped(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 4))))
    sink = RecordingSink()
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "backfill": 2}]), sink)
    stop = asyncio.Event()
    task = asyncio.create_task(herald.run(stop))
    try:
        await sink.wait_until(lambda: len(sink.messages) >= 2, 15)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await herald.close()
    assert sink.titles == ["Post 2", "Post 3"]
    assert feed_server.requests("/feed.xml") >= 1


@pytest.mark.parametrize("status", [404, 429, 503])
async def test_http_errors_are_recorded_with_their_status(tmp_path, feed_server: FeedServer, status) -> None:
    feed_server.set_status("/feed.xml", status, headers={"Retry-After": "120"} if status != 404 else None)
    herald = await open_herald(pipeline_config(tmp_path, [{"url": feed_server.url("/feed.xml")}]), RecordingSink())
    try:
        stats, _ = await once(herald)
        info = await feed_info(herald, feed_server.url("/feed.xml"))
    finally:
        await herald.close()
    assert stats.errors == 1 and str(status) in (info.last_error or "") and not info.paused
    if status != 404:
        assert info.next_fetch is not None and info.next_fetch >= START + 120
