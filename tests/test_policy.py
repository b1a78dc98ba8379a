"""The poller's rules (bot.policy), tested directly; the poller asking them (one parse per poll,
a summary that fails to convert kept as plain text); log fields bound once per feed and target."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bot.parse
from bot import policy
from bot.config import PollingConfig
from bot.errors import FeedGone, FetchError, ParseError, PermanentDeliveryError
from bot.escape import plain
from bot.fetch import FetchResult
from bot.logs import ContextFilter, bound_fields, get_logger, log_fields, setup_logging
from bot.models import Decision, FeedState, Known, ParsedEntry, ParsedFeed, Policy
from bot.parse import MAX_SUMMARY_CHARS, plain_summary
from bot.schedule import JITTER, MIN_RETRY
from bot.storage.base import PollOutcome
from tests.feedserver import FeedServer, numbered_items, rss
from tests.support import Clock, RecordingSink
from tests.test_pipeline import CHANNEL, once, open_herald
from tests.test_pipeline import pipeline_config as make_config

NOW = 1_800_000_000.0
RULES = PollingConfig(interval=600.0, pause_after=86400.0, max_backoff=4 * 3600.0, max_per_poll=10)
URL = "https://blog.example/feed.xml"


def feed(**kw: Any) -> FeedState:
    return FeedState(**{"id": 7, "url": URL, "name": "blog", **kw})


def fetched(status: int = 200, body: bytes = b"<rss></rss>", **kw: Any) -> FetchResult:
    return FetchResult(status=status, url=URL, body=body, **kw)


def entry(position: int, summary: str = "") -> ParsedEntry:
    return ParsedEntry(key=f"id:{position}", link_key=f"blog.example/{position}", title=f"Post {position}",
                       link=f"https://blog.example/{position}", summary=summary, position=position)


def within_interval(nxt: float, now: float, interval: float) -> bool:
    return now + interval * (1 - JITTER) <= nxt <= now + interval * (1 + JITTER)


# --- moved ------------------------------------------------------------------------------------------


def test_a_permanent_redirect_moves_a_feed_added_from_discord() -> None:
    moved = policy.on_moved(feed(), "https://new.example/feed.xml", in_config=False, warned=False)
    assert moved == policy.Moved(new_url="https://new.example/feed.xml", warn=None)


def test_a_config_feed_keeps_its_url_and_warns_once() -> None:
    first = policy.on_moved(feed(), "https://new.example/feed.xml", in_config=True, warned=False)
    later = policy.on_moved(feed(), "https://new.example/feed.xml", in_config=True, warned=True)
    assert first == policy.Moved(new_url=None, warn="https://new.example/feed.xml")
    assert later == policy.Moved()


@pytest.mark.parametrize("permanent", [None, "", URL])
def test_no_permanent_redirect_or_the_same_url_moves_nothing(permanent: str | None) -> None:
    for in_config in (False, True):
        assert policy.on_moved(feed(), permanent, in_config=in_config, warned=False) == policy.Moved()


# --- 304, unchanged -----------------------------------------------------------------------------------


def test_a_304_ends_the_poll_with_the_moved_url() -> None:
    out = policy.on_fetched(feed(last_success=NOW - 600), fetched(304, b""), NOW, RULES, "https://new.example/")
    assert out is not None and out.status == "not_modified" and out.http_status == 304
    assert out.new_url == "https://new.example/" and out.feed_id == 7 and out.now == NOW
    assert within_interval(out.next_fetch, NOW, RULES.interval)


def test_the_same_body_as_last_time_is_not_parsed_again() -> None:
    result = fetched(etag='"v2"', last_modified="Tue, 01 Dec 2026 00:00:00 GMT")
    state = feed(body_hash=result.body_hash, last_success=NOW - 600, interval=60.0)
    out = policy.on_fetched(state, result, NOW, RULES)
    assert out is not None and out.status == "unchanged" and out.http_status == 200
    assert out.etag == '"v2"' and out.last_modified == "Tue, 01 Dec 2026 00:00:00 GMT"
    assert within_interval(out.next_fetch, NOW, 60.0)  # the feed's own interval


def test_a_changed_body_or_a_feed_never_polled_successfully_is_parsed() -> None:
    result = fetched()
    assert policy.on_fetched(feed(body_hash="other", last_success=NOW), result, NOW, RULES) is None
    assert policy.on_fetched(feed(body_hash=result.body_hash, last_success=None), result, NOW, RULES) is None


# --- parsed -----------------------------------------------------------------------------------------


def test_summaries_are_deferred_on_every_poll_but_the_first() -> None:
    assert policy.defer_summaries(feed(last_success=NOW)) is True
    assert policy.defer_summaries(feed(last_success=None)) is False


def parsed_feed(warning: str | None = "malformed", version: str | None = "rss20") -> ParsedFeed:
    return ParsedFeed(title="t", link=None, entries=(), warning=warning, version=version)


@pytest.mark.parametrize("body", [
    b"<rss><channel><item><title>Half a ti",
    b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><title>x</title>",
    b"<rss></channel>" + b"</rss>" + b"x" * policy.TAIL_BYTES,  # the closing tag is not in the tail
])
def test_a_malformed_document_that_never_closes_its_root_is_refused(body: bytes) -> None:
    assert policy.on_parsed(body, parsed_feed()) == policy.Checked(refuse=policy.TRUNCATED)


@pytest.mark.parametrize("body", [
    b"<rss><channel></channel></rss>",
    b"<rss></rss >\n<b>Warning</b>: PHP said something",  # text after the root does not count
    b"<rdf:RDF xmlns:rdf='x'></rdf:RDF>",
    b"<feed></FEED>",
    b"< /x></ atom:feed >",
])
def test_a_malformed_document_that_closes_its_root_is_kept_with_a_warning(body: bytes) -> None:
    assert policy.on_parsed(body, parsed_feed()) == policy.Checked(warning="malformed")


def test_json_utf16_and_well_formed_documents_are_not_checked_for_truncation() -> None:
    cut = b"<rss><channel><item>"
    assert policy.on_parsed(cut, parsed_feed(warning=None)) == policy.Checked()
    assert policy.on_parsed(b'{"items": [', parsed_feed(version="json11")) == policy.Checked(warning="malformed")
    assert not policy.truncated("<rss><channel>".encode("utf-16-le"), parsed_feed())
    assert policy.truncated(cut, parsed_feed(version=None))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([b"</rss>", b"</feed>", b"</rdf:RDF>", b"</ RSS >"]),
       st.text(alphabet="abc <>/\n", max_size=200))
def test_a_closed_root_anywhere_in_the_tail_is_never_truncated(head: bytes, close: bytes, after: str) -> None:
    body = b"<?xml version='1.0'?>" + head + close + after.encode()
    assert not policy.truncated(body, parsed_feed())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000).filter(lambda b: b"</" not in b))
def test_a_document_without_any_closing_tag_is_truncated(body: bytes) -> None:
    assert policy.truncated(b"<rss>" + body, parsed_feed())


def test_the_truncation_check_is_bounded_on_hostile_tails() -> None:
    hostile = b"</" + b" " * 5_000_000  # far more than the tail; a backtracking scan of it all would hang
    assert policy.truncated(hostile, parsed_feed())
    assert policy.truncated(b"</a" * 2_000_000, parsed_feed())


# --- the decider's inputs and the summaries ---------------------------------------------------------


def test_identities_and_what_is_known() -> None:
    entries = (entry(0), replace(entry(1), link_key=None))
    parsed = ParsedFeed(title=None, link=None, entries=entries)
    assert policy.identities(parsed) == (["id:0", "id:1"], ["blog.example/0"])
    assert policy.known(feed(last_success=None), ["id:0"], iter(["l"])) == Known(True, frozenset({"id:0"}),
                                                                                 frozenset({"l"}))
    assert policy.known(feed(last_success=NOW), [], []) == Known(first_fetch=False)


def test_the_decider_policy_takes_the_feeds_own_values_else_polling() -> None:
    assert policy.decide_policy(feed(backfill=3, max_per_poll=2), RULES) == Policy(backfill=3, max_per_poll=2)
    assert policy.decide_policy(feed(), RULES) == Policy(backfill=0, max_per_poll=RULES.max_per_poll)
    assert policy.interval(feed(interval=30.0), RULES) == 30.0
    assert policy.interval(feed(), RULES) == RULES.interval


def test_only_the_new_deferred_entries_need_a_summary_and_are_swapped_everywhere() -> None:
    a, b, c = entry(0), entry(1), entry(2)
    decision = Decision(new=(a, b, c), announce=(c,), digest=(a, b), rekey=(("l", "k"),))
    todo = policy.needs_summary(decision, {0: ("<p>a</p>", None), 2: ("<p>c</p>", None), 9: ("x", None)})
    assert todo == [a, c]
    done = policy.with_summaries(decision, [replace(a, summary="A"), replace(c, summary="C")])
    assert [e.summary for e in done.new] == ["A", "", "C"]
    assert [e.summary for e in done.announce] == ["C"] and [e.summary for e in done.digest] == ["A", ""]
    assert done.rekey == decision.rekey
    assert policy.with_summaries(decision, []) is decision


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 30), unique=True, max_size=12), st.sets(st.integers(0, 30)))
def test_swapping_summaries_keeps_every_entry_and_its_order(positions: list[int], deferred: set[int]) -> None:
    entries = tuple(entry(p) for p in positions)
    decision = Decision(new=entries, announce=entries[len(entries) // 2:], digest=entries[: len(entries) // 2])
    todo = policy.needs_summary(decision, dict.fromkeys(deferred, ("", None)))
    assert [e.position for e in todo] == [p for p in positions if p in deferred]
    done = policy.with_summaries(decision, [replace(e, summary=f"s{e.position}") for e in todo])
    for before, after in ((decision.new, done.new), (decision.announce, done.announce),
                          (decision.digest, done.digest)):
        assert [e.position for e in after] == [e.position for e in before]
        assert all(e.summary == (f"s{e.position}" if e.position in deferred else "") for e in after)


def test_a_parsed_poll_writes_the_validators_metadata_and_decision() -> None:
    result = fetched(etag='"e"', last_modified="lm")
    parsed = ParsedFeed(title="Blog", link="https://blog.example/", entries=(), image="https://blog.example/i.png")
    decision = Decision(new=(), announce=(), digest=())
    out = policy.on_new(feed(), result, parsed, decision, NOW, RULES, "https://new.example/")
    assert (out.status, out.http_status, out.etag, out.last_modified, out.body_hash) == (
        "new", 200, '"e"', "lm", result.body_hash)
    assert (out.title, out.link, out.image, out.decision, out.new_url) == (
        "Blog", "https://blog.example/", "https://blog.example/i.png", decision, "https://new.example/")
    assert within_interval(out.next_fetch, NOW, RULES.interval) and out.error is None and out.pause_reason is None


# --- failures ----------------------------------------------------------------------------------------


def test_410_pauses_at_once() -> None:
    out = policy.on_error(feed(last_success=NOW - 60), FeedGone("HTTP 410 Gone", status=410), NOW, RULES)
    assert out.pause_reason == policy.GONE and out.status == "error" and out.http_status == 410
    assert out.error == "HTTP 410 Gone"


def test_a_feed_failing_for_pause_after_is_paused_and_not_before() -> None:
    err = FetchError("HTTP 500", status=500)
    just_under = feed(last_success=NOW - 2 * 86400, first_error_at=NOW - 86400 + 1, error_count=40)
    at_limit = replace(just_under, first_error_at=NOW - 86400)
    assert policy.on_error(just_under, err, NOW, RULES).pause_reason is None
    assert policy.on_error(at_limit, err, NOW, RULES).pause_reason == "failing for 1.0 days: HTTP 500"
    never = feed(first_error_at=NOW - 2 * 86400, error_count=50)
    assert policy.on_error(never, err, NOW, RULES).pause_reason == "failing since its first poll: HTTP 500"
    assert policy.on_error(feed(), err, NOW, RULES).pause_reason is None  # the first failure


def test_an_error_backs_off_and_keeps_retry_after_and_cuts_its_text() -> None:
    state = feed(error_count=2, interval=600.0)
    out = policy.on_error(state, FetchError("HTTP 429", status=429, retry_after=7200.0), NOW, RULES)
    assert out.next_fetch >= NOW + 7200.0 and out.http_status == 429
    out = policy.on_error(state, ParseError("x" * 2000), NOW, RULES)
    assert out.http_status is None and out.error == "x" * policy.ERROR_CHARS
    # the third failure in a row waits 600 · 2² = 2400 s ± 10 %
    assert within_interval(out.next_fetch, NOW, 2400.0)


@settings(max_examples=300, deadline=None)
@given(
    errors=st.integers(0, 100), interval=st.floats(1.0, 86400.0), retry_after=st.none() | st.floats(0.0, 30 * 86400.0),
    failing=st.none() | st.floats(0.0, 10 * 86400.0), succeeded=st.booleans(), gone=st.booleans(),
    pause_after=st.floats(60.0, 7 * 86400.0), max_backoff=st.floats(60.0, 86400.0),
)
def test_every_error_outcome_backs_off_within_bounds_and_pauses_exactly_when_due(
    errors: int, interval: float, retry_after: float | None, failing: float | None, succeeded: bool, gone: bool,
    pause_after: float, max_backoff: float,
) -> None:
    rules = PollingConfig(interval=interval, pause_after=pause_after, max_backoff=max_backoff)
    state = feed(error_count=errors, first_error_at=None if failing is None else NOW - failing,
                 last_success=NOW - 1e6 if succeeded else None)
    cls = FeedGone if gone else FetchError
    out = policy.on_error(state, cls("failed", status=410 if gone else 503, retry_after=retry_after), NOW, rules)
    floor = min(retry_after, 7 * 86400.0) if retry_after is not None else 0.0
    assert out.status == "error" and out.error == "failed"
    assert NOW + min(MIN_RETRY, max_backoff) * (1 - JITTER) <= out.next_fetch
    assert NOW + floor <= out.next_fetch <= NOW + max(max_backoff, floor)
    due = state.first_error_at is not None and NOW - state.first_error_at >= pause_after
    assert (out.pause_reason is not None) == (gone or due)
    if due and not gone:
        assert out.pause_reason is not None and out.pause_reason.endswith(": failed")


def test_an_internal_error_backs_off_and_is_never_a_pause() -> None:
    state = feed(error_count=0, first_error_at=NOW - 10 * 86400, last_success=NOW - 11 * 86400)
    out = policy.on_internal_error(state, KeyError("x" * 1000), NOW, RULES)
    assert out.error is not None and out.error.startswith("internal error: KeyError: 'xxx")
    assert len(out.error) == policy.ERROR_CHARS and out.pause_reason is None and out.status == "error"
    assert within_interval(out.next_fetch, NOW, 600.0)  # the first failure waits max(30 s, interval)


def test_a_refused_write_becomes_the_feeds_error_and_may_pause_it() -> None:
    refused = PollOutcome(7, NOW, NOW + 600, "new", http_status=200)
    state = feed(error_count=1, first_error_at=NOW - 2 * 86400, last_success=NOW - 3 * 86400)
    out = policy.on_rejected(state, refused, "database error: invalid byte", RULES)
    assert out.error == "could not store this feed's entries: database error: invalid byte"
    assert out.status == "error" and out.http_status == 200 and out.now == NOW and out.decision is None
    assert out.pause_reason == "failing for 2.0 days: could not store this feed's entries: database error: invalid byte"
    assert within_interval(out.next_fetch, NOW, 1200.0)  # the second failure in a row
    assert policy.on_rejected(feed(), refused, "x", RULES).pause_reason is None


def test_recovery_is_logged_once_the_feed_works_again() -> None:
    ok = PollOutcome(7, NOW, NOW + 600, "unchanged")
    failed = PollOutcome(7, NOW, NOW + 600, "error", error="x")
    assert policy.recovered(feed(error_count=3, first_error_at=NOW - 7200), ok) == (
        "feed blog recovered after 3 failed polls (failing for 2.0 hours)")
    assert policy.recovered(feed(name=None, error_count=1), ok) == f"feed {URL} recovered after 1 failed polls"
    assert policy.recovered(feed(error_count=3), failed) is None
    assert policy.recovered(feed(error_count=0), ok) is None


def test_failing_for_is_never_zero_minutes() -> None:
    assert policy.failing_for(feed(last_success=NOW, first_error_at=NOW - 59), NOW) == "failing for less than a minute"
    assert policy.failing_for(feed(last_success=NOW, first_error_at=None), NOW) == "failing for less than a minute"
    assert policy.failing_for(feed(last_success=NOW, first_error_at=NOW - 600), NOW) == "failing for 10 minutes"
    assert policy.human(3 * 86400) == "3.0 days" and policy.human(5400) == "1.5 hours"
    assert policy.human(90) == "2 minutes"


# --- a summary that fails to convert ---------------------------------------------------------------


def test_plain_summary_shows_the_text_as_written_and_is_bounded() -> None:
    assert plain_summary("<p>Hi <b>*there*</b> @everyone</p>") == plain("Hi *there* @everyone")
    for start in ("", "a"):  # the cut falls between two escapes, or inside one
        long = plain_summary(f"<p>{start}" + "*" * (3 * MAX_SUMMARY_CHARS) + "</p>")
        assert MAX_SUMMARY_CHARS - 1 <= len(long) <= MAX_SUMMARY_CHARS
        assert long.endswith("\\*") and long.startswith(start + "\\*")  # never half an escape


def test_plain_summary_of_input_that_breaks_even_plain_text_is_empty(monkeypatch) -> None:
    def broken(_html: str) -> str:
        raise RecursionError("odd input")

    monkeypatch.setattr(bot.parse, "plain_text", broken)
    assert plain_summary("<p>x</p>") == ""


class CountingParser:
    """Counts the ParsePool's parse calls, wrapping the real ones."""

    def __init__(self, pool: Any) -> None:
        self.calls: list[str] = []
        for name in ("parse", "parse_deferred", "summarise"):
            setattr(pool, name, self._wrap(name, getattr(pool, name)))

    def _wrap(self, name: str, fn: Any) -> Any:
        async def counted(*args: Any) -> Any:
            self.calls.append(name)
            return await fn(*args)
        return counted


async def test_a_summary_that_fails_to_convert_is_plain_text_and_nothing_is_parsed_twice(
    tmp_path, feed_server: FeedServer, monkeypatch,
) -> None:
    real = bot.parse.summarise_html

    def fragile(html: str, base: str | None, *, image: bool = True) -> Any:
        if "BREAKS" in html:
            raise RecursionError("the converter broke on this entry")
        return real(html, base, image=image)

    monkeypatch.setattr(bot.parse, "summarise_html", fragile)  # the inline parser runs in this process
    items = numbered_items(range(1, 3))
    feed_server.set("/feed.xml", rss(items))
    sink = RecordingSink()
    herald = await open_herald(make_config(tmp_path, [{"url": feed_server.url("/feed.xml")}]), sink)
    try:
        counter = CountingParser(herald.parser)
        await once(herald)
        assert counter.calls == ["parse"]  # the first poll: every entry is new, nothing deferred
        new = numbered_items([3])[0] | {"description": "<p>The <b>*new*</b> post BREAKS @everyone</p>"}
        feed_server.set("/feed.xml", rss([new, *items]))
        stats, sent = await once(herald)
        assert counter.calls == ["parse", "parse_deferred", "summarise"]  # no second parse
        assert stats.errors == 0 and stats.stored == 1 and sent == 1
        [message] = sink.messages
        embed = message.payload["embeds"][0]
        assert embed["title"] == "Post 3" and embed["description"] == plain("The *new* post BREAKS @everyone")
        assert message.payload["allowed_mentions"] == {"parse": []}
    finally:
        await herald.close()


# --- log fields bound once -------------------------------------------------------------------------


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def capture():
    handler = Capture()
    loggers = [logging.getLogger(n) for n in ("herald.poll", "herald.deliver", "herald.test-fields")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


async def test_bound_fields_reach_every_record_nest_and_end_with_the_block(capture: Capture) -> None:
    log = get_logger("herald.test-fields")
    assert get_logger("herald.test-fields") is log
    assert len([f for f in log.filters if isinstance(f, ContextFilter)]) == 1  # once, however often it is asked
    with log_fields(feed="blog", entry=None):
        log.info("one")
        with log_fields(target="channel:1"):
            log.info("two", extra={"feed": "explicit"})
            assert dict(bound_fields()) == {"feed": "blog", "target": "channel:1"}

            async def in_a_task() -> None:
                log.info("three")

            await asyncio.create_task(in_a_task())
        log.info("four")
    log.info("five")
    fields = [(r.getMessage(), getattr(r, "feed", None), getattr(r, "target", None), hasattr(r, "entry"))
              for r in capture.records]
    assert fields == [("one", "blog", None, False), ("two", "explicit", "channel:1", False),
                      ("three", "blog", "channel:1", False), ("four", "blog", None, False),
                      ("five", None, None, False)]
    assert dict(bound_fields()) == {}


def test_the_json_log_gets_bound_fields_from_any_logger() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("info", "json", stream=stream)
        with log_fields(feed="blog", target="channel:9"):
            logging.getLogger("discord.webhook.async_").warning("rate limited")  # not a Herald logger
    finally:
        for h in list(root.handlers):
            if getattr(h, "_herald", False):
                root.removeHandler(h)
        for h in saved[0]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if "rate limited" in x]
    assert line["feed"] == "blog" and line["target"] == "channel:9"


async def test_every_log_line_of_a_poll_names_its_feed(tmp_path, feed_server: FeedServer, capture: Capture) -> None:
    malformed = rss(numbered_items(range(1, 3)), extra_channel="<x>a & b</x>")  # readable, not well-formed
    feed_server.set("/feed.xml", malformed)
    herald = await open_herald(make_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "name": "blog"}]),
                               RecordingSink())
    seen: list[dict[str, Any]] = []
    apply = herald.storage.apply_polls

    async def spy(outcomes: Any) -> Any:
        seen.append(dict(bound_fields()))
        return await apply(outcomes)

    herald.storage.apply_polls = spy  # type: ignore[method-assign]
    try:
        await once(herald)
    finally:
        await herald.close()
    poll = [r for r in capture.records if r.name == "herald.poll"]
    assert any("malformed but readable" in r.getMessage() for r in poll)
    assert poll and all(getattr(r, "feed", None) == "blog" for r in poll), [(r.getMessage(), r.__dict__) for r in poll]
    assert seen == [{}]  # the write batcher writes every feed's outcome: its context names none of them


class BrokenTarget(RecordingSink):
    async def send(self, claimed: Any, payload: dict[str, Any], nonce: str) -> str | None:
        raise PermanentDeliveryError("403 Missing Access: give Herald View Channel", target_broken=True)


async def test_every_log_line_of_a_delivery_names_its_target_feed_and_entry(
    tmp_path, feed_server: FeedServer, capture: Capture,
) -> None:
    feed_server.set("/feed.xml", rss(numbered_items(range(1, 3))))
    config = make_config(tmp_path, [{"url": feed_server.url("/feed.xml"), "name": "blog", "backfill": 1}])
    herald = await open_herald(config, BrokenTarget(), Clock())
    try:
        await once(herald)
    finally:
        await herald.close()
    deliver = [r for r in capture.records if r.name == "herald.deliver"]
    assert any("is unusable, pausing it" in r.getMessage() for r in deliver)
    for r in deliver:
        assert getattr(r, "target", None) == f"channel:{CHANNEL}", r.getMessage()
        assert getattr(r, "feed", None) == "blog" and getattr(r, "entry", None) == "post-2", r.getMessage()
        assert isinstance(getattr(r, "delivery", None), int)
