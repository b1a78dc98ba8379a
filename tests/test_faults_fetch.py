"""The fetcher against hostile servers: every failure is a FetchError with a clear message,
bounded in time and memory, and the SSRF guard holds on every hop and against rebinding."""

from __future__ import annotations

import gzip
import socket
import time
import tracemalloc
import zlib

import pytest
from aiohttp.abc import AbstractResolver

from bot.errors import FeedGone, FetchError, FetchTimeout, TooLarge
from bot.fetch import Fetcher
from tests import hostile
from tests.faultkit import record
from tests.hostile import HostileServer, server  # noqa: F401 - the fixture


def fetcher(**kw) -> Fetcher:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("max_bytes", 1_000_000)
    kw.setdefault("allow_private", True)
    return Fetcher(**kw)


async def fetch_error(f: Fetcher, url: str, **kw) -> FetchError:
    with pytest.raises(FetchError) as info:
        await f.fetch(url, guarded=False, **kw)
    return info.value


# --- size and time bounds ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compression_bomb_is_cut_at_max_bytes_without_ballooning(server, encoding):
    """1 GiB of zeros compressed to about 1 MiB, sent 64 KiB (64 MiB inflated) per network chunk."""
    server.gzip_bomb("/bomb.xml", encoding=encoding)
    max_bytes = 1_000_000
    async with fetcher(max_bytes=max_bytes, timeout=20) as f:
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(TooLarge) as info:
                await f.fetch(server.url("/bomb.xml"), guarded=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - started
    assert "max_bytes" in str(info.value)
    # the inflated data held at once stays within a small multiple of max_bytes (an unbounded
    # inflate of one 64 KiB chunk alone would be 64 MiB)
    assert peak < 4 * max_bytes + 2_000_000, f"peak {peak / 1e6:.1f} MB"
    assert server.bytes_sent["/bomb.xml"] < 2_000_000  # it stopped reading: far from the whole gigabyte
    assert elapsed < 5
    record(f"{encoding} bomb, 64 MiB inflated per network chunk", area="fetch", runs=1, lost=0, duplicated=0,
           outcome=f"cut at max_bytes; peak traced memory {peak / 1e6:.1f} MB for max_bytes {max_bytes / 1e6:.0f} MB")


async def test_compressed_feeds_still_decode(server):
    body = hostile.feed(range(3))
    server.set("/gz.xml", gzip.compress(body), etag=None, headers={"Content-Encoding": "gzip"})
    server.set("/zlib.xml", zlib.compress(body), etag=None, headers={"Content-Encoding": "deflate"})
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    server.set("/raw.xml", raw.compress(body) + raw.flush(), etag=None, headers={"Content-Encoding": "deflate"})
    async with fetcher() as f:
        for path in ("/gz.xml", "/zlib.xml", "/raw.xml"):
            res = await f.fetch(server.url(path), guarded=False)
            assert res.body == body, path
            assert "content-encoding" not in res.headers
        sent = server.last_request_headers("/gz.xml")
    assert sent["Accept-Encoding"] == "gzip, deflate"


async def test_broken_compression_is_a_clear_error(server):
    body = gzip.compress(hostile.feed(range(3)))
    server.set("/cut.xml", body[: len(body) // 2], etag=None, headers={"Content-Encoding": "gzip"})
    server.set("/junk.xml", b"this is not gzip at all", etag=None, headers={"Content-Encoding": "gzip"})
    server.set("/br.xml", b"\x00\x01", etag=None, headers={"Content-Encoding": "br"})
    async with fetcher() as f:
        assert "truncated" in str(await fetch_error(f, server.url("/cut.xml")))
        assert "not valid gzip" in str(await fetch_error(f, server.url("/junk.xml")))
        assert "unsupported Content-Encoding 'br'" in str(await fetch_error(f, server.url("/br.xml")))


async def test_oversized_bodies(server):
    server.oversized("/declared.xml", 50_000_000)
    server.oversized("/chunked.xml", 50_000_000, declare_length=False)
    server.infinite("/infinite.xml")
    async with fetcher() as f:
        err = await fetch_error(f, server.url("/declared.xml"))
        assert isinstance(err, TooLarge) and "50000000 bytes is over max_bytes" in str(err)
        for path in ("/chunked.xml", "/infinite.xml"):
            err = await fetch_error(f, server.url(path))
            assert isinstance(err, TooLarge) and "over max_bytes (1000000 bytes)" in str(err)
    assert server.bytes_sent["/infinite.xml"] < 20_000_000


async def test_hang_and_trickle_hit_the_whole_request_timeout(server):
    server.hang("/hang.xml")
    body = hostile.feed(range(2))
    server.trickle("/trickle.xml", body, interval=0.2)  # bytes keep coming: only a whole-request timeout ends it
    async with fetcher(timeout=1.0) as f:
        for path in ("/hang.xml", "/trickle.xml"):
            started = time.monotonic()
            err = await fetch_error(f, server.url(path))
            elapsed = time.monotonic() - started
            assert isinstance(err, FetchTimeout) and str(err) == "timed out after 1s", path
            assert 0.9 < elapsed < 3, (path, elapsed)
    assert 2 <= server.bytes_sent["/trickle.xml"] < len(body)


async def test_status_errors_and_retry_after(server):
    server.error("/500.xml", 500)
    server.error("/502.xml", 502)
    server.error("/404.xml", 404)
    server.error("/410.xml", 410)
    server.error("/503.xml", 503, retry_after=120)
    server.error("/429.xml", 429, retry_after=server.http_date(3600))
    async with fetcher() as f:
        assert str(await fetch_error(f, server.url("/500.xml"))) == "HTTP 500 Internal Server Error"
        assert str(await fetch_error(f, server.url("/502.xml"))) == "HTTP 502 Bad Gateway"
        assert str(await fetch_error(f, server.url("/404.xml"))) == "HTTP 404 Not Found"
        assert isinstance(await fetch_error(f, server.url("/410.xml")), FeedGone)
        err = await fetch_error(f, server.url("/503.xml"))
        assert err.status == 503 and err.retry_after == 120 and "retry after 120s" in str(err)
        err = await fetch_error(f, server.url("/429.xml"))
        assert err.status == 429 and 3590 <= err.retry_after <= 3600


async def test_redirect_loop_and_permanent_redirects(server):
    server.redirect_loop("/a.xml", "/b.xml")
    server.redirect("/old.xml", "/mid.xml", 301)
    server.redirect("/mid.xml", "/new.xml", 308)
    server.redirect("/temp.xml", "/new.xml", 302)
    server.serve("/new.xml", hostile.feed(range(2)))
    async with fetcher() as f:
        assert "more than 5 redirects" in str(await fetch_error(f, server.url("/a.xml")))
        res = await f.fetch(server.url("/old.xml"), guarded=False)
        assert res.permanent_url == server.url("/new.xml") and res.status == 200
        res = await f.fetch(server.url("/temp.xml"), guarded=False)
        assert res.permanent_url is None and res.url == server.url("/new.xml")
    assert server.arrived("/a.xml") + server.arrived("/b.xml") == 6  # the first request and five redirects


# --- SSRF: redirects and DNS rebinding ------------------------------------------------------------


class FakeDNS(AbstractResolver):
    """Answers from a table; a list of answers per name is used one call at a time (rebinding)."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        self.calls.append(host)
        answers = self.table[host]
        ips = answers.pop(0) if len(answers) > 1 else answers[0]
        return [{"hostname": host, "host": ip, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST} for ip in ips]

    async def close(self) -> None:
        pass


@pytest.fixture
async def internal():
    """A server on 127.0.0.2: the 'internal' service a feed must never reach."""
    s = HostileServer(host="127.0.0.2")
    try:
        await s.start()
    except OSError:
        pytest.skip("127.0.0.2 is not available for binding here")
    s.serve("/secret", b"internal data")
    try:
        yield s
    finally:
        await s.close()


def guarded_fetcher(dns: FakeDNS) -> Fetcher:
    # 127.0.0.1 plays a public host; every other loopback address stays internal
    return Fetcher(timeout=2.0, max_bytes=1_000_000, resolver=dns, public_addresses=frozenset({"127.0.0.1"}))


async def test_guarded_redirects_to_internal_addresses_are_refused(server, internal):
    port = internal.port
    server.redirect("/to-literal.xml", f"http://127.0.0.2:{port}/secret")
    server.redirect("/to-metadata.xml", "http://169.254.169.254/latest/meta-data/")
    server.redirect("/to-name.xml", f"http://intranet.test:{port}/secret")
    server.redirect("/to-localhost.xml", f"http://localhost:{port}/secret")
    server.redirect("/hop1.xml", "/hop2.xml", 301)
    server.redirect("/hop2.xml", f"http://intranet.test:{port}/secret", 308)
    server.serve("/ok.xml", hostile.feed(range(1)))
    dns = FakeDNS({"feeds.test": [["127.0.0.1"]], "intranet.test": [["127.0.0.2"]]})
    base = f"http://feeds.test:{server.port}"
    async with guarded_fetcher(dns) as f:
        assert (await f.fetch(f"{base}/ok.xml")).status == 200  # the 'public' host itself is fine
        for path, why in (("/to-literal.xml", "127.0.0.2 is a loopback address"),
                          ("/to-metadata.xml", "169.254.169.254 is a link-local address"),
                          ("/to-name.xml", "intranet.test resolves to a refused address"),
                          ("/to-localhost.xml", "localhost is a local name"),
                          ("/hop1.xml", "intranet.test resolves to a refused address")):
            with pytest.raises(FetchError) as info:
                await f.fetch(f"{base}{path}")
            assert why in str(info.value), (path, str(info.value))
    assert internal.requests("/secret") == 0
    record("redirects to internal addresses (5 kinds, guarded fetch)", area="security", runs=5, lost=0, duplicated=0,
           outcome="refused at the hop that leaves the public internet; the internal server got 0 requests")


async def test_dns_rebinding_connects_to_the_checked_address(server, internal):
    """The name answers a public address first and the internal one afterwards: the fetch
    resolves once, checks, and connects to what it checked."""
    port = server.port
    internal_port = internal.port
    server.serve("/feed.xml", hostile.feed(range(1)))
    internal.serve("/feed.xml", b"internal data")
    dns = FakeDNS({"rebind.test": [["127.0.0.1"], ["127.0.0.2"], ["127.0.0.2"]],
                   "mixed.test": [["127.0.0.2", "127.0.0.1"]]})
    async with guarded_fetcher(dns) as f:
        for _ in range(3):  # the cached, checked answer is what later fetches use too
            res = await f.fetch(f"http://rebind.test:{port}/feed.xml")
            assert b"<rss" in res.body
        res = await f.fetch(f"http://mixed.test:{port}/feed.xml")  # the internal answer is dropped
        assert b"<rss" in res.body
    assert internal.requests("/feed.xml") == 0
    assert server.requests("/feed.xml") == 4
    assert dns.calls.count("rebind.test") == 1  # resolved once, checked, and that address used
    # and a name that only ever answers internally is refused
    dns2 = FakeDNS({"evil.test": [["127.0.0.2"]]})
    async with guarded_fetcher(dns2) as f:
        with pytest.raises(FetchError) as info:
            await f.fetch(f"http://evil.test:{internal_port}/feed.xml")
    assert "refused" in str(info.value)
    assert internal.requests("/feed.xml") == 0
    record("DNS rebinding (public, then internal answer)", area="security", runs=4, lost=0, duplicated=0,
           outcome="connects only to the address it checked; the internal server got 0 requests")
