"""SSRF: a URL given in Discord never reaches a private address, whatever its spelling.

The host is judged as the HTTP client reads it (IDNA/UTS-46 mapping, then the IPv4 number
forms ``inet_aton`` accepts), on the URL given, on every redirect hop (raw UTF-8 bytes in a
``Location`` included) and on every autodiscovered link, and the connection goes to what
was judged. An internal listener on 127.0.0.2 counts what reaches it: nothing may.
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import FetchError, UnsafeURL, UserError
from bot.fetch import Fetcher
from bot.manage import validate_feed_url
from bot.netguard import (SPECIAL_PURPOSE_IPV4, SPECIAL_PURPOSE_IPV6, address_problem, check_url, fold_host,
                          parse_ipv4_number)
from bot.parsepool import ParsePool
from tests import hostile
from tests.faultkit import record
from tests.hostile import HostileServer
from tests.test_faults_fetch import FakeDNS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser")

# --- every spelling of an internal host, through check_url ---------------------------------------

# (host as written in the URL, what the refusal must name)
REFUSED = [
    # Unicode digits and dots that IDNA maps onto an IPv4 address
    ("１２７.０.０.２:8080", "127.0.0.2"),  # fullwidth digits
    ("１２７．０．０．２", "127.0.0.2"),  # fullwidth digits and full stops (U+FF0E)
    ("127．0．0．1", "127.0.0.1"),  # U+FF0E
    ("127。0。0。1", "127.0.0.1"),  # ideographic full stop U+3002
    ("127｡0｡0｡1", "127.0.0.1"),  # halfwidth ideographic full stop U+FF61
    ("①②⑦.⓪.⓪.①", "127.0.0.1"),  # circled digits
    ("𝟏𝟐𝟕.𝟎.𝟎.𝟏", "127.0.0.1"),  # mathematical bold digits
    ("𝟙𝟚𝟟.0.0.1", "127.0.0.1"),  # mathematical double-struck digits
    ("١٢٧.٠.٠.١", "127.0.0.1"),  # Arabic-Indic digits (IDNA leaves them as a name)
    ("12⓵.0.0.1", "121.0.0.1"),  # double circled digit: NFKC leaves it, its digit value counts
    ("١٢٧.0.0.1", "127.0.0.1"),  # mixed
    ("۱۲۷.0.0.1", "127.0.0.1"),  # extended Arabic-Indic digits
    ("1２7.0.0.1", "127.0.0.1"),  # one fullwidth digit
    ("１０.０.０.１", "10.0.0.1"),
    ("10。1。2。3", "10.1.2.3"),
    ("１６９.２５４.１６９.２５４", "169.254.169.254"),
    ("169。254。169。254", "169.254.169.254"),
    ("０x7f.1", "127.0.0.1"),  # fullwidth zero before hex
    ("127.0.0.1｡", "127.0.0.1"),  # a trailing halfwidth ideographic full stop
    # IPv4 number forms inet_aton accepts
    ("2130706433", "127.0.0.1"),  # decimal
    ("2130706434", "127.0.0.2"),
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("017700000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),  # hex, short
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0x7F.0x0.0x0.0x1", "127.0.0.1"),
    ("0xa9.254.169.254", "169.254.169.254"),
    ("127.1", "127.0.0.1"),  # short
    ("10.1", "10.0.0.1"),
    ("0", "0.0.0.0"),
    ("127.0.0.1.", "127.0.0.1"),  # trailing dot
    ("127.0.0.1..", "127.0.0.1"),
    ("1.2.3.4.5", "not a valid host"),
    ("256.0.0.1", "not a valid host"),
    ("09.0.0.1", "not a valid host"),
    ("1.2.3.0x", "not a valid host"),
    ("%31%32%37.0.0.1", "not a valid host"),  # percent-encoded digits
    # IPv6 literals, embedded IPv4 and zones
    ("[::ffff:127.0.0.1]", "127.0.0.1"),  # IPv4-mapped
    ("[::ffff:7f00:1]", "127.0.0.1"),
    ("[0:0:0:0:0:ffff:169.254.169.254]", "169.254.169.254"),
    ("[::127.0.0.1]", "IPv4-compatible"),
    ("[64:ff9b::7f00:1]", "127.0.0.1"),  # NAT64
    ("[64:ff9b:1::a00:1]", "local-use"),
    ("[2002:7f00:1::]", "127.0.0.1"),  # 6to4
    ("[2002:a9fe:a9fe::1]", "169.254.169.254"),
    ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "Teredo"),
    ("[fe80::1%25eth0]", "zone"),
    ("[fe80::1]", "link-local"),
    ("[fec0::1]", "site-local"),
    ("[3fff::1]", "documentation"),
    ("[2001:db8::1]", "documentation"),
    ("[fc00::1]", "unique local"),
    ("[fd12:3456::1]", "unique local"),
    ("[::1]", "loopback"),
    ("[::]", "unspecified"),
    ("[ff02::1]", "multicast"),
    ("[100::1]", "discard-only"),
    ("[5f00::1]", "SRv6"),
    ("[2001:2::1]", "benchmarking"),
    ("[4000::1]", "outside the global unicast range"),
    # IPv4 special-purpose ranges
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network"),
    ("127.0.0.2", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("192.0.0.8", "dummy"),
    ("192.0.0.170", "NAT64/DNS64"),
    ("192.0.2.1", "TEST-NET-1"),
    ("198.51.100.1", "TEST-NET-2"),
    ("203.0.113.1", "TEST-NET-3"),
    ("198.18.0.1", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    # local names, however written
    ("localhost", "local name"),
    ("localhost.", "local name"),
    ("LOCALHOST", "local name"),
    ("ｌｏｃａｌｈｏｓｔ", "local name"),
    ("printer.local", "local name"),
    ("metadata.google.internal.", "local name"),
    ("router.home.arpa", "local name"),
    ("ex ample.com", "not a valid host name"),
]


@pytest.mark.parametrize("host,named", REFUSED, ids=[h for h, _ in REFUSED])
def test_every_spelling_of_an_internal_host_is_refused(host, named):
    with pytest.raises(UnsafeURL) as info:
        check_url(f"http://{host}/feed.xml")
    assert named in str(info.value), str(info.value)
    # the same host reached by a redirect Location relative to a public page
    with pytest.raises(UnsafeURL):
        check_url(f"//{host}/feed.xml", base=check_url("https://blog.example/page"))


ALLOWED = [
    ("example.com", "example.com"),
    ("Example.COM.", "example.com."),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("1e100.net", "1e100.net"),
    ("8.8.8.8", "8.8.8.8"),
    ("192.31.196.1", "192.31.196.1"),  # AS112: special-purpose, but globally reachable
    ("[2001:4860::8888]", "2001:4860::8888"),
    ("[2620:4f:8000::1]", "2620:4f:8000::1"),  # AS112-v6
    ("[::ffff:8.8.8.8]", "::ffff:808:808"),  # mapped onto a public address
    ("[64:ff9b::808:808]", "64:ff9b::808:808"),  # NAT64 of a public address
]


@pytest.mark.parametrize("host,raw", ALLOWED, ids=[h for h, _ in ALLOWED])
def test_public_names_and_addresses_stay_allowed(host, raw):
    url = check_url(f"https://{host}/feed.xml")
    assert url.raw_host == raw  # the parsed URL returned is what aiohttp connects to


def test_public_addresses_in_unicode_or_number_forms_are_refused_with_the_plain_spelling():
    """Nothing is gained by an odd spelling of a public address: Herald says how to write it."""
    for host in ("８.８.８.８", "134744072", "0x8.0x8.0x8.0x8", "8.8.8.8."):
        with pytest.raises(UnsafeURL) as info:
            check_url(f"http://{host}/")
        assert "write the address as 8.8.8.8" in str(info.value), host


def test_undecodable_location_bytes_are_refused():
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates
    with pytest.raises(UnsafeURL) as info:
        check_url("http://\udcff\udcfe/feed", base=check_url("https://blog.example/"))
    assert "not UTF-8" in str(info.value)


@pytest.mark.parametrize("table", [SPECIAL_PURPOSE_IPV4, SPECIAL_PURPOSE_IPV6])
def test_every_range_of_the_special_purpose_tables_is_refused_first_to_last(table):
    for r in table:
        for addr in (r.network.network_address, r.network.broadcast_address):
            problem = address_problem(str(addr))
            assert problem is not None, (r, addr)
            assert str(addr) in problem


def test_resolved_addresses_are_judged_with_the_same_tables():
    for ip in ("fec0::1", "3fff::1", "100.64.0.1", "192.0.0.8", "::ffff:127.0.0.1", "fe80::1%eth0"):
        assert address_problem(ip) is not None, ip
    for ip in ("8.8.8.8", "2001:4860::8888", "::ffff:8.8.8.8"):
        assert address_problem(ip) is None, ip


def test_fold_host_reads_unicode_digits_and_dots_like_idna():
    assert fold_host("１２７。０．０｡①") == "127.0.0.1"
    assert fold_host("١٢٧.۰.𝟎.⓵") == "127.0.0.1"
    assert fold_host("Bücher.Example") == "bücher.example"


_NUMBER_LABEL = st.one_of(
    st.integers(0, 2**32 - 1).map(str),
    st.integers(0, 2**32 - 1).map(lambda n: f"0x{n:x}"),
    st.integers(0, 2**32 - 1).map(lambda n: f"0X{n:X}"),
    st.integers(0, 2**32 - 1).map(lambda n: f"0{n:o}"),
    st.text(alphabet="0123456789abcdefxX", min_size=0, max_size=6),
)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.lists(_NUMBER_LABEL, min_size=1, max_size=5).map(".".join),
                 st.text(alphabet="0123456789abcdefxX.", max_size=24)))
def test_numeric_hosts_are_read_exactly_as_the_resolver_reads_them(host):
    """parse_ipv4_number agrees with inet_aton (what getaddrinfo applies to a name) on every
    string of digits, hex letters, x and dots: no spelling means one address to Herald and
    another to the resolver."""
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert parse_ipv4_number(host) == expected


# --- end to end: an internal listener that must see no request --------------------------------


@pytest.fixture
async def internal():
    """A real aiohttp server on 127.0.0.2 with a feed on it: the internal service. It is shown
    to answer an unguarded fetch (on /alive) first, so that 0 requests on /feed means refused,
    not unreachable."""
    s = HostileServer(host="127.0.0.2")
    try:
        await s.start()
    except OSError:
        pytest.skip("127.0.0.2 is not available for binding here")
    s.serve("/feed", hostile.feed(range(3), title="Internal secrets"))
    s.serve("/alive", hostile.feed(range(1), title="Internal secrets"))
    try:
        async with Fetcher(timeout=5.0, allow_private=True) as f:
            res = await f.fetch(f"http://127.0.0.2:{s.port}/alive", guarded=False)
        assert b"Internal secrets" in res.body
        yield s
    finally:
        await s.close()


def _fetcher() -> Fetcher:
    # feeds.test is the 'public' host (127.0.0.1 plays a public address); 127.0.0.2 stays internal
    dns = FakeDNS({"feeds.test": [["127.0.0.1"]], "xn--bcher-kva.test": [["127.0.0.1"]],
                   "intranet.test": [["127.0.0.2"]]})
    return Fetcher(timeout=5.0, max_bytes=1_000_000, resolver=dns, public_addresses=frozenset({"127.0.0.1"}))


def _spellings(port: int) -> list[str]:
    return [f"http://１２７.０.０.２:{port}/feed", f"http://127。0。0。2:{port}/feed", f"http://①②⑦.⓪.⓪.②:{port}/feed",
            f"http://127．0．0．2:{port}/feed", f"http://0x7f.0.0.2:{port}/feed", f"http://2130706434:{port}/feed",
            f"http://0177.0.0.2:{port}/feed", f"http://127.0.0.2.:{port}/feed", f"http://[::ffff:127.0.0.2]:{port}/feed",
            f"http://intranet.test:{port}/feed"]  # a name: judged by the resolver at connect time


async def test_validate_feed_url_refuses_every_spelling_of_the_internal_host(internal):
    parser = ParsePool(inline=True)
    async with _fetcher() as f:
        for url in _spellings(internal.port):
            with pytest.raises(UserError) as info:
                await validate_feed_url(url, f, parser, allow_private=False)
            assert "refused" in str(info.value) and "127.0.0.2" in str(info.value), (url, str(info.value))
            # and a later poll of the URL, had it been stored, fetches nothing either
            with pytest.raises((UnsafeURL, FetchError)) as poll:
                await f.fetch(url, guarded=True)
            assert "127.0.0.2" in str(poll.value)
    assert internal.requests("/feed") == 0
    record("/feed add with Unicode and numeric spellings of an internal address", area="security",
           runs=len(_spellings(internal.port)), lost=0, duplicated=0,
           outcome="refused before any connection; the internal server got 0 requests")


async def test_a_redirect_with_a_raw_utf8_location_to_the_internal_host_is_refused(server, internal):
    port = internal.port
    server.redirect("/moved.xml", f"http://１２７.０.０.２:{port}/feed")
    server.redirect("/moved-relative.xml", f"//１２７．０．０．２:{port}/feed", 301)
    server.redirect("/moved-hex.xml", f"http://0x7f.0.0.2:{port}/feed", 307)
    # the Location goes over the wire as raw UTF-8 bytes
    async with aiohttp.ClientSession() as s, s.get(server.url("/moved.xml"), allow_redirects=False) as resp:
        raw = dict(resp.raw_headers)[b"Location"]
    assert raw == f"http://１２７.０.０.２:{port}/feed".encode()
    server.serve("/feed.xml", hostile.feed(range(2), title="Public feed"))
    server.redirect("/old.xml", "/feed.xml", 301)
    parser = ParsePool(inline=True)
    async with _fetcher() as f:
        # the guard refuses spellings, not feeds: a public redirect (and an IDN host) still work
        checked = await validate_feed_url(f"http://feeds.test:{server.port}/old.xml", f, parser, allow_private=False)
        assert checked.feed.title == "Public feed" and checked.url == f"http://feeds.test:{server.port}/feed.xml"
        assert (await f.fetch(f"http://bücher.test:{server.port}/feed.xml")).status == 200
        for path in ("/moved.xml", "/moved-relative.xml", "/moved-hex.xml"):
            with pytest.raises(UserError) as info:
                await validate_feed_url(f"http://feeds.test:{server.port}{path}", f, parser, allow_private=False)
            text = str(info.value)
            assert "redirect to a refused URL" in text and "127.0.0.2" in text, (path, text)
    assert server.arrived("/moved.xml") == 2 and server.arrived("/moved-hex.xml") == 1  # the public hop was made
    assert internal.requests("/feed") == 0
    record("redirect whose raw UTF-8 Location spells an internal address", area="security", runs=3, lost=0,
           duplicated=0, outcome="refused at the hop; the internal server got 0 requests")


async def test_an_autodiscovered_link_to_the_internal_host_is_refused(server, internal):
    port = internal.port
    for path, href in (("/page.html", f"http://１２７.０.０.２:{port}/feed"),
                       ("/page2.html", f"http://①②⑦.⓪.⓪.②:{port}/feed"),
                       ("/page3.html", f"http://127.2:{port}/feed"),
                       ("/page4.html", f"http://&#xFF11;&#xFF12;&#xFF17;&#x3002;0&#x3002;0&#x3002;2:{port}/feed")):
        server.serve(path, (f'<!DOCTYPE html><html><head><title>Blog</title><link rel="alternate" '
                            f'type="application/rss+xml" href="{href}"></head><body>hi</body></html>').encode(),
                     "text/html; charset=utf-8")
    parser = ParsePool(inline=True)
    async with _fetcher() as f:
        for path in ("/page.html", "/page2.html", "/page3.html", "/page4.html"):
            with pytest.raises(UserError) as info:
                await validate_feed_url(f"http://feeds.test:{server.port}{path}", f, parser, allow_private=False)
            text = str(info.value)
            assert "advertises a feed at a refused URL" in text and "127.0.0.2" in text, (path, text)
            assert server.requests(path) == 1
    assert internal.requests("/feed") == 0
    record("autodiscovery link spelling an internal address", area="security", runs=4, lost=0, duplicated=0,
           outcome="refused before fetching the link; the internal server got 0 requests")


async def test_a_stored_feed_with_a_spoofed_host_fails_its_polls_cleanly_and_fetches_nothing(tmp_path, server, internal,
                                                                                           caplog):
    """A feed stored before this guard (the bypass let /feed add store it) keeps being polled:
    each poll is refused before any connection and recorded as the feed's error, like any
    failing feed (backoff, then a pause), not as an internal error with a traceback."""
    from tests.test_faults import Rig

    rig = await Rig.start(tmp_path, server, guarded_victim=True)
    try:
        server.serve("/victim.xml", hostile.feed(range(1)))
        await rig.herald.storage.add_feed(f"http://１２７.０.０.２:{internal.port}/feed", target="channel:3003",
                                          guild_id=1, name="spoofed", backfill=1, now=rig.clock())
        await rig.cycle(publish_control=False)
        info = await rig.info("spoofed")
        assert info.error_count == 1 and info.last_error is not None
        assert info.last_error.startswith("refused: ") and "127.0.0.2 is a loopback address" in info.last_error
        assert "internal error" not in info.last_error
        assert not [r for r in caplog.records if "unexpected error while polling" in r.getMessage()]
    finally:
        await rig.close()
    assert internal.requests("/feed") == 0
