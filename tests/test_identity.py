"""Entry identity: the GUID, else the link, else a content hash; links compared normalised."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.identity import content_hash, entry_key, normalise_link
from bot.parse import parse_feed
from tests.feedserver import rss

# --- normalise_link, by example ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [
    "https://example.com/a",
    "http://example.com/a",
    "https://www.example.com/a",
    "http://www.Example.COM/a/",
    "https://example.com/a/",
    "https://example.com/a//",
    "https://example.com/a#comments",
    "https://example.com/a?utm_source=rss&utm_medium=feed",
    "https://example.com/a?UTM_Campaign=x",
    "https://example.com/a?fbclid=123&gclid=4",
    "https://example.com:443/a",
    "http://example.com:80/a",
    "https://example.com./a",
    "  https://example.com/a  ",
])
def test_variants_of_one_link_normalise_equal(variant) -> None:
    assert normalise_link(variant) == "example.com/a"


def test_query_is_kept_and_sorted() -> None:
    assert normalise_link("https://example.com/p?b=2&a=1") == normalise_link("http://example.com/p?a=1&b=2")
    assert normalise_link("https://example.com/p?id=1") != normalise_link("https://example.com/p?id=2")
    assert normalise_link("https://example.com/p?id=1&utm_source=x") == "example.com/p?id=1"


def test_what_identifies_a_page_is_kept() -> None:
    assert normalise_link("https://example.com/A") != normalise_link("https://example.com/a")
    assert normalise_link("https://example.com:8443/a") == "example.com:8443/a"
    assert normalise_link("https://blog.example.com/a") != normalise_link("https://example.com/a")
    assert normalise_link("https://example.com/") == "example.com"
    assert normalise_link("https://example.com") == "example.com"


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_no_link_normalises_to_none(empty) -> None:
    assert normalise_link(empty) is None


@pytest.mark.parametrize(("odd", "identity"), [
    ("http://[::1", "http://[::1"),  # urlsplit refuses it: the link as written (stripped) identifies it
    (" http://[::1 ", "http://[::1"),
    ("https://example.com:99999/a", "https://example.com:99999/a"),  # a port out of range: as written
    ("http://exa mple.com/", "exa mple.com"),  # parsed: scheme and trailing slash dropped like any link
    ("\x00", "\x00"),
    ("://", ":"),
])
def test_unparseable_links_do_not_raise(odd: str, identity: str) -> None:
    assert normalise_link(odd) == identity  # no exception, and a value that identifies the link


# --- normalise_link, properties ------------------------------------------------------------------------

_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
_host = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_label, min_size=1, max_size=3),
                  st.sampled_from(["com", "org", "example", "io"]))
_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_.~%", min_size=1, max_size=12)
_path = st.builds(lambda segs: "/" + "/".join(segs), st.lists(_segment, min_size=0, max_size=4))
_qkey = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6).filter(
    lambda k: not k.startswith("utm_") and k not in {"fbclid", "gclid", "mc_cid", "mc_eid", "ref_src"})
_qval = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", max_size=6)
_query = st.lists(st.tuples(_qkey, _qval), max_size=3, unique_by=lambda kv: kv[0])


def _url(scheme: str, host: str, path: str, query: list[tuple[str, str]], fragment: str = "") -> str:
    q = "&".join(f"{k}={v}" for k, v in query)
    return f"{scheme}://{host}{path}" + (f"?{q}" if q else "") + (f"#{fragment}" if fragment else "")


@settings(max_examples=100, deadline=None)
@given(_host, _path, _query)
def test_normalise_link_is_idempotent(host, path, query) -> None:
    once = normalise_link(_url("https", host, path, query))
    assert once is not None
    assert normalise_link(once) == once


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["http://", "https://", "HTTPS://", "https://www."]), st.text(max_size=60))
def test_normalise_link_is_idempotent_on_any_http_link(scheme, rest) -> None:
    # feed links are always http(s) (the parser drops others), but what follows may be anything
    once = normalise_link(scheme + rest)
    assert normalise_link(once) == once


def test_repeated_www_and_stray_whitespace_normalise_once() -> None:
    assert normalise_link("https://www.www.example.com/a") == "example.com/a"
    assert normalise_link("https://\xa0example.com/a") == normalise_link(normalise_link("https://\xa0example.com/a"))


@settings(max_examples=100, deadline=None)
@given(_host, _path, _query, st.sampled_from(["http", "https", "HTTP"]), st.booleans(), st.booleans(),
       st.text(alphabet="abc-123", max_size=8), st.lists(st.tuples(st.sampled_from(["utm_source", "utm_medium",
       "fbclid"]), _qval), max_size=2), st.randoms())
def test_variants_normalise_equal(host, path, query, scheme, www, slash, fragment, tracking, rnd) -> None:
    assume(not host.startswith("www."))
    plain = normalise_link(_url("https", host, path, query))
    variant_host = ("www." if www else "") + (host.upper() if rnd.random() < 0.3 else host)
    variant_path = path + ("/" if slash else "")
    mixed = list(query) + list(tracking)
    rnd.shuffle(mixed)
    variant = normalise_link(_url(scheme, variant_host, variant_path, mixed, fragment))
    assert variant == plain


@settings(max_examples=100, deadline=None)
@given(_host, _path, _path)
def test_different_paths_stay_different(host, a, b) -> None:
    assume(a.rstrip("/") != b.rstrip("/"))
    assert normalise_link(f"https://{host}{a}") != normalise_link(f"https://{host}{b}")


# --- entry_key -------------------------------------------------------------------------------------------


def test_guid_first_then_link_then_hash() -> None:
    assert entry_key("tag:x,2024:1", "https://a.example/1", "T", None, "S") == "id:tag:x,2024:1"
    assert entry_key("  g  ", None, "T", None, "S") == "id:g"
    assert entry_key(None, "https://a.example/1", "T", None, "S") == "link:https://a.example/1"
    assert entry_key("   ", " https://a.example/1 ", "T", None, "S") == "link:https://a.example/1"
    key = entry_key(None, None, "T", "Mon, 01 Jan 2024 00:00:00 GMT", "S")
    assert key == "hash:" + content_hash("T", "Mon, 01 Jan 2024 00:00:00 GMT", "S")
    assert key.startswith("hash:") and len(key) == len("hash:") + 64


def test_content_hash_separates_its_fields() -> None:
    assert content_hash("ab", None, "c") != content_hash("a", "b", "c")
    assert content_hash("a", None, "bc") != content_hash("a", "b", "c")
    assert content_hash("T", None, "S") == content_hash("T", "", "S")
    expected = hashlib.sha256(b"T\x00\x00S\x00").hexdigest()
    assert content_hash("T", None, "S") == expected


_opt_text = st.one_of(st.none(), st.text(max_size=40))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40), _opt_text, st.text(max_size=40), _opt_text, st.text(max_size=80))
def test_entry_key_is_deterministic_and_prefers_the_guid(guid, link, title, date, summary) -> None:
    key = entry_key(guid, link, title, date, summary)
    assert key == entry_key(guid, link, title, date, summary)
    if guid.strip():
        assert key == "id:" + guid.strip()
        assert key == entry_key(guid, "https://other.example/", "other", "other", "other")
    elif link and link.strip():
        assert key == "link:" + link.strip()
    else:
        assert key.startswith("hash:")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_hash_identity_changes_with_the_content(t1, t2, s1, s2) -> None:
    assume((t1, s1) != (t2, s2))
    assert entry_key(None, None, t1, None, s1) != entry_key(None, None, t2, None, s2)


# --- identity of parsed entries ----------------------------------------------------------------------------


def test_parsed_entries_get_guid_link_or_hash_keys() -> None:
    body = rss([
        {"title": "With guid", "link": "https://blog.example/1/?utm_source=rss", "guid": "urn:post:1"},
        {"title": "Link only", "link": "http://www.blog.example/2/"},
        {"title": "Neither", "description": "<p>just text</p>", "date": 1_700_000_000},
        {"title": "Permalink guid", "guid": "https://blog.example/4/", "guid_permalink": True},
    ])
    entries = parse_feed(body, {"content-type": "application/rss+xml"}, "https://blog.example/feed.xml").entries
    with_guid, link_only, neither, permalink = entries
    assert with_guid.key == "id:urn:post:1" and with_guid.link_key == "blog.example/1"
    assert link_only.key == "link:http://www.blog.example/2/" and link_only.link_key == "blog.example/2"
    assert neither.key.startswith("hash:") and neither.link_key is None
    assert permalink.key == "id:https://blog.example/4/"
    assert permalink.link == "https://blog.example/4/" and permalink.link_key == "blog.example/4"
    # parsing the same bytes again gives the same keys, hash included
    again = parse_feed(body, {"content-type": "application/rss+xml"}, "https://blog.example/feed.xml").entries
    assert [e.key for e in again] == [e.key for e in entries]


def test_hash_identity_ignores_feed_level_changes() -> None:
    item = {"title": "Neither", "description": "<p>just text</p>", "date": 1_700_000_000}
    a = parse_feed(rss([item], title="Old title"), {}, "https://blog.example/feed.xml").entries[0]
    b = parse_feed(rss([item], title="New title"), {}, "https://blog.example/feed.xml").entries[0]
    assert a.key == b.key
