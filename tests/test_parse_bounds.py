"""Every parse is bounded in time, one slow feed never delays the others, SIGTERM always stops
Herald, and the smaller bounds of the same issue: deeply nested JSON, the ops server's request
heads.

A parse that is slow *today* may be fast tomorrow (the HTML conversions are being made linear),
so the slow parses here are injected: ``time.sleep`` run in a real worker, a pool whose call for
one feed sleeps, and, for the ``herald`` subprocesses, a ``sitecustomize`` module (on the
subprocess' PYTHONPATH only) that makes ``bot.parse.parse_feed`` hang on a marked body or the
storage fail. Everything else is the real code: forkserver workers, the poller, the ops server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.app import Herald
from bot.errors import ParseError, StorageError
from bot.metrics import Metrics
from bot.ops import HEADER_TIMEOUT, OpsServer
from bot.parse import parse_feed
from bot.parsepool import ParsePool
from tests import hostile
from tests.discord_harness import fake_discord_toml
from tests.faultkit import LogWaiter, herald_config, record
from tests.support import RecordingSink, make_config
from tests.fakediscord import FakeDiscord
from tests.hostile import HostileServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser")

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "fake.bot-token.for-parse-bounds-0123456789"
GONE_WAIT = 10.0  # a killed process is reaped well within this
HUNG = 3600  # seconds an injected parse would take: "for ever", as far as a test is concerned
SLOW_MARKER = b"<!-- herald-test: this feed takes for ever to parse -->"

with open(ROOT / "examples" / "seed-vsoch.rss.xml", "rb") as fh:
    SEED = fh.read()


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


async def gone(pids: list[int], timeout: float = GONE_WAIT) -> list[int]:
    """Waits until none of ``pids`` runs; returns those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        await asyncio.sleep(0.02)  # polling the process table: there is no event for another process' death


def session_processes(sid: int) -> list[int]:
    """Every live process in session ``sid`` (a ``start_new_session`` child and all it started)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):  # fields: state ppid pgrp session …
            found.append(int(entry))
    return found


# --- the pool ----------------------------------------------------------------------------------------


async def test_an_overrunning_parse_is_killed_its_worker_replaced_and_the_others_go_on():
    pool = ParsePool(2, timeout=1.0)
    try:
        first = await pool.parse(SEED, {}, "https://seed.example/feed.xml")
        assert len(first.entries) == 10
        started = time.monotonic()
        slow = asyncio.create_task(pool.call("https://slow.example/feed.xml", time.sleep, HUNG))
        await asyncio.sleep(0)  # the slow call takes its worker first
        innocent = await pool.parse(SEED, {}, "https://seed.example/feed.xml")  # the other worker meanwhile
        assert len(innocent.entries) == 10
        busy = pool.pids()
        with pytest.raises(ParseError, match=r"took too long to parse \(over 1s\).*parse_timeout"):
            await slow
        assert time.monotonic() - started < 30  # the limit, not the hour the call wanted
        killed = [p for p in busy if p not in pool.pids()]
        assert len(killed) == 1, (busy, pool.pids())
        assert await gone(killed) == []
        again = await pool.parse(SEED, {}, "https://seed.example/feed.xml")  # a new worker takes over
        assert again == first
        assert len(pool.pids()) <= 2 and killed[0] not in pool.pids()
    finally:
        pool.close()


async def test_a_cancelled_parse_kills_its_worker_and_close_does_not_wait_for_a_busy_one():
    pool = ParsePool(2, timeout=HUNG)
    try:
        await pool.parse(SEED, {}, "https://seed.example/feed.xml")
        cancelled = asyncio.create_task(pool.call("https://slow.example/a.xml", time.sleep, HUNG))
        left_busy = asyncio.create_task(pool.call("https://slow.example/b.xml", time.sleep, HUNG))
        while pool.busy < 2:  # both calls reached a worker
            await asyncio.sleep(0.01)
        pids = pool.pids()
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert len(pool.pids()) == 1  # the cancelled call's worker is killed, not left parsing
        started = time.monotonic()
        pool.close()
        assert time.monotonic() - started < 5  # close() kills a busy worker instead of waiting for it
        with pytest.raises(ParseError, match="shutting down"):
            await left_busy
        assert await gone(pids) == []
    finally:
        pool.close()


async def test_inline_parsing_stops_waiting_at_the_limit():
    pool = ParsePool(1, inline=True, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ParseError, match="took too long to parse"):
        await pool.call("https://slow.example/feed.xml", time.sleep, 2)  # the thread finishes in the background
    assert time.monotonic() - started < 1.5
    assert len((await pool.parse(SEED, {}, "https://seed.example/feed.xml")).entries) == 10


# --- the poller: one slow feed next to a good one -----------------------------------------------------


class SlowForOneFeed:
    """Makes every parse call for ``url`` hang (in a real worker) until the pool's limit kills it."""

    def __init__(self, pool: ParsePool, url: str) -> None:
        self.url = url
        self.started = asyncio.Event()
        self._call = pool.call
        pool.call = self  # type: ignore[method-assign]

    async def __call__(self, url: str, fn, *args):
        if url == self.url:
            self.started.set()
            return await self._call(url, time.sleep, HUNG)
        return await self._call(url, fn, *args)


STORED_WITHIN = 10.0  # seconds from a poll's log line to its outcome in storage, at most


async def stored_failure(herald: Herald, url: str):
    """The feed's stored state once its failed poll was written (the write follows the log line)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORED_WITHIN
    while True:
        info = next(f for f in await herald.storage.list_feeds() if f.url == url)
        if info.error_count or loop.time() > deadline:
            return info
        await asyncio.sleep(0.05)  # storage has no change notification: asked again, bounded by the deadline


async def test_a_slow_feed_does_not_delay_a_good_one_and_fails_took_too_long(tmp_path, server):
    server.serve("/good.xml", hostile.feed([1]))
    server.serve("/slow.xml", hostile.feed([1]))
    good, slow = server.url("/good.xml"), server.url("/slow.xml")
    config = herald_config(tmp_path, [
        {"url": good, "name": "good", "channels": [1001], "backfill": 1, "interval": "1s"},
        {"url": slow, "name": "slow", "channels": [1002], "backfill": 1, "interval": "1s"},
    ], polling={"parse_timeout": "8s", "parse_workers": 2})
    sink = RecordingSink()
    herald = Herald(config, sink, metrics=Metrics())  # the real worker processes, the real clock
    spy = SlowForOneFeed(herald.parser, slow)
    stop = asyncio.Event()
    await herald.open()
    try:
        with LogWaiter("herald.poll") as logs:
            runner = asyncio.create_task(herald.run(stop))
            await asyncio.wait_for(spy.started.wait(), 20)
            parsing_since = herald.poller.last_cycle
            await sink.wait_until(lambda: sink.announced("channel:1001")["Post 1"] == 1, timeout=20)
            server.serve("/good.xml", hostile.feed([1, 2]))  # a new entry while the slow feed is still parsing
            await sink.wait_until(lambda: sink.announced("channel:1001")["Post 2"] == 1, timeout=20)
            slow_info = next(f for f in await herald.storage.list_feeds() if f.url == slow)
            assert slow_info.last_fetch is None and slow_info.last_error is None  # still in its first parse
            assert server.requests("/good.xml") >= 2 and server.requests("/slow.xml") == 1
            assert herald.poller.last_cycle is not None and herald.poller.last_cycle != parsing_since
            ok, report = await OpsServer(herald, "127.0.0.1:0").health()
            assert ok, report

            message = await logs.wait_for("took too long to parse", timeout=30)
        assert message.startswith(f"feed {slow} failed (1 in a row): took too long to parse (over 8s)")
        # the failure is logged before its outcome is written: wait (bounded) for the write
        slow_info = await stored_failure(herald, slow)
        assert slow_info.error_count == 1 and "took too long to parse" in (slow_info.last_error or "")
        assert slow_info.next_fetch - slow_info.last_fetch >= 27  # backs off (≥ 30 s − jitter), not 1 s
        assert sink.announced("channel:1002") == {}
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
        await herald.close()
    record("a feed whose parse never ends, next to a good feed polled every second", area="feed", runs=1, lost=0,
           duplicated=0, outcome="the good feed's new entry announced while the slow parse ran; after parse_timeout "
           "the worker is killed, the feed fails 'took too long to parse (over 8s)' and backs off ≥ 30 s")


async def test_a_storage_failure_ends_the_cycle_and_cancels_the_polls_still_in_flight(tmp_path, server):
    server.serve("/quick.xml", hostile.feed([1]))
    server.hang("/hung.xml")
    config = herald_config(tmp_path, [{"url": server.url("/quick.xml"), "name": "quick", "channels": [1001]},
                                      {"url": server.url("/hung.xml"), "name": "hung", "channels": [1002]}],
                           polling={"timeout": "60s"})  # the hung fetch would go on for a minute
    herald = Herald(config, RecordingSink(), parse_inline=True)
    await herald.open()
    try:
        async def broken(outcomes):
            raise StorageError("database error: disk I/O error (injected)")

        herald.storage.apply_polls = broken  # type: ignore[method-assign]
        cycle = asyncio.create_task(herald.poller.poll_due())
        await server.wait_arrived("/hung.xml")  # that poll is in flight when the other one's write fails
        with pytest.raises(StorageError, match="injected"):
            await asyncio.wait_for(cycle, 30)
        left = [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "Poller._poll_one"]
        assert left == []  # nothing runs on behind the failed cycle
    finally:
        await herald.close()


# --- herald subprocesses ---------------------------------------------------------------------------------

SITECUSTOMIZE = '''
"""Test-only faults for a `herald` subprocess, chosen by $HERALD_TEST_FAULT."""
import os

_fault = os.environ.get("HERALD_TEST_FAULT")
if _fault == "slow-parse":  # parse_feed hangs on a marked body, after writing its pid to a file
    import time
    import bot.parse

    _real = bot.parse.parse_feed
    _marker = os.environ["HERALD_TEST_SLOW_MARKER"].encode()

    def parse_feed(body, headers=None, url=None, **kw):
        if _marker in body:
            with open(os.environ["HERALD_TEST_PIDS"], "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            while True:
                time.sleep(1)
        return _real(body, headers, url, **kw)

    parse_feed.__module__, parse_feed.__qualname__ = "bot.parse", "parse_feed"
    bot.parse.parse_feed = parse_feed
elif _fault == "storage":  # every poll write fails
    from bot.errors import StorageError
    from bot.storage.sqlite import SQLiteStorage

    async def apply_polls(self, outcomes):
        raise StorageError("database error: disk I/O error (injected)")

    SQLiteStorage.apply_polls = apply_polls
'''


def herald_process(tmp_path: Path, cfg: Path, fault: str, *args: str, **env: str) -> subprocess.Popen:
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    full_env = dict(os.environ, HERALD_TEST_TOKEN=TOKEN, HERALD_TEST_FAULT=fault,
                    PYTHONPATH=os.pathsep.join([str(hooks), str(ROOT)]), **env)
    return subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(cfg), *args], cwd=ROOT,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


async def wait_for_file_line(path: Path, p: subprocess.Popen, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        if p.poll() is not None:
            raise AssertionError(f"herald exited ({p.returncode}) first: {p.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no parse started within {timeout}s")
        await asyncio.sleep(0.05)  # another process writes the file: nothing to wait on but the file itself


def cleanup(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
    for pid in session_processes(p.pid):  # whatever outlived it
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["dry-run", "discord"])
async def test_sigterm_stops_herald_within_10s_while_a_worker_is_parsing_and_leaves_no_process(tmp_path, mode):
    server = HostileServer()
    await server.start()
    pids_file = tmp_path / "parsing.pids"
    try:
        async with FakeDiscord(token=TOKEN) as fake:
            guild = fake.add_guild()
            channels = [fake.add_channel(guild, "hostile"), fake.add_channel(guild, "good")]
            server.serve("/hostile.xml", hostile.feed([1]) + SLOW_MARKER)
            server.serve("/good.xml", hostile.feed([1]))
            cfg = tmp_path / "herald.toml"
            cfg.write_text(fake_discord_toml(fake, tmp_path / "herald.db") + f"""
[polling]
interval = "1s"
timeout = "5s"
parse_timeout = "10m"
[[feeds]]
url = "{server.url('/hostile.xml')}"
channels = [{channels[0]}]
[[feeds]]
url = "{server.url('/good.xml')}"
channels = [{channels[1]}]
""")
            args = ("--dry-run",) if mode == "dry-run" else ()
            p = herald_process(tmp_path, cfg, "slow-parse", *args, HERALD_TEST_SLOW_MARKER=SLOW_MARKER.decode(),
                               HERALD_TEST_PIDS=str(pids_file))
            try:
                worker = await wait_for_file_line(pids_file, p)  # a worker is stuck in the hostile feed's parse
                assert running(worker)
                started = time.monotonic()
                p.send_signal(signal.SIGTERM)
                _out, err = await asyncio.to_thread(p.communicate, timeout=60)
                took = time.monotonic() - started
                left = session_processes(p.pid)
            finally:
                cleanup(p)
    finally:
        await server.close()
    assert p.returncode == 0, err[-3000:]
    assert took < 10, f"took {took:.1f}s"
    assert not running(worker)
    assert left == [], f"processes left behind: {left}"  # no worker, forkserver or resource tracker
    assert "Traceback" not in err, err[-3000:]
    record(f"SIGTERM while a parse worker is stuck ({mode})", area="process", runs=1, lost=0, duplicated=0,
           outcome=f"exit 0 in {took:.1f}s; the busy worker killed; no worker, forkserver or resource tracker left")


@pytest.mark.parametrize("mode", ["dry-run", "discord"])
async def test_once_with_a_failing_database_exits_non_zero_naming_the_error(tmp_path, mode):
    feed = hostile.feed([1, 2])
    path = tmp_path / "f.xml"
    path.write_bytes(feed)
    async with FakeDiscord(token=TOKEN) as fake:
        guild = fake.add_guild()
        channel = fake.add_channel(guild, "news")
        cfg = tmp_path / "herald.toml"
        cfg.write_text(fake_discord_toml(fake, tmp_path / "herald.db") + f"""
[[feeds]]
url = "{path.as_uri()}"
channels = [{channel}]
backfill = 1
""")
        args = ("--once", "--dry-run") if mode == "dry-run" else ("--once",)
        p = herald_process(tmp_path, cfg, "storage", *args)
        try:
            _out, err = await asyncio.to_thread(p.communicate, timeout=60)  # a hang fails here
        finally:
            cleanup(p)
        assert p.returncode == 1, err[-3000:]
        expected = "the poll cycle failed" if mode == "dry-run" else "the pipeline stopped"
        assert f"{expected}: database error: disk I/O error (injected)" in err, err[-3000:]
        assert fake.messages(channel) == []
    record(f"--once with every poll write failing ({mode})", area="storage", runs=1, lost=0, duplicated=0,
           outcome=f"exit 1 with '{expected}: database error: …'; nothing sent, nothing left running")


# --- deeply nested JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["document", "items", "title"])
async def test_deeply_nested_json_is_not_a_feed(where):
    deep = "[" * 100_000 + "]" * 100_000
    doc = {
        "document": deep,
        "items": '{"version": "https://jsonfeed.org/version/1.1", "items": ' + deep + "}",
        "title": '{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "title": '
                 + "[" * 990 + "]" * 990 + "}]}",
    }[where].encode()
    headers = {"content-type": "application/feed+json"}
    if where == "title":  # about as deep as json.loads goes: parsed, or "not a feed", never a RecursionError
        try:
            parse_feed(doc, headers, "https://json.example/feed.json")
        except ParseError as exc:
            assert "nested too deeply" in str(exc)
        return
    with pytest.raises(ParseError, match=r"^not a feed \(the JSON is nested too deeply"):
        parse_feed(doc, headers, "https://json.example/feed.json")
    pool = ParsePool(1)
    try:
        with pytest.raises(ParseError, match="nested too deeply"):
            await pool.parse(doc, headers, "https://json.example/feed.json")
    finally:
        pool.close()


# --- the ops server's request heads ---------------------------------------------------------------------


@pytest.fixture
async def ops(tmp_path):
    config = make_config(tmp_path, [{"url": (tmp_path / "f.xml").as_uri(), "channels": [1]}],
                         http={"listen": "127.0.0.1:0"})
    async with (Herald(config, RecordingSink(), parse_inline=True, metrics=Metrics()) as herald,
                OpsServer(herald, config.http.listen) as server):
        yield server


async def test_a_100kb_header_gets_a_4xx_and_no_traceback(ops, caplog):
    caplog.set_level(logging.DEBUG)
    statuses = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", ops.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 10)
        statuses.append(int(head.split()[1]))
        writer.close()
    assert all(400 <= s < 500 for s in statuses), statuses
    assert [r for r in caplog.records if r.exc_info] == []
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "aaaa" not in refused[0], refused  # one line for three, none of the request
    status, _ = await asyncio.wait_for(_get(ops.port, "/healthz"), 10)  # the server still answers
    assert status == 200
    record("ops server: 100 KB request header (3×)", area="security", runs=3, lost=0, duplicated=0,
           outcome=f"HTTP {statuses[0]} each time; one warning line, no traceback, none of the header logged")


async def test_a_connection_that_sends_half_a_header_and_waits_is_closed(ops):
    reader, writer = await asyncio.open_connection("127.0.0.1", ops.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ab")
    await writer.drain()
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + 10)  # b"" once the server closes it
    took = time.monotonic() - started
    writer.close()
    assert data == b""
    assert took < HEADER_TIMEOUT + 3, took
    record("ops server: half a request header, then silence", area="security", runs=1, lost=0, duplicated=0,
           outcome=f"connection closed after {took:.1f}s (limit {HEADER_TIMEOUT:g}s)")


async def _get(port: int, path: str) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)
