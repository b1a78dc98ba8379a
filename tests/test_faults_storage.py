"""Storage faults: the database locked by another process, the disk full, the file deleted.
Defined outcomes: Herald waits or reports the error clearly, marks nothing delivered that was
not, stores polls all-or-nothing, and carries on once the database is usable again."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.app import Herald
from bot.errors import StorageError
from tests import hostile
from tests.faultkit import LogWaiter, herald_config, record, tally
from tests.support import Clock, RecordingSink
from tests.hostile import server  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser")

CHANNEL = "channel:1001"

LOCKER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # held until the test says so
con.execute("COMMIT")
print("released", flush=True)
"""


class Locker:
    """Another process holding the database's write lock until ``release()``."""

    def __init__(self, db: Path) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    async def locked(self) -> None:
        line = await asyncio.wait_for(asyncio.to_thread(self.p.stdout.readline), 30)
        assert line.strip() == "locked"

    async def release(self) -> None:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        line = await asyncio.wait_for(asyncio.to_thread(self.p.stdout.readline), 30)
        assert line.strip() == "released"
        await asyncio.to_thread(self.p.wait, 30)


async def open_herald(tmp_path, server, clock, sink, *, backfill: int = 1, db: str = "herald.db") -> Herald:
    config = herald_config(tmp_path, [{"url": server.url("/f.xml"), "name": "f", "channels": [1001],
                                       "backfill": backfill}], polling={"timeout": "5s"}, db=db)
    herald = Herald(config, sink, clock=clock, parse_inline=True)
    await herald.open()
    return herald


async def cycle(herald: Herald) -> None:
    await herald.poller.poll_due()
    await herald.worker.deliver_due()


async def test_database_locked_briefly_herald_waits_and_carries_on(tmp_path, server):
    clock, sink = Clock(), RecordingSink()
    server.serve("/f.xml", hostile.feed([0, 1, 2]))
    herald = await open_herald(tmp_path, server, clock, sink)
    try:
        await cycle(herald)
        locker = Locker(tmp_path / "herald.db")
        await locker.locked()
        server.serve("/f.xml", hostile.feed([0, 1, 2, 3, 4]))
        clock.advance(700)
        poll = asyncio.create_task(herald.poller.poll_due())
        done, _ = await asyncio.wait({poll}, timeout=1.0)  # the poll is waiting for the lock, not failing
        assert not done
        held_since = time.monotonic()
        await locker.release()
        stats = await asyncio.wait_for(poll, 30)
        await herald.worker.deliver_due()
        assert stats.errors == 0 and stats.stored == 2
        assert time.monotonic() - held_since < 10
    finally:
        await herald.close()
    lost, duplicated = tally(sink.announced(CHANNEL), ["Post 2", "Post 3", "Post 4"])
    assert (lost, duplicated) == (0, 0)
    record("database locked by another process (< busy timeout)", area="storage", runs=1, lost=lost,
           duplicated=duplicated, outcome="the write waits for the lock, then the cycle completes")


async def test_database_locked_longer_than_the_busy_timeout_is_logged_and_retried(tmp_path, server):
    clock, sink = Clock(), RecordingSink()
    server.serve("/f.xml", hostile.feed([0, 1, 2]))
    herald = await open_herald(tmp_path, server, clock, sink)
    stop = asyncio.Event()
    try:
        await cycle(herald)
        await herald.storage.db.execute("PRAGMA busy_timeout = 300")  # 30 s in production; short here
        locker = Locker(tmp_path / "herald.db")
        await locker.locked()
        server.serve("/f.xml", hostile.feed([0, 1, 2, 3, 4]))
        clock.advance(700)
        with LogWaiter("herald.poll") as logs:
            runner = asyncio.create_task(herald.run(stop))  # the real loops, with their error handling
            message = await logs.wait_for("database is locked")
        assert message == "storage error while polling: database error: database is locked"
        assert sink.announced(CHANNEL) == {"Post 2": 1}
        await locker.release()
        herald.poller.wake()  # (it would retry by itself within 30 s)
        await sink.wait_until(lambda: sum(sink.announced(CHANNEL).values()) == 3)
        stop.set()
        await asyncio.wait_for(runner, 30)
    finally:
        stop.set()
        await herald.close()
    lost, duplicated = tally(sink.announced(CHANNEL), ["Post 2", "Post 3", "Post 4"])
    assert (lost, duplicated) == (0, 0)
    record("database locked longer than the busy timeout", area="storage", runs=1, lost=lost, duplicated=duplicated,
           outcome="'storage error while polling: database error: database is locked' logged; next cycle catches up")


async def test_disk_full_stores_nothing_marks_nothing_and_resumes_when_space_returns(tmp_path, server, caplog):
    caplog.set_level(logging.ERROR, logger="herald")
    clock, sink = Clock(), RecordingSink()
    server.serve("/f.xml", hostile.feed([0, 1, 2]))
    herald = await open_herald(tmp_path, server, clock, sink)
    storage = herald.storage
    try:
        await cycle(herald)
        pages = (await storage.db.fetchone("PRAGMA page_count"))[0]
        await storage.db.fetchone(f"PRAGMA max_page_count = {pages}")  # the disk is full: the file cannot grow
        big = "<p>" + "lorem ipsum " * 400 + "</p>"
        server.serve("/f.xml", hostile.feed(range(40), body=big))
        clock.advance(700)
        with pytest.raises(StorageError, match="database or disk is full"):
            await herald.poller.poll_due()
        info = (await storage.list_feeds())[0]
        assert info.entries == 3 and info.pending == 0  # all or nothing: the poll left no trace
        assert sink.announced(CHANNEL) == {"Post 2": 1}

        await storage.db.fetchone("PRAGMA max_page_count = 1073741823")  # space is back
        clock.advance(3600)  # past the feed's lease
        await cycle(herald)
        # the delivery side: Discord accepted a message but recording it failed (the disk filled again)
        original = storage.mark_delivered
        failures = [StorageError("database error: database or disk is full")]

        async def mark_delivered(*args, **kw):
            if failures:
                raise failures.pop()
            return await original(*args, **kw)

        storage.mark_delivered = mark_delivered  # type: ignore[method-assign]
        server.serve("/f.xml", hostile.feed(range(41), body=big))
        clock.advance(700)
        await cycle(herald)
        rows = await storage.db.fetchall("SELECT state FROM deliveries ORDER BY id DESC LIMIT 1")
        assert rows == [("pending",)]  # sent, but not recorded as sent: it is not marked delivered
        assert any("storage error while delivering" in r.getMessage() for r in caplog.records)
        clock.advance(600)  # past the delivery lease
        await herald.worker.deliver_due()
        rows = await storage.db.fetchall("SELECT state FROM deliveries ORDER BY id DESC LIMIT 1")
        assert rows == [("sent",)] and sink.deduplicated == 1  # resent with its nonce: Discord shows it once
    finally:
        await herald.close()
    expected = [f"Post {n}" for n in range(2, 41)]
    lost, duplicated = tally(sink.announced(CHANNEL), expected)
    assert (lost, duplicated) == (0, 0), sink.announced(CHANNEL)
    record("disk full (SQLITE_FULL), then space returns", area="storage", runs=2, lost=lost, duplicated=duplicated,
           outcome="poll not stored ('database or disk is full'); a sent message whose record failed stays pending"
           " and is resent with its nonce (shown once)")


@pytest.mark.parametrize("backfill", [0, 2])
async def test_database_deleted_at_start_applies_backfill_not_history(tmp_path, server, backfill):
    clock, sink = Clock(), RecordingSink()
    server.serve("/f.xml", hostile.feed(range(50)))
    herald = await open_herald(tmp_path, server, clock, sink, backfill=backfill)
    try:
        await cycle(herald)
    finally:
        await herald.close()
    first = sink.attempts
    assert first == backfill
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'herald.db'}{suffix}").unlink(missing_ok=True)
    # a crash loop on the fresh database: killed right after its first poll, then started again
    for _ in range(3):
        herald = await open_herald(tmp_path, server, clock, sink, backfill=backfill)
        try:
            clock.advance(700)
            await herald.poller.poll_due()
        finally:
            await herald.close()
    herald = await open_herald(tmp_path, server, clock, sink, backfill=backfill)
    try:
        await herald.worker.deliver_due()
    finally:
        await herald.close()
    resent = sink.attempts - first
    assert resent == backfill  # the fresh database applied backfill once: never "announce all 50"
    visible_dups = sum(n - 1 for n in sink.announced(CHANNEL).values() if n > 1)
    assert visible_dups == 0  # same entries, same row ids, same nonces: deduplicated while Discord remembers them
    if backfill == 0:
        record("database file deleted at start (backfill = 0)", area="storage", runs=4, lost=0, duplicated=0,
               outcome="fresh database; first fetch applies backfill: nothing of the 50 old entries re-sent")
    else:
        record(f"database file deleted at start (backfill = {backfill})", area="storage", runs=4, lost=0,
               duplicated=visible_dups,
               outcome=f"the {backfill} newest re-sent once with their old nonces: Discord drops them within its "
                       "nonce window, after it they repeat; never the 48 others")
