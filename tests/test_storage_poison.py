"""One feed's bad data never fails another feed's write.

A NUL byte, a lone surrogate, a 12 KB GUID or a title of 300,000 words in one feed used to
fail the whole write batch (every feed's entries with it) on PostgreSQL. Now the storage
normalises what feeds send before any SQL, the same on SQLite and PostgreSQL, and a batch
the database still refuses is written again outcome by outcome, so that only the bad feed
fails: with its error recorded and its backoff applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import Herald
from bot.decide import decide
from bot.errors import StorageError
from bot.models import Known, ParsedEntry, Policy
from bot.pipeline import WriteRejected, _WriteBatcher
from bot.storage.base import DataRejected, PollOutcome, PollResult
from bot.storage.normalise import (
    BTREE_ROW_BYTES, KEY_HASH_MARK, MAX_KEY_CHARS, MAX_SUMMARY_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS,
    TSVECTOR_BYTES, TSVECTOR_BYTES_PER_CHAR, clean, normalise_entry, storage_key,
)
from bot.storage.sql import SqlStorage
from tests.feedserver import FeedServer, numbered_items, rss
from tests.support import START, Clock, RecordingSink
from tests.test_pipeline import feed_info, once, pipeline_config
from tests.test_storage_contract import NOW, Backend, channel_feed, count, entry

WAIT = 10.0  # a bound on waiting for futures: a pending one is a hang, not slowness


# --- helpers --------------------------------------------------------------------------------------


async def outcome_for(st: SqlStorage, feed_id: int, entries: list[ParsedEntry], *, first: bool = True,
                      title: str | None = "Feed title", now: float = NOW) -> PollOutcome:
    """A successful poll's outcome, decided against what the storage knows, not yet applied."""
    keys, links = await st.known(feed_id, [e.key for e in entries], [e.link_key for e in entries if e.link_key])
    d = decide(Known(first, frozenset(keys), frozenset(links)), entries, Policy(backfill=len(entries)), now)
    return PollOutcome(feed_id=feed_id, now=now, next_fetch=now + 600, status="new", http_status=200, title=title,
                       decision=d)


async def stored(st: SqlStorage, feed_id: int) -> list[tuple[Any, ...]]:
    return await st.db.fetchall(
        "SELECT key, link_key, title, link, summary, author, image FROM entries WHERE feed_id = ? ORDER BY id",
        (feed_id,),
    )


def poison(title: str = "Poisoned post", summary: str = "poisoned body", *, key: str = "id:poison",
           link: str | None = "https://bad.example/post", author: str | None = "Mallory",
           image: str | None = None) -> ParsedEntry:
    return ParsedEntry(key=key, link_key=link, title=title, link=link, summary=summary, author=author,
                       published=NOW - 100, image=image)


async def two_feeds(st: SqlStorage) -> tuple[int, int]:
    good = await channel_feed(st, "https://good.example/feed", name="good")
    bad = await channel_feed(st, "https://bad.example/feed", name="bad")
    return good, bad


async def apply_good_and_bad(st: SqlStorage, bad_entries: list[ParsedEntry], *,
                             bad_title: str | None = "Bad feed") -> tuple[int, int, list[PollResult]]:
    """``apply_polls([good, bad])`` in one batch; asserts that the good feed was stored and is searchable."""
    good, bad = await two_feeds(st)
    good_out = await outcome_for(st, good, [entry(1, title="Zanzibar harbour news")])
    bad_out = await outcome_for(st, bad, bad_entries, title=bad_title)
    results = await st.apply_polls([good_out, bad_out])
    assert [r.feed_id for r in results] == [good, bad]
    assert results[0].stored == 1 and results[0].announced == 1
    page = await st.search("zanzibar")
    assert [h.entry.feed_id for h in page.hits] == [good]
    return good, bad, results


# --- poisoned entries, on both backends -----------------------------------------------------------


async def test_nul_bytes_are_stripped_and_the_good_feed_is_stored(backend: Backend) -> None:
    st = backend.storage
    bad_entry = poison("Nul\x00title", "body\x00text here", key="id:gu\x00id", link="https://bad.example/p\x00ost",
                       author="Mal\x00lory", image="https://bad.example/i\x00.png")
    _good, bad, results = await apply_good_and_bad(st, [bad_entry], bad_title="Bad\x00 feed")
    assert results[1].stored == 1
    [(key, link_key, title, link, summary, author, image)] = await stored(st, bad)
    assert (title, link, summary, author, image) == (
        "Nultitle", "https://bad.example/post", "bodytext here", "Mallory", "https://bad.example/i.png")
    # a key that held NUL cannot be stored as it is: a prefix and a hash of the whole, unlike "id:guid"
    assert key == "id:guid" + KEY_HASH_MARK + hashlib.sha256(b"id:gu\x00id").hexdigest()
    assert link_key is not None and "\x00" not in link_key and KEY_HASH_MARK in link_key
    [(feed_title,)] = await st.db.fetchall("SELECT title FROM feeds WHERE id = ?", (bad,))
    assert feed_title == "Bad feed"
    assert [h.entry.title for h in (await st.search("nultitle")).hits] == ["Nultitle"]
    # the same entry polled again is known (looked up as stored): nothing new
    again = await outcome_for(st, bad, [bad_entry], first=False)
    assert again.decision is not None and again.decision.new == ()


async def test_lone_surrogates_are_stripped_and_the_good_feed_is_stored(backend: Backend) -> None:
    st = backend.storage
    bad_entry = poison("Sur\ud800rogate", "half \udfff a pair \ud83d", key="id:\ud800lone",
                       link="https://bad.example/\udc80x", author="\ud800")
    _good, bad, results = await apply_good_and_bad(st, [bad_entry], bad_title="\udc80Bad feed")
    assert results[1].stored == 1
    [(key, link_key, title, link, summary, author, _)] = await stored(st, bad)
    assert (title, link, summary, author) == ("Surrogate", "https://bad.example/x", "half  a pair ", "")
    whole = "id:\ud800lone".encode("utf-8", "surrogatepass")
    assert key == "id:lone" + KEY_HASH_MARK + hashlib.sha256(whole).hexdigest()
    assert link_key is not None and KEY_HASH_MARK in link_key
    assert (await st.db.fetchall("SELECT title FROM feeds WHERE id = ?", (bad,))) == [("Bad feed",)]
    again = await outcome_for(st, bad, [bad_entry], first=False)
    assert again.decision is not None and again.decision.new == ()


def _incompressible(n: int, seed: str) -> str:
    """``n`` hex characters that no index compression can shrink."""
    out, block = [], seed.encode()
    while sum(map(len, out)) < n:
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:n]


async def test_twelve_kilobyte_guids_and_links_are_capped_and_stay_distinct(backend: Backend) -> None:
    st = backend.storage
    guid = "id:" + _incompressible(12_000, "guid")
    link = "https://bad.example/" + _incompressible(12_000, "link")
    twin = guid[:-1] + ("0" if guid[-1] != "0" else "1")  # differs in its last character only
    entries = [poison("Long one", key=guid, link=link), poison("Long twin", key=twin, link=link + "/twin")]
    _good, bad, results = await apply_good_and_bad(st, entries)
    assert results[1].stored == 2  # two GUIDs differing at the end are two entries
    rows = await stored(st, bad)
    assert [r[2] for r in rows] == ["Long twin", "Long one"] or [r[2] for r in rows] == ["Long one", "Long twin"]
    by_title = {r[2]: r for r in rows}
    key, link_key, _, stored_link, _, _, _ = by_title["Long one"]
    assert key == storage_key(guid) and len(key) <= MAX_KEY_CHARS and key.startswith(guid[:100])
    assert by_title["Long twin"][0] == storage_key(twin) != key
    assert link_key == storage_key(link) and len(link_key) <= MAX_KEY_CHARS
    assert stored_link is None  # longer than MAX_URL_CHARS: dropped, never cut into another URL
    # the same long GUID seen again is the same entry
    again = await outcome_for(st, bad, entries, first=False)
    assert again.decision is not None and again.decision.new == ()
    [res] = await st.apply_polls([again])
    assert res.stored == 0 and await count(st, "SELECT COUNT(*) FROM entries WHERE feed_id = ?", (bad,)) == 2


async def test_huge_titles_and_summaries_are_capped_and_searchable(backend: Backend) -> None:
    st = backend.storage
    title = "Gargantuan " + " ".join(f"w{i}" for i in range(300_000))
    summary = "Colossal " + " ".join(f"s{i}" for i in range(600_000))  # several MB
    assert len(summary) > 4_000_000
    _good, bad, results = await apply_good_and_bad(st, [poison(title, summary)], bad_title=title)
    assert results[1].stored == 1
    [(_, _, got_title, _, got_summary, _, _)] = await stored(st, bad)
    assert got_title == title[:MAX_TITLE_CHARS] and got_summary == summary[:MAX_SUMMARY_CHARS]
    assert [h.entry.feed_id for h in (await st.search("gargantuan")).hits] == [bad]
    assert [h.entry.feed_id for h in (await st.search("colossal")).hits] == [bad]
    [(feed_title,)] = await st.db.fetchall("SELECT title FROM feeds WHERE id = ?", (bad,))
    assert feed_title == title[:MAX_TITLE_CHARS]


async def test_the_densest_text_at_the_caps_fits_the_search_index(backend: Backend) -> None:
    """One-character words (the most tsvector bytes a character of text can cost) filling
    both caps: PostgreSQL's 1 MB tsvector limit is never reached."""
    st = backend.storage
    dense = " ".join(chr(0x4E00 + i % 20_000) for i in range(MAX_SUMMARY_CHARS))
    _good, bad, results = await apply_good_and_bad(st, [poison(dense, dense)])
    assert results[1].stored == 1
    [(_, _, got_title, _, got_summary, _, _)] = await stored(st, bad)
    assert (len(got_title), len(got_summary)) == (MAX_TITLE_CHARS, MAX_SUMMARY_CHARS)


async def test_poisoned_keys_are_looked_up_without_error(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    keys = ["id:a\x00b", "id:\ud800", "id:" + "k" * 20_000]
    assert await st.known(fid, keys, ["x\x00", "\udfff", "l" * 20_000]) == (set(), set())


async def test_a_long_key_an_older_herald_stored_whole_is_still_known(backend: Backend) -> None:
    """Keys were not capped before: an entry stored with a 600-character GUID is recognised
    (and not announced again) by its whole key as well as by its capped one."""
    st = backend.storage
    fid = await channel_feed(st)
    long_key = "id:https://blog.example/" + "segment/" * 72
    long_link = "blog.example/" + "segment/" * 72
    assert MAX_KEY_CHARS < len(long_key) < 1000 and storage_key(long_key) != long_key
    await st.db.execute(
        "INSERT INTO entries (feed_id, key, link_key, title, summary, first_seen) VALUES (?, ?, ?, 'Old', '', ?)",
        (fid, long_key, long_link, NOW),
    )
    assert await st.known(fid, [long_key], [long_link]) == ({long_key}, {long_link})
    out = await outcome_for(st, fid, [poison("Old", key=long_key, link=long_link)], first=False)
    assert out.decision is not None and out.decision.new == ()


async def test_both_backends_tell_a_refused_value_from_a_database_failure(backend: Backend) -> None:
    """What the write batcher relies on: a refused value is :class:`DataRejected`, the
    database failing is a plain :class:`StorageError`, on SQLite as on PostgreSQL."""
    db = backend.storage.db
    await db.execute("INSERT INTO kv (key, value) VALUES ('k', 'v')")
    with pytest.raises(DataRejected, match=r"(?i)unique"):
        await db.execute("INSERT INTO kv (key, value) VALUES ('k', 'v')")
    with pytest.raises(DataRejected, match="surrogates not allowed"):
        await db.execute("INSERT INTO kv (key, value) VALUES ('s', ?)", ("\ud800",))
    with pytest.raises(StorageError) as failed:
        await db.execute("UPDATE no_such_table SET x = 1")
    assert not isinstance(failed.value, DataRejected)


# --- the key cap, as a property -------------------------------------------------------------------

_ANY_CHAR = st.characters(codec=None, exclude_categories=())  # surrogates and NUL included
_STORABLE_CHAR = st.characters(codec="utf-8", exclude_characters="\x00")  # what UTF-8 encodes, but NUL


@given(st.text(_STORABLE_CHAR, max_size=MAX_KEY_CHARS))
def test_keys_up_to_the_cap_are_stored_as_they_are(key: str) -> None:
    assert storage_key(key) == key


@given(st.text(_STORABLE_CHAR, min_size=1, max_size=20), st.integers(0, MAX_KEY_CHARS))
def test_keys_of_any_length_up_to_the_cap_are_stored_as_they_are(unit: str, length: int) -> None:
    key = (unit * MAX_KEY_CHARS)[:length]  # lengths right up to the cap, which short random text rarely reaches
    assert storage_key(key) == key
    assert storage_key(key + "x" * (MAX_KEY_CHARS + 1 - length)) != key + "x" * (MAX_KEY_CHARS + 1 - length)


@settings(max_examples=50)
@given(st.text(_ANY_CHAR, min_size=1, max_size=40), st.lists(st.text(_ANY_CHAR, max_size=8), min_size=2, max_size=8,
                                                              unique=True))
def test_longer_keys_are_capped_stable_and_distinct(head: str, tails: list[str]) -> None:
    base = "id:" + head * (MAX_KEY_CHARS // len(head) + 1)
    keys = [base + t for t in tails]
    capped = [storage_key(k) for k in keys]
    assert all(len(c) <= MAX_KEY_CHARS for c in capped)
    assert len(set(capped)) == len(keys)  # injective on the sample (a SHA-256 of the whole key)
    assert capped == [storage_key(k) for k in keys]  # stable
    assert all(storage_key(c) == c for c in capped)  # a stored key is stored as it is
    for c in capped:
        c.encode("utf-8")  # no surrogate left
        assert "\x00" not in c


@given(st.text(_ANY_CHAR, max_size=200))
def test_clean_leaves_only_storable_text(text: str) -> None:
    got = clean(text)
    got.encode("utf-8")
    assert "\x00" not in got
    assert got == "".join(ch for ch in text if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)


def test_the_caps_stay_well_inside_postgresqls_limits() -> None:
    # a key of 4-byte characters and a feed id fit a B-tree row; title + summary use under a third
    # of a tsvector even at the densest text (which the test above stores on PostgreSQL)
    assert MAX_KEY_CHARS * 4 + 8 < BTREE_ROW_BYTES
    assert (MAX_TITLE_CHARS + MAX_SUMMARY_CHARS) * TSVECTOR_BYTES_PER_CHAR * 3 < TSVECTOR_BYTES


def test_normalise_entry_drops_urls_too_long_to_be_right() -> None:
    long_url = "https://a.example/" + "x" * MAX_URL_CHARS
    e = normalise_entry(poison(link=long_url, image=long_url))
    assert (e.link, e.image) == (None, None) and e.link_key == storage_key(long_url)
    assert normalise_entry(entry(1)) == entry(1)  # ordinary entries are untouched


# --- the write batcher ----------------------------------------------------------------------------


class StubStorage:
    """``apply_polls`` refuses any batch holding a bad feed's outcome (as a database refuses a
    value), or fails with ``down`` (the database itself), or returns ``short`` results."""

    def __init__(self, bad: set[int], *, bad_error: Exception | None = None) -> None:
        self.bad = bad
        self.bad_error = bad_error or DataRejected('database error: invalid byte sequence for encoding "UTF8": 0x00')
        self.down: Exception | None = None
        self.down_after = 0  # calls that succeed before ``down`` applies
        self.short = False
        self.batches: list[list[int]] = []

    async def apply_polls(self, outcomes: Sequence[PollOutcome]) -> list[PollResult]:
        self.batches.append([o.feed_id for o in outcomes])
        if self.down is not None and len(self.batches) > self.down_after:
            raise self.down
        if any(o.feed_id in self.bad for o in outcomes):
            raise self.bad_error
        if self.short:
            return []
        return [PollResult(o.feed_id, stored=o.feed_id) for o in outcomes]


def outcome(feed_id: int) -> PollOutcome:
    return PollOutcome(feed_id=feed_id, now=NOW, next_fetch=NOW + 600, status="unchanged")


async def submit_all(storage: StubStorage, ids: list[int]) -> list[asyncio.Future[PollResult]]:
    batcher = _WriteBatcher(storage)  # type: ignore[arg-type]
    futs = [batcher.submit(outcome(i)) for i in ids]  # queued before the writer runs: one batch
    _done, pending = await asyncio.wait(futs, timeout=WAIT)
    assert not pending, "a future was left pending"
    return futs


@pytest.mark.parametrize("bad_error", [None, TypeError("a bug on this outcome's data")])
async def test_batcher_fails_only_the_outcome_the_database_refuses(bad_error: Exception | None) -> None:
    storage = StubStorage({3}, bad_error=bad_error)
    futs = await submit_all(storage, [1, 2, 3, 4, 5])
    assert [f.result().feed_id for i, f in enumerate(futs) if i != 2] == [1, 2, 4, 5]
    exc = futs[2].exception()
    assert isinstance(exc, WriteRejected) and isinstance(exc, StorageError)
    assert exc.outcome.feed_id == 3 and exc.cause is storage.bad_error
    assert storage.batches == [[1, 2, 3, 4, 5], [1], [2], [3], [4], [5]]


async def test_batcher_a_single_refused_outcome_is_not_written_twice() -> None:
    storage = StubStorage({7})
    [fut] = await submit_all(storage, [7])
    assert isinstance(fut.exception(), WriteRejected) and storage.batches == [[7]]


async def test_batcher_a_database_failure_fails_every_outcome_unretried() -> None:
    storage = StubStorage({3})
    storage.down = StorageError("database error: database or disk is full")
    futs = await submit_all(storage, [1, 2, 3])
    assert all(f.exception() is storage.down for f in futs)  # the database's error, not one feed's
    assert storage.batches == [[1, 2, 3]]


async def test_batcher_the_database_failing_while_retrying_fails_the_rest() -> None:
    storage = StubStorage({1})
    storage.down, storage.down_after = StorageError("database error: connection lost"), 2  # batch, then [1] refused
    futs = await submit_all(storage, [1, 2, 3])
    assert isinstance(futs[0].exception(), WriteRejected)
    assert futs[1].exception() is storage.down and futs[2].exception() is storage.down
    assert storage.batches == [[1, 2, 3], [1], [2]]


async def test_batcher_a_short_result_list_leaves_no_future_pending() -> None:
    storage = StubStorage(set())
    storage.short = True
    futs = await submit_all(storage, [1, 2])
    for f in futs:
        assert isinstance(f.exception(), StorageError) and "0 results for 2" in str(f.exception())
    assert storage.batches == [[1, 2]]  # written already: not written again


# --- end to end: the poller --------------------------------------------------------------------------


def refuse_feed(storage: SqlStorage, feed_id: int) -> list[PollOutcome]:
    """Makes every write of ``feed_id``'s entries fail as PostgreSQL refused the issue's NUL
    byte (its error outcomes still store). Returns the list of refused outcomes."""
    refused: list[PollOutcome] = []
    original = storage.apply_polls

    async def apply_polls(outcomes: Sequence[PollOutcome]) -> list[PollResult]:
        for o in outcomes:
            if o.feed_id == feed_id and o.status != "error":
                refused.append(o)
                raise DataRejected('database error: invalid byte sequence for encoding "UTF8": 0x00')
        return await original(outcomes)

    storage.apply_polls = apply_polls  # type: ignore[method-assign]
    return refused


async def test_a_feed_whose_write_fails_is_recorded_and_backs_off(tmp_path, feed_server: FeedServer, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="herald.poll")
    feed_server.set("/good.xml", rss(numbered_items(range(1, 3))))
    feed_server.set("/bad.xml", rss(numbered_items(range(1, 4))))
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/good.xml"), "backfill": 1},
                                        {"url": feed_server.url("/bad.xml"), "backfill": 1}], interval="10m")
    clock, sink = Clock(), RecordingSink()
    herald = Herald(config, sink, clock=clock, parse_inline=True)
    await herald.open()
    try:
        bad_id = (await feed_info(herald, feed_server.url("/bad.xml"))).id
        refused = refuse_feed(herald.storage, bad_id)  # type: ignore[arg-type]
        stats, sent = await once(herald)
        good = await feed_info(herald, feed_server.url("/good.xml"))
        bad = await feed_info(herald, feed_server.url("/bad.xml"))
        assert sent == 1 and sink.titles == ["Post 2"]  # the good feed is stored and announced
        assert good.entries == 2 and good.last_error is None
        assert stats.errors == 1 and len(refused) == 1
        assert bad.entries == 0 and bad.error_count == 1 and bad.last_success is None
        assert bad.last_error == ("could not store this feed's entries: "
                                  'database error: invalid byte sequence for encoding "UTF8": 0x00')
        assert bad.next_fetch is not None and bad.next_fetch >= START + 600 * 0.9

        # a cycle before its backoff is over does not poll it again
        clock.now = START + 300
        await asyncio.wait_for(herald.poller.poll_due(), 30)
        assert feed_server.requests("/bad.xml") == 1 and len(refused) == 1

        # once due it fails again, and waits twice as long
        clock.now = bad.next_fetch + 1
        stats = await asyncio.wait_for(herald.poller.poll_due(), 30)
        again = await feed_info(herald, feed_server.url("/bad.xml"))
        assert stats.errors == 1 and len(refused) == 2 and feed_server.requests("/bad.xml") == 2
        assert again.error_count == 2 and again.next_fetch is not None
        assert again.next_fetch - clock.now >= 2 * 600 * 0.9
    finally:
        await herald.close()
    warnings = [r.getMessage() for r in caplog.records if "could not store this feed's entries" in r.getMessage()]
    assert len(warnings) == 2  # once per failed poll, not once per cycle


def json_feed(items: list[dict[str, Any]]) -> bytes:
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "Poison\u0000 feed",
           "home_page_url": "https://bad.example/", "items": items}
    return json.dumps(doc, ensure_ascii=True).encode()  # "\u0000" and "\ud800" escapes, as a hostile feed sends


async def test_a_poisoned_json_feed_next_to_a_good_one_through_the_poller(
    backend: Backend, tmp_path, feed_server: FeedServer,
) -> None:
    """The issue's scenario end to end, on both backends: a JSON Feed with NUL bytes, lone
    surrogates and a 12 KB GUID is polled in one cycle with a good feed."""
    feed_server.set("/good.xml", rss(numbered_items(range(1, 3))))
    long_guid = _incompressible(12_000, "json")
    feed_server.set("/poison.json", json_feed([
        {"id": "nul\u0000guid", "url": "https://bad.example/1", "title": "Nul\u0000 title",
         "content_text": "body\u0000 text", "date_published": "2026-01-01T00:00:00Z"},
        {"id": "half\ud800pair", "url": "https://bad.example/2", "title": "Lone\udfff surrogate",
         "content_text": "x", "date_published": "2026-01-02T00:00:00Z"},
        {"id": long_guid, "url": "https://bad.example/3", "title": "Long guid", "content_text": "y",
         "date_published": "2026-01-03T00:00:00Z"},
    ]), "application/feed+json")
    config = pipeline_config(tmp_path, [{"url": feed_server.url("/good.xml"), "backfill": 1},
                                        {"url": feed_server.url("/poison.json"), "backfill": 3}])
    sink = RecordingSink()
    herald = Herald(config, sink, storage=backend.storage, clock=Clock(), parse_inline=True)
    await herald.open()
    try:
        stats, sent = await once(herald)
        good = await feed_info(herald, feed_server.url("/good.xml"))
        bad = await feed_info(herald, feed_server.url("/poison.json"))
        stats2, sent2 = await once(herald)  # nothing is announced twice
        keys = [r[0] for r in await backend.storage.db.fetchall(
            "SELECT key FROM entries WHERE feed_id = ? ORDER BY key", (bad.id,))]
    finally:
        await herald.close()
    assert stats.errors == 0 and good.entries == 2 and good.last_error is None
    assert bad.entries == 3 and bad.last_error is None and bad.title == "Poison feed"
    assert sorted(sink.titles) == ["Lone surrogate", "Long guid", "Nul title", "Post 2"] and sent == 4
    assert all(len(k) <= MAX_KEY_CHARS for k in keys) and storage_key("id:" + long_guid) in keys
    assert (stats2.errors, sent2) == (0, 0)
