"""The decider, a pure function: fake parsed entries, an injected ``now``, no storage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.decide import FUTURE_SLACK, chronological, decide
from bot.identity import normalise_link
from bot.models import Known, ParsedEntry, Policy

NOW = 1_750_000_000.0
DAY = 86400.0
FIRST = Known(first_fetch=True)


def entry(n: int, *, key: str | None = None, link: str | None = "default", published: float | None | str = "default",
          position: int | None = None) -> ParsedEntry:
    """Post ``n``: a higher n is newer (n days before NOW - 100 days)."""
    if link == "default":
        link = f"https://blog.example/posts/{n}/"
    if published == "default":
        published = NOW - (100 - n) * DAY
    return ParsedEntry(
        key=key or f"id:post-{n}", link_key=normalise_link(link), title=f"Post {n}", link=link,
        summary=f"Body {n}", published=published, position=position if position is not None else 1000 - n,
    )


def feed(*numbers: int, **kw) -> list[ParsedEntry]:
    """Entries as a feed writes them: newest first, positions 0, 1, 2 …"""
    out = []
    for pos, n in enumerate(sorted(numbers, reverse=True)):
        out.append(entry(n, position=pos, **kw))
    return out


def known_of(entries: list[ParsedEntry]) -> Known:
    return Known(first_fetch=False, keys=frozenset(e.key for e in entries),
                 link_keys=frozenset(e.link_key for e in entries if e.link_key))


def titles(entries) -> list[str]:
    return [e.title for e in entries]


# --- the first fetch -----------------------------------------------------------------------------------


def test_first_fetch_with_backfill_0_announces_nothing_but_remembers_everything() -> None:
    d = decide(FIRST, feed(1, 2, 3, 4, 5), Policy(backfill=0), NOW)
    assert d.announce == () and d.digest == ()
    assert titles(d.new) == ["Post 1", "Post 2", "Post 3", "Post 4", "Post 5"]


def test_first_fetch_with_backfill_3_announces_the_newest_3_oldest_first() -> None:
    d = decide(FIRST, feed(1, 2, 3, 4, 5), Policy(backfill=3), NOW)
    assert titles(d.announce) == ["Post 3", "Post 4", "Post 5"]
    assert d.digest == ()
    assert len(d.new) == 5


def test_backfill_larger_than_the_feed_announces_everything() -> None:
    d = decide(FIRST, feed(1, 2), Policy(backfill=10), NOW)
    assert titles(d.announce) == ["Post 1", "Post 2"]
    d = decide(FIRST, feed(1, 2, 3, 4, 5, 6, 7), Policy(backfill=10), NOW)  # 7 - 10 < 0: not a negative slice
    assert titles(d.announce) == [f"Post {n}" for n in range(1, 8)]
    d = decide(FIRST, feed(1, 2, 3), Policy(backfill=4, max_per_poll=1), NOW)
    assert titles(d.announce) == ["Post 3"] and titles(d.digest) == ["Post 1", "Post 2"]


def test_backfill_beyond_max_per_poll_spills_into_the_digest() -> None:
    d = decide(FIRST, feed(*range(1, 21)), Policy(backfill=15, max_per_poll=10), NOW)
    assert titles(d.announce) == [f"Post {n}" for n in range(11, 21)]
    assert titles(d.digest) == [f"Post {n}" for n in range(6, 11)]


# --- later polls -----------------------------------------------------------------------------------------


def test_one_new_item_is_announced_exactly_once() -> None:
    before = feed(1, 2, 3)
    d = decide(known_of(before), feed(1, 2, 3, 4), Policy(), NOW)
    assert titles(d.new) == ["Post 4"] and titles(d.announce) == ["Post 4"] and d.digest == ()


def test_nothing_new_announces_nothing() -> None:
    before = feed(1, 2, 3)
    d = decide(known_of(before), feed(1, 2, 3), Policy(), NOW)
    assert d.new == () and d.announce == () and d.digest == () and d.rekey == ()


def test_duplicate_guids_in_one_document_count_once() -> None:
    doc = feed(1, 2, 3)
    dup = ParsedEntry(key="id:post-3", link_key=normalise_link("https://blog.example/other/"), title="Post 3 again",
                      link="https://blog.example/other/", summary="", published=NOW - DAY, position=3)
    d = decide(known_of(feed(1)), [*doc, dup], Policy(), NOW)
    assert [e.key for e in d.announce].count("id:post-3") == 1
    assert titles(d.announce) == ["Post 2", "Post 3"]


def test_duplicate_links_in_one_document_count_once() -> None:
    a = entry(5, key="id:a", link="https://blog.example/same/", position=0)
    b = entry(5, key="id:b", link="http://www.blog.example/same", position=1)
    d = decide(Known(first_fetch=False), [a, b], Policy(), NOW)
    assert len(d.new) == 1 and len(d.announce) == 1


def test_a_link_shared_by_different_entries_does_not_identify_them() -> None:
    """A podcast whose every episode links to its home page: the GUIDs tell them apart."""
    def episode(n: int, position: int) -> ParsedEntry:
        return ParsedEntry(key=f"id:episode-{n}", link_key="podcast.example", title=f"Episode {n}",
                           link="https://podcast.example/", summary="", published=NOW - (100 - n) * DAY,
                           position=position)

    first = [episode(n, i) for i, n in enumerate([3, 2, 1])]
    d = decide(FIRST, first, Policy(backfill=2), NOW)
    assert titles(d.new) == ["Episode 1", "Episode 2", "Episode 3"]
    assert titles(d.announce) == ["Episode 2", "Episode 3"] and d.rekey == ()
    later = [episode(n, i) for i, n in enumerate([4, 3, 2, 1])]
    d = decide(known_of(first), later, Policy(), NOW)
    assert titles(d.announce) == ["Episode 4"] and d.rekey == ()


def test_duplicates_on_the_first_fetch_are_stored_once() -> None:
    doc = feed(1, 2) + feed(1, 2)
    d = decide(FIRST, doc, Policy(backfill=5), NOW)
    assert titles(d.new) == ["Post 1", "Post 2"] and titles(d.announce) == ["Post 1", "Post 2"]


def test_every_guid_changing_at_once_announces_nothing_and_rekeys() -> None:
    old = feed(1, 2, 3, 4, 5)  # guids "post-n", http links
    new = [entry(n, key=f"id:https://blog.example/posts/{n}/", link=f"https://www.blog.example/posts/{n}",
                 position=i) for i, n in enumerate([5, 4, 3, 2, 1])]
    d = decide(known_of(old), new, Policy(backfill=5), NOW)
    assert d.new == () and d.announce == () and d.digest == ()
    assert sorted(d.rekey) == sorted((e.link_key, e.key) for e in new)


def test_http_to_https_links_with_link_identity_announce_nothing() -> None:
    old = [entry(n, key=f"link:http://blog.example/posts/{n}/", link=f"http://blog.example/posts/{n}/") for n in (1, 2)]
    new = [entry(n, key=f"link:https://blog.example/posts/{n}/", link=f"https://blog.example/posts/{n}/")
           for n in (1, 2)]
    d = decide(known_of(old), new, Policy(), NOW)
    assert d.announce == () and d.new == () and len(d.rekey) == 2


def test_a_rekeyed_feed_still_announces_its_genuinely_new_item() -> None:
    old = feed(1, 2, 3)
    new = [entry(n, key=f"id:v2-{n}", position=i) for i, n in enumerate([4, 3, 2, 1])]
    d = decide(known_of(old), new, Policy(), NOW)
    assert titles(d.announce) == ["Post 4"] and len(d.rekey) == 3


def test_an_entry_dropping_out_and_coming_back_is_not_announced() -> None:
    everything_seen = feed(1, 2, 3, 4)
    d = decide(known_of(feed(2, 3, 4)), feed(2, 3, 4), Policy(), NOW)  # post 1 dropped out
    assert d.announce == ()
    d = decide(known_of(everything_seen), feed(1, 2, 3, 4), Policy(), NOW)  # and came back
    assert d.new == () and d.announce == ()


# --- entries without GUIDs -------------------------------------------------------------------------------


def test_guidless_entries_with_links_are_known_by_their_link() -> None:
    before = [entry(n, key=f"link:https://blog.example/posts/{n}/") for n in (1, 2)]
    now = [entry(n, key=f"link:https://blog.example/posts/{n}/", position=i) for i, n in enumerate([3, 2, 1])]
    d = decide(known_of(before), now, Policy(), NOW)
    assert titles(d.announce) == ["Post 3"]


def test_hash_identity_when_there_is_no_link() -> None:
    def hashed(n: int, position: int) -> ParsedEntry:
        return entry(n, key=f"hash:{n:064x}", link=None, position=position)

    before = [hashed(1, 1), hashed(2, 0)]
    d = decide(known_of(before), [hashed(3, 0), hashed(2, 1), hashed(1, 2)], Policy(), NOW)
    assert titles(d.announce) == ["Post 3"]
    assert all(e.link_key is None for e in d.new)
    d = decide(known_of(before + [hashed(3, 0)]), [hashed(3, 0), hashed(2, 1), hashed(1, 2)], Policy(), NOW)
    assert d.new == () and d.rekey == ()


# --- how many, and in which order --------------------------------------------------------------------------


def test_max_per_poll_overflow_goes_to_the_digest() -> None:
    d = decide(known_of(feed(1)), feed(*range(1, 17)), Policy(max_per_poll=10), NOW)
    assert titles(d.announce) == [f"Post {n}" for n in range(7, 17)]
    assert titles(d.digest) == [f"Post {n}" for n in range(2, 7)]
    assert len(d.new) == 15


def test_max_per_poll_exactly_reached_needs_no_digest() -> None:
    d = decide(known_of(feed(1)), feed(*range(1, 12)), Policy(max_per_poll=10), NOW)
    assert len(d.announce) == 10 and d.digest == ()


def test_entries_without_dates_keep_document_order_reversed() -> None:
    doc = [entry(n, published=None, position=i) for i, n in enumerate([9, 3, 7, 1])]  # document order, no dates
    d = decide(Known(first_fetch=False), doc, Policy(), NOW)
    assert titles(d.announce) == ["Post 1", "Post 7", "Post 3", "Post 9"]


def test_dated_entries_sort_by_date_whatever_the_document_order() -> None:
    doc = [entry(n, position=i) for i, n in enumerate([2, 5, 1, 4, 3])]
    d = decide(Known(first_fetch=False), doc, Policy(), NOW)
    assert titles(d.announce) == ["Post 1", "Post 2", "Post 3", "Post 4", "Post 5"]


def test_updated_date_is_used_when_there_is_no_published_date() -> None:
    a = ParsedEntry(key="id:a", link_key=None, title="A", link=None, summary="", updated=NOW - 10, position=0)
    b = ParsedEntry(key="id:b", link_key=None, title="B", link=None, summary="", updated=NOW - 20, position=1)
    assert titles(chronological([a, b], NOW)) == ["B", "A"]


def test_entries_dated_in_the_far_future_count_as_now() -> None:
    future = entry(50, published=NOW + 10 * 365 * DAY, position=0)
    recent = entry(99, published=NOW - 60, position=1)
    assert titles(chronological([future, recent], NOW)) == ["Post 99", "Post 50"]
    near = entry(51, published=NOW + FUTURE_SLACK / 2, position=0)
    assert titles(chronological([near, recent], NOW)) == ["Post 99", "Post 51"]


def test_backfill_picks_the_newest_by_date_not_by_position() -> None:
    doc = [entry(n, position=i) for i, n in enumerate([1, 2, 3, 4, 5])]  # an oldest-first feed
    d = decide(FIRST, doc, Policy(backfill=2), NOW)
    assert titles(d.announce) == ["Post 4", "Post 5"]


def test_decide_is_pure() -> None:
    doc = feed(1, 2, 3)
    before = list(doc)
    assert decide(FIRST, doc, Policy(backfill=2), NOW) == decide(FIRST, tuple(doc), Policy(backfill=2), NOW)
    assert doc == before


# --- properties ------------------------------------------------------------------------------------------------

_entries = st.lists(
    st.builds(
        lambda n, link, dated, pos: entry(n, link=f"https://blog.example/{link}" if link is not None else None,
                                          published=(NOW - n * 3600.0) if dated else None, position=pos),
        st.integers(0, 40), st.one_of(st.none(), st.integers(0, 40).map(str)), st.booleans(), st.integers(0, 100)),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(_entries, st.sets(st.integers(0, 40)), st.booleans(), st.integers(0, 50), st.integers(1, 20))
def test_decision_invariants(parsed, seen, first, backfill, max_per_poll) -> None:
    known = Known(first_fetch=first, keys=frozenset() if first else frozenset(f"id:post-{n}" for n in seen))
    d = decide(known, parsed, Policy(backfill=backfill, max_per_poll=max_per_poll), NOW)
    new_keys = [e.key for e in d.new]
    assert len(new_keys) == len(set(new_keys))  # nothing twice
    assert not set(new_keys) & known.keys  # nothing known
    links = [(e.link_key, e.title) for e in d.new if e.link_key]  # a shared link only for different posts
    assert len(links) == len(set(links))
    sent = list(d.digest) + list(d.announce)
    assert set(e.key for e in sent) <= set(new_keys)
    assert len(d.announce) <= max_per_poll
    assert sent == list(d.new)[len(d.new) - len(sent):]  # the newest ones, oldest first
    if first:
        assert len(sent) == min(backfill, len(d.new))
    else:
        assert len(sent) == len(d.new)
