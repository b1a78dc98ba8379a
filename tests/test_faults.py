"""Hostile feeds: for every fault, Herald survives, the other feeds are announced on time, the
failing feed shows a clear error, and after recovery its backlog is announced once.

Each scenario runs the real pipeline (fetcher, parser, decider, SQLite storage, delivery
worker) on a simulated clock against tests/hostile.py, with two feeds: a *control* feed that
publishes a new entry before every cycle and must have it announced in that cycle, and the
*victim* that misbehaves. The victim keeps publishing while it is broken; when it recovers,
everything it published must be announced exactly once. Figures go to the fault ledger
(tests/faultkit.py) for docs/RELIABILITY.md.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from aiohttp.abc import AbstractResolver

from bot.app import Herald
from bot.fetch import Fetcher
from bot.models import DEFAULT_SUMMARY_LENGTH
from bot.storage.base import FeedInfo
from tests import hostile
from tests.faultkit import herald_config, record, tally
from tests.support import Clock, RecordingSink
from tests.hostile import HostileServer, server  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser")

CONTROL = "channel:1001"
VICTIM = "channel:2002"
STEP = 660.0  # a little over the 10-minute interval: the control feed is due every step


class PublicDNS(AbstractResolver):
    """feeds.test → 127.0.0.1 (played as a public host); intranet.test → 127.0.0.2 (internal)."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        ip = {"feeds.test": "127.0.0.1", "intranet.test": "127.0.0.2"}[host]
        return [{"hostname": host, "host": ip, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


@dataclass
class Rig:
    """One Herald on a simulated clock with a control feed and a victim feed."""

    server: HostileServer
    herald: Herald
    clock: Clock
    sink: RecordingSink
    control: list[int] = field(default_factory=lambda: [0, 1, 2])
    alerts: list[tuple[str, int | None, str]] = field(default_factory=list)
    victim_path: str = "/victim.xml"

    @classmethod
    async def start(cls, tmp_path, server: HostileServer, *, polling: dict[str, Any] | None = None,
                    victim_backfill: int = 1, guarded_victim: bool = False, victim_path: str = "/victim.xml") -> "Rig":
        clock = Clock()
        sink = RecordingSink()
        feeds = [{"url": server.url("/control.xml"), "name": "control", "channels": [1001], "backfill": 1}]
        if not guarded_victim:
            feeds.append({"url": server.url(victim_path), "name": "victim", "channels": [2002],
                          "backfill": victim_backfill})
        # a generous timeout (the suite shares its machine); the timeout faults set a short one
        config = herald_config(tmp_path, feeds, polling={"timeout": "5s", **(polling or {})})
        herald = Herald(config, sink, clock=clock, parse_inline=True)
        rig = cls(server, herald, clock, sink, victim_path=victim_path)
        if guarded_victim:  # a feed added from Discord: the SSRF guard applies to it
            p = config.polling
            herald.fetcher = herald.poller.fetcher = Fetcher(
                timeout=p.timeout, max_bytes=p.max_bytes, resolver=PublicDNS(), public_addresses=frozenset({"127.0.0.1"}))

        async def alert(kind: str, feed_id: int | None, text: str) -> None:
            rig.alerts.append((kind, feed_id, text))

        herald.alert = alert
        await herald.open()
        if guarded_victim:
            await herald.storage.add_feed(f"http://feeds.test:{server.port}{victim_path}", target=VICTIM, guild_id=1,
                                          name="victim", backfill=victim_backfill, now=clock())
        server.serve("/control.xml", hostile.feed(rig.control, prefix="Ctl"))
        return rig

    async def close(self) -> None:
        await self.herald.close()

    async def info(self, name: str) -> FeedInfo:
        found = await self.herald.storage.find_feed(name)
        assert found is not None, name
        return found

    async def cycle(self, *, publish_control: bool = True) -> None:
        """Publishes a control entry, advances one step, polls what is due and delivers."""
        if publish_control:
            self.control.append(self.control[-1] + 1)  # the document shows the newest five, like most feeds
            self.server.serve("/control.xml", hostile.feed(self.control[-5:], prefix="Ctl"))
        await self.herald.poller.poll_due()
        await self.herald.worker.deliver_due()
        if publish_control:  # the control feed is never late, whatever the victim does
            newest = f"Ctl {self.control[-1]}"
            assert self.sink.announced(CONTROL)[newest] == 1, f"{newest} was not announced on time"

    async def until_victim_polled(self, *, max_steps: int = 60) -> FeedInfo:
        """Steps the clock an interval at a time (a cycle each step) until the victim is polled."""
        before = (await self.info("victim")).last_fetch
        for _ in range(max_steps):
            self.clock.advance(STEP)
            await self.cycle()
            info = await self.info("victim")
            if info.last_fetch != before:
                return info
        raise AssertionError("the victim was not polled again")

    def victim_announced(self):
        return self.sink.announced(VICTIM)

    def control_tally(self) -> tuple[int, int]:
        return tally(self.sink.announced(CONTROL), [f"Ctl {n}" for n in self.control[2:]])


# --- error faults: the feed fails for a while, then recovers ---------------------------------------


@dataclass
class ErrorFault:
    name: str
    apply: Callable[[HostileServer, str, list[int]], None]
    error: str  # expected in list_feeds().last_error while failing
    polls: int = 3
    retry_after: float | None = None  # the next fetch is at least this far away
    pauses: bool = False  # the first failure pauses the feed (410)
    polling: dict[str, Any] = field(default_factory=dict)
    guarded: bool = False


def _nested_json(depth: int = 100_000) -> bytes:
    return b'{"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": ' + b"[" * depth + b"]" * depth + b"}"


ERROR_FAULTS = [
    ErrorFault("HTTP 500", lambda s, p, n: s.error(p, 500), "HTTP 500 Internal Server Error"),
    ErrorFault("HTTP 502", lambda s, p, n: s.error(p, 502), "HTTP 502 Bad Gateway"),
    ErrorFault("HTTP 503 with Retry-After", lambda s, p, n: s.error(p, 503, retry_after=7200),
               "HTTP 503, retry after 7200s", retry_after=7200),
    ErrorFault("HTTP 429 with Retry-After in seconds", lambda s, p, n: s.error(p, 429, retry_after=5400),
               "HTTP 429, retry after 5400s", retry_after=5400),
    ErrorFault("HTTP 429 with Retry-After as a date", lambda s, p, n: s.error(p, 429, retry_after=s.http_date(10800)),
               "HTTP 429, retry after 10", retry_after=10790),
    ErrorFault("HTTP 404", lambda s, p, n: s.error(p, 404), "HTTP 404 Not Found"),
    ErrorFault("HTTP 410 Gone", lambda s, p, n: s.error(p, 410), "HTTP 410 Gone", polls=1, pauses=True),
    ErrorFault("connection hangs before the headers", lambda s, p, n: s.hang(p), "timed out after 1s",
               polling={"timeout": "1s"}),
    ErrorFault("body trickles a byte a second", lambda s, p, n: s.trickle(p, hostile.feed(n), interval=1.0),
               "timed out after 1s", polling={"timeout": "1s"}),
    ErrorFault("endless body", lambda s, p, n: s.infinite(p), "over max_bytes (1000000 bytes)"),
    ErrorFault("body over max_bytes (Content-Length)", lambda s, p, n: s.oversized(p, 8_000_000),
               "response of 8000000 bytes is over max_bytes"),
    ErrorFault("gzip bomb (1 GiB inflated)", lambda s, p, n: s.gzip_bomb(p), "over max_bytes (1000000 bytes)"),
    ErrorFault("HTML page instead of a feed",
               lambda s, p, n: s.serve(p, hostile.html_page(), "text/html; charset=utf-8"), "not a feed"),
    ErrorFault("redirect loop", lambda s, p, n: s.redirect_loop(p, "/elsewhere.xml"), "more than 5 redirects"),
    ErrorFault("entity feedparser raises on (&#1114112;)", lambda s, p, n: s.serve(p, hostile.bad_entity(n)),
               "could not be parsed"),
    ErrorFault("truncated XML", lambda s, p, n: s.serve(p, hostile.truncated(hostile.feed(n), 0.5)), "truncated"),
    ErrorFault("JSON nested 100,000 deep", lambda s, p, n: s.serve(p, _nested_json(), "application/feed+json"),
               "not a feed (the JSON is nested too deeply"),
    ErrorFault("redirect to a private address (feed added from Discord)",
               lambda s, p, n: s.redirect(p, "http://intranet.test/admin"), "refused", guarded=True),
    ErrorFault("redirect to a loopback literal (feed added from Discord)",
               lambda s, p, n: s.redirect(p, "http://127.0.0.1:9/"), "127.0.0.1 is a loopback address", guarded=True),
]


@pytest.mark.parametrize("fault", ERROR_FAULTS, ids=[f.name for f in ERROR_FAULTS])
async def test_error_fault(tmp_path, server, fault: ErrorFault, caplog):
    caplog.set_level(logging.INFO, logger="herald")
    rig = await Rig.start(tmp_path, server, polling=fault.polling, guarded_victim=fault.guarded)
    try:
        numbers = [0, 1, 2]
        server.serve("/victim.xml", hostile.feed(numbers))
        await rig.cycle(publish_control=False)
        assert rig.victim_announced() == {"Post 2": 1}  # backfill 1 on the first fetch
        victim_id = (await rig.info("victim")).id

        runs = 0
        previous_delay = 0.0
        for i in range(fault.polls):
            numbers.append(numbers[-1] + 1)  # the victim publishes while it is broken
            fault.apply(server, "/victim.xml", numbers)
            info = await rig.until_victim_polled()
            runs += 1
            assert info.last_error and fault.error in info.last_error, info.last_error
            assert info.error_count == i + 1
            delay = info.next_fetch - info.last_fetch
            if fault.retry_after is not None:
                assert delay >= fault.retry_after
            else:  # exponential backoff, capped
                assert delay >= previous_delay * 1.5 and delay <= 4 * 3600 * 1.1
            previous_delay = delay
            if fault.pauses:
                assert info.paused and "410" in (info.pause_reason or "")
                [(kind, feed_id, text)] = rig.alerts
                assert feed_id == victim_id and "paused" in text and "`/feed resume`" in text
                assert "herald feeds resume victim" in text
        assert rig.victim_announced() == {"Post 2": 1}  # nothing announced from a broken feed

        # recovery: the feed works again and its backlog is announced once
        server.routes.pop("/elsewhere.xml", None)
        server.serve("/victim.xml", hostile.feed(numbers))
        if fault.pauses:
            await rig.herald.storage.set_paused(victim_id, False)  # what /feed resume does
        info = await rig.until_victim_polled()
        assert info.last_error is None and info.error_count == 0
        expected = [f"Post {n}" for n in numbers[2:]]
        lost, duplicated = tally(rig.victim_announced(), expected)
        assert (lost, duplicated) == (0, 0), rig.victim_announced()
        assert [t for m in rig.sink.to(VICTIM) for t in m.titles] == expected  # oldest first
        if not fault.pauses:  # (a resumed feed starts with a clean slate)
            assert any("recovered after" in r.getMessage() for r in caplog.records if r.name == "herald.poll")
        c_lost, c_dup = rig.control_tally()
        assert (c_lost, c_dup) == (0, 0)
    finally:
        await rig.close()
    record(fault.name, area="feed", runs=runs, lost=lost + c_lost, duplicated=duplicated + c_dup,
           outcome=f"last_error shows '{fault.error}'; backlog announced once after recovery"
           + ("; paused with one notice" if fault.pauses else ""))


# --- content faults: the feed answers, but strangely --------------------------------------------


async def _start_with(rig: Rig, numbers: list[int], **kw: Any) -> None:
    rig.server.serve(rig.victim_path, hostile.feed(numbers, **kw))
    await rig.cycle(publish_control=False)


def _victim_titles(rig: Rig) -> list[str]:
    return [t for m in rig.sink.to(VICTIM) for t in m.titles]


async def test_etag_changes_but_content_does_not(tmp_path, server):
    rig = await Rig.start(tmp_path, server)
    try:
        await _start_with(rig, [0, 1, 2])
        server.changing_etag("/victim.xml", hostile.feed([0, 1, 2]))
        unchanged = 0  # the body hash stops a re-parse: count the polls found unchanged
        for _ in range(4):
            rig.clock.advance(STEP)
            stats = await rig.herald.poller.poll_due()
            await rig.herald.worker.deliver_due()
            unchanged += stats.unchanged
        assert unchanged == 4 and server.arrived("/victim.xml") == 4
        assert _victim_titles(rig) == ["Post 2"]
    finally:
        await rig.close()
    record("ETag changes while the content does not", area="feed", runs=4, lost=0, duplicated=0,
           outcome="body hash unchanged: not parsed again, nothing re-announced")


async def test_server_ignores_conditional_get(tmp_path, server):
    rig = await Rig.start(tmp_path, server)
    try:
        server.ignores_conditional("/victim.xml", hostile.feed([0, 1, 2]))
        await rig.cycle(publish_control=False)
        unchanged = 0
        for _ in range(4):
            rig.clock.advance(STEP)
            stats = await rig.herald.poller.poll_due()
            unchanged += stats.unchanged
        await rig.herald.worker.deliver_due()
        sent = server.last_request_headers("/victim.xml")
        assert sent.get("If-None-Match") == '"fixed"'  # Herald asked; the server answered 200 anyway
        assert server.status_counts("/victim.xml")[200] == 5 and unchanged == 4
        assert _victim_titles(rig) == ["Post 2"]
    finally:
        await rig.close()
    record("server ignores conditional GET", area="feed", runs=4, lost=0, duplicated=0,
           outcome="200 with the same body: recognised by its hash, nothing re-announced")


async def test_every_guid_changes_at_once(tmp_path, server):
    rig = await Rig.start(tmp_path, server)
    try:
        await _start_with(rig, [0, 1, 2])
        # a new site generator: every GUID changes (and the links move to https with www.), one new post
        server.serve("/victim.xml", hostile.feed([0, 1, 2, 3], guid="urn:new:{n}", link="https://www.blog.example/posts/{n}"))
        await rig.until_victim_polled()
        server.serve("/victim.xml", hostile.feed([0, 1, 2, 3, 4], guid="urn:new:{n}",
                                                  link="https://www.blog.example/posts/{n}"))
        await rig.until_victim_polled()
        titles = _victim_titles(rig)
        lost, duplicated = tally(rig.victim_announced(), ["Post 2", "Post 3", "Post 4"])
        assert titles == ["Post 2", "Post 3", "Post 4"] and (lost, duplicated) == (0, 0)
    finally:
        await rig.close()
    record("every GUID changed at once", area="feed", runs=2, lost=lost, duplicated=duplicated,
           outcome="matched by normalised link: only the genuinely new posts announced")


async def test_entries_reordered_removed_and_re_added(tmp_path, server):
    rig = await Rig.start(tmp_path, server)
    try:
        await _start_with(rig, [0, 1, 2, 3, 4])
        documents = [
            hostile.rss(list(reversed(hostile.items([0, 1, 2, 3, 4])))),  # oldest first
            hostile.feed([3, 4]),  # 0-2 dropped out
            hostile.feed([0, 1, 2, 3, 4, 5]),  # and came back, with one new
            hostile.rss(hostile.items([5, 1, 4, 0, 3, 2])),  # shuffled
        ]
        for doc in documents:
            server.serve("/victim.xml", doc)
            await rig.until_victim_polled()
        lost, duplicated = tally(rig.victim_announced(), ["Post 4", "Post 5"])
        assert _victim_titles(rig) == ["Post 4", "Post 5"] and (lost, duplicated) == (0, 0)
    finally:
        await rig.close()
    record("entries reordered, removed and re-added", area="feed", runs=len(documents), lost=lost,
           duplicated=duplicated, outcome="stored entries are never announced again")


async def test_future_dated_and_undated_entries(tmp_path, server):
    rig = await Rig.start(tmp_path, server)
    try:
        await _start_with(rig, [0, 1, 2])
        its = hostile.items([0, 1, 2])
        future = {"title": "From the future", "link": "https://blog.example/future", "guid": "future",
                  "date": rig.clock() + 30 * 86400, "description": "<p>dated next month</p>"}
        undated = {"title": "No date at all", "link": "https://blog.example/undated", "guid": "undated",
                   "description": "<p>no pubDate</p>"}
        server.serve("/victim.xml", hostile.rss([future, undated, *its]))
        await rig.until_victim_polled()
        for _ in range(3):  # polled again and again: neither is announced twice
            await rig.until_victim_polled()
        announced = rig.victim_announced()
        lost, duplicated = tally(announced, ["Post 2", "From the future", "No date at all"])
        assert (lost, duplicated) == (0, 0), announced
        by_title = {m.titles[0]: m.payload["embeds"][0] for m in rig.sink.to(VICTIM)}
        seen_at = by_title["From the future"]["timestamp"]
        assert seen_at == by_title["No date at all"]["timestamp"]  # both shown at the time Herald first saw them
    finally:
        await rig.close()
    record("future-dated and undated entries", area="feed", runs=4, lost=lost, duplicated=duplicated,
           outcome="announced once, stamped with the time first seen")


ENCODING_CASES = {
    "byte-order mark": lambda n: hostile.with_bom(hostile.feed(n)),
    "whitespace before <?xml": lambda n: hostile.with_leading_whitespace(hostile.feed(n)),
    "Latin-1 body declared UTF-8": lambda n: hostile.latin1_declared_utf8(n),
    "no charset declared anywhere": lambda n: hostile.without_charset_declaration(n),
}


@pytest.mark.parametrize("case", list(ENCODING_CASES), ids=list(ENCODING_CASES))
async def test_odd_encodings_are_read(tmp_path, server, case):
    make = ENCODING_CASES[case]
    ctype = "application/rss+xml" if case != "Latin-1 body declared UTF-8" else "application/rss+xml; charset=utf-8"
    rig = await Rig.start(tmp_path, server)
    try:
        server.serve("/victim.xml", make([0, 1, 2]), ctype)
        await rig.cycle(publish_control=False)
        server.serve("/victim.xml", make([0, 1, 2, 3, 4]), ctype)
        info = await rig.until_victim_polled()
        assert info.last_error is None
        titles = _victim_titles(rig)
        assert len(titles) == 3 and len(set(titles)) == 3, titles
        assert all(t.split()[-1] in "234" for t in titles)
        if "Latin-1" in case:
            assert titles[0] == "Café 2"  # decoded, not mojibake
        if "no charset" in case:
            assert titles[0] == "Naïve 2"
    finally:
        await rig.close()
    record(f"odd encoding: {case}", area="feed", runs=2, lost=0, duplicated=0, outcome="parsed; titles decoded")


async def test_truncated_document_never_stores_half_an_entry(tmp_path, server):
    """Cut inside the newest item, before its GUID and link: stored, that half entry (keyed by a
    hash of its half title) would be announced now, and again in full once the feed is whole."""
    rig = await Rig.start(tmp_path, server)
    try:
        await _start_with(rig, [0, 1, 2])
        whole = hostile.feed([0, 1, 2, 3])
        cut = whole[: whole.index(b"<link>https://blog.example/posts/3/")]
        server.serve("/victim.xml", cut)
        info = await rig.until_victim_polled()
        assert "truncated" in (info.last_error or "") and info.entries == 3
        server.serve("/victim.xml", whole)
        await rig.until_victim_polled()
        assert _victim_titles(rig) == ["Post 2", "Post 3"]
    finally:
        await rig.close()


async def test_ten_thousand_entries_in_one_poll(tmp_path, server):
    rig = await Rig.start(tmp_path, server, polling={"max_bytes": "5MB", "timeout": "10s"})
    try:
        await _start_with(rig, [0, 1, 2])
        server.serve("/victim.xml", hostile.many_entries(10_000))
        info = await rig.until_victim_polled()
        assert info.last_error is None, info.last_error  # a poll that failed (e.g. timed out) says why
        msgs = rig.sink.to(VICTIM)
        assert len(msgs) == 1 + 1 + 10  # the backfilled post, one digest, the ten newest
        digest = msgs[1]
        assert digest.kind == "digest" and len(digest.keys) == 10_000 - 3 - 10
        assert digest.payload["embeds"][0]["title"].startswith(f"and {10_000 - 13} more from")
        lost, duplicated = tally(rig.victim_announced(), [f"Post {n}" for n in range(2, 10_000)])
        assert (lost, duplicated) == (0, 0)
        assert (await rig.info("victim")).entries == 10_000
    finally:
        await rig.close()
    record("10,000 entries in one poll", area="feed", runs=1, lost=lost, duplicated=duplicated,
           outcome="stored; ten announced, the other 9,987 in one digest message")


async def test_five_megabyte_entries(tmp_path, server):
    rig = await Rig.start(tmp_path, server, polling={"max_bytes": "12MB", "timeout": "10s"})
    try:
        await _start_with(rig, [0, 1, 2])
        server.serve("/victim.xml", hostile.huge_entries([3, 4], size=5_000_000))
        await rig.until_victim_polled()
        msgs = rig.sink.to(VICTIM)[1:]
        assert [m.titles[0] for m in msgs] == ["Post 3", "Post 4"]
        for m in msgs:
            embed = m.payload["embeds"][0]
            assert DEFAULT_SUMMARY_LENGTH // 2 < len(embed["description"]) <= DEFAULT_SUMMARY_LENGTH
        lost, duplicated = tally(rig.victim_announced(), ["Post 2", "Post 3", "Post 4"])
        assert (lost, duplicated) == (0, 0)
    finally:
        await rig.close()
    record("5 MB entries", area="feed", runs=1, lost=lost, duplicated=duplicated,
           outcome="stored with capped summaries; embeds within Discord's limits")


async def test_burst_over_max_per_poll_is_one_digest(tmp_path, server):
    rig = await Rig.start(tmp_path, server)
    try:
        await _start_with(rig, [0, 1, 2])
        server.serve("/victim.xml", hostile.feed(range(503)))  # 500 new at once
        await rig.until_victim_polled()
        msgs = rig.sink.to(VICTIM)[1:]
        assert len(msgs) == 11, len(msgs)
        digest, singles = msgs[0], msgs[1:]
        assert digest.kind == "digest" and all(m.kind == "entry" for m in singles)
        assert [m.titles[0] for m in singles] == [f"Post {n}" for n in range(493, 503)]
        embed = digest.payload["embeds"][0]
        assert embed["title"] == "and 490 more from Hostile test feed"
        lines = embed["description"].split("\n")
        assert lines[0] == "- [Post 3](https://blog.example/posts/3/)"
        assert lines[-1].startswith("… and ") and lines[-1].endswith(" more")
        assert len(embed["description"]) <= 4096
        lost, duplicated = tally(rig.victim_announced(), [f"Post {n}" for n in range(2, 503)])
        assert (lost, duplicated) == (0, 0)
    finally:
        await rig.close()
    record("burst: 500 new entries in one poll", area="feed", runs=1, lost=lost, duplicated=duplicated,
           outcome="10 messages and one digest ('and 490 more …' with links), not 500 messages")


@pytest.mark.parametrize("status", [301, 308])
async def test_permanent_redirect_of_a_config_feed_keeps_its_identity(tmp_path, server, status, caplog):
    """A config feed's URL is its identity in the config file: Herald follows the redirect, warns
    once, and a restart neither creates a second feed nor re-announces anything."""
    caplog.set_level(logging.WARNING, logger="herald.poll")
    rig = await Rig.start(tmp_path, server, victim_backfill=2)
    old = server.url("/victim.xml")
    try:
        await _start_with(rig, [0, 1, 2])
        server.redirect("/victim.xml", "/moved.xml", status)
        server.serve("/moved.xml", hostile.feed([0, 1, 2, 3]))
        for _ in range(3):
            info = await rig.until_victim_polled()
        assert info.url == old and info.last_error is None
        moved = [r for r in caplog.records if "moved permanently" in r.getMessage()]
        assert len(moved) == 1 and "update its url in the config file" in moved[0].getMessage()
    finally:
        await rig.close()
    # a restart on the same database with the same config
    rig2 = await Rig.start(tmp_path, server, victim_backfill=2)
    rig2.sink = rig.sink
    rig2.herald.worker.sink = rig.sink
    try:
        rig2.clock.set(rig.clock() + 3600)
        await rig2.cycle(publish_control=False)
        feeds = await rig2.herald.storage.list_feeds()
        assert sorted(f.url for f in feeds) == sorted([old, server.url("/control.xml")])
        lost, duplicated = tally(rig.sink.announced(VICTIM), ["Post 1", "Post 2", "Post 3"])
        assert (lost, duplicated) == (0, 0), rig.sink.announced(VICTIM)
    finally:
        await rig2.close()
    record(f"HTTP {status} permanent redirect (config feed)", area="feed", runs=4, lost=lost, duplicated=duplicated,
           outcome="redirect followed, config URL kept as identity, one warning to update the config")


@pytest.mark.parametrize("status", [301, 308])
async def test_permanent_redirect_of_a_discord_feed_records_the_new_url(tmp_path, server, status):
    rig = await Rig.start(tmp_path, server, guarded_victim=True)
    try:
        server.serve("/victim.xml", hostile.feed([0, 1, 2]))
        await rig.cycle(publish_control=False)
        server.redirect("/victim.xml", "/moved.xml", status)
        server.serve("/moved.xml", hostile.feed([0, 1, 2, 3]))
        info = await rig.until_victim_polled()
        assert info.url == f"http://feeds.test:{server.port}/moved.xml"
        old_requests = server.arrived("/victim.xml")
        server.serve("/moved.xml", hostile.feed([0, 1, 2, 3, 4]))
        await rig.until_victim_polled()
        assert server.arrived("/victim.xml") == old_requests  # the new URL is used directly
        lost, duplicated = tally(rig.victim_announced(), ["Post 2", "Post 3", "Post 4"])
        assert (lost, duplicated) == (0, 0)
    finally:
        await rig.close()
    record(f"HTTP {status} permanent redirect (feed added from Discord)", area="feed", runs=2, lost=lost,
           duplicated=duplicated, outcome="new URL recorded and used")
