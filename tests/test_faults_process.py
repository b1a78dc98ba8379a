"""Process faults with `herald run` as a subprocess against the fake Discord and a local feed
server: SIGTERM shuts down cleanly and fast; SIGKILL at random moments, twenty times over a
busy run, loses and repeats nothing; a corrupt database stops Herald with a clear error."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import hostile
from tests.faultkit import record
from tests.discord_harness import fake_discord_toml
from tests.fakediscord import FakeDiscord
from tests.hostile import HostileServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser")

TOKEN = "fake.bot-token.for-process-faults-0123456789"
ROOT = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("HERALD_FAULT_KILLS", "20"))


def herald(cfg: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, HERALD_TEST_TOKEN=TOKEN)
    return subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(cfg), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_config(tmp_path: Path, fake: FakeDiscord, feeds: list[tuple[str, int]], *, interval: str = "1s") -> Path:
    blocks = "".join(f"""
[[feeds]]
url = "{url}"
name = "feed{i}"
channels = [{channel}]
backfill = 1000
max_per_poll = 1000
""" for i, (url, channel) in enumerate(feeds))
    cfg = tmp_path / "herald.toml"
    cfg.write_text(fake_discord_toml(fake, tmp_path / 'herald.db') + f"""[polling]
interval = "{interval}"
timeout = "5s"
{blocks}""")
    return cfg


def titles(fake: FakeDiscord, channel: int) -> list[str]:
    return [m["embeds"][0]["title"] for m in fake.messages(channel) if m.get("embeds")]


async def stop(p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[str, str, float]:
    started = time.monotonic()
    p.send_signal(sig)
    out, err = await asyncio.to_thread(p.communicate, timeout=timeout)
    return out, err, time.monotonic() - started


async def test_sigterm_stops_fetching_finishes_in_flight_sends_and_exits_0_within_10s(tmp_path):
    server = HostileServer()
    await server.start()
    try:
        async with FakeDiscord(token=TOKEN, message_rate=(50, 1.0), latency=0.3) as fake:  # every send takes 0.3 s
            guild = fake.add_guild()
            channel = fake.add_channel(guild, "news")
            server.serve("/f.xml", hostile.feed(range(30)))
            cfg = write_config(tmp_path, fake, [(server.url("/f.xml"), channel)])
            p = herald(cfg)
            try:
                await fake.wait_for_messages(channel, 3, timeout=60)
            except BaseException:
                p.kill()
                raise
            fetches_at_term = server.requests("/f.xml")
            out, err, took = await stop(p)
            assert p.returncode == 0, err[-3000:]
            assert took < 10, f"took {took:.1f}s"
            sent_before_restart = len(titles(fake, channel))
            assert sent_before_restart < 30, "the burst finished before SIGTERM; the test proves nothing"
            assert server.requests("/f.xml") <= fetches_at_term + 1  # at most the poll already under way
            [closed] = fake.gateway_closes  # the bot closed its gateway with a close frame, not by dying
            assert closed["by"] == "client" and closed["code"] not in (None, 1006)
            assert not Path(f"{tmp_path / 'herald.db'}-wal").exists() or \
                Path(f"{tmp_path / 'herald.db'}-wal").stat().st_size == 0  # closed: the WAL was checkpointed
            con = sqlite3.connect(tmp_path / "herald.db")
            leased = con.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND lease_until > 0").fetchone()[0]
            sent_rows = con.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'sent'").fetchone()[0]
            con.close()
            assert leased == 0  # in-flight sends were finished or handed back
            assert sent_rows == sent_before_restart  # every message Discord shows is recorded as sent, and no more

            fake.latency = 0.0
            p = herald(cfg)
            try:
                await fake.wait_for_messages(channel, 30, timeout=60)
            finally:
                out, err, _ = await stop(p)
            assert p.returncode == 0, err[-3000:]
    finally:
        await server.close()
    shown = titles(fake, channel)
    assert shown == [f"Post {n}" for n in range(30)]
    record("SIGTERM during a burst", area="process", runs=1, lost=0, duplicated=0,
           outcome=f"exit 0 in {took:.1f}s; fetching stopped, gateway closed by the bot, database closed, no lease"
                   " left; the rest sent once after a restart")


async def test_sigkill_at_random_moments_during_a_busy_run_loses_and_repeats_nothing(tmp_path):
    seed = int(os.environ.get("HERALD_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    server = HostileServer()
    await server.start()
    feeds = {f"/f{i}.xml": [0, 1, 2] for i in range(3)}
    started = time.monotonic()
    try:
        async with FakeDiscord(token=TOKEN, message_rate=(50, 1.0), latency=0.02) as fake:
            guild = fake.add_guild()
            channels = {path: fake.add_channel(guild, path.strip("/.xml")) for path in feeds}
            for path, numbers in feeds.items():
                server.serve(path, hostile.feed(numbers, prefix=path[1:3].upper()))
            cfg = write_config(tmp_path, fake, [(server.url(path), channels[path]) for path in feeds])
            kill_phases = {"startup": 0, "mid-delivery": 0}
            for i in range(KILLS):
                for path, numbers in feeds.items():  # the feeds keep changing between (and during) runs
                    numbers.extend([numbers[-1] + 1, numbers[-1] + 2])
                    server.serve(path, hostile.feed(numbers, prefix=path[1:3].upper()))
                before = len(fake.all_messages())
                p = herald(cfg)
                try:
                    if i % 2 == 0:  # a random moment after start: login, first poll or first sends
                        await asyncio.sleep(rng.uniform(0.2, 2.5))  # fault injection timing, not synchronisation
                        kill_phases["startup"] += 1
                    else:  # while announcements are going out
                        await fake.wait_until(lambda: len(fake.all_messages()) > before, timeout=60,
                                              what="a first new announcement")
                        await asyncio.sleep(rng.uniform(0, 0.3))  # fault injection timing
                        kill_phases["mid-delivery"] += 1
                finally:
                    p.kill()
                    await asyncio.to_thread(p.wait, 30)
                    p.stdout.close()
                    p.stderr.close()
            p = herald(cfg)
            try:
                for path, numbers in feeds.items():
                    await fake.wait_for_messages(channels[path], len(numbers), timeout=60)
                await fake.settle()
            finally:
                out, err, _ = await stop(p)
            assert p.returncode == 0, err[-3000:]
            lost = duplicated = 0
            for path, numbers in feeds.items():
                shown = titles(fake, channels[path])
                expected = [f"{path[1:3].upper()} {n}" for n in numbers]
                lost += len(set(expected) - set(shown))
                duplicated += len(shown) - len(set(shown))
                assert shown == expected, (seed, path, shown)
    finally:
        await server.close()
    total = sum(len(n) for n in feeds.values())
    record(f"SIGKILL at random moments ({KILLS}× in one busy run)", area="process", runs=KILLS, lost=lost,
           duplicated=duplicated, outcome=f"{total} entries over 3 feeds, each shown once in order; "
           f"{kill_phases['startup']} kills at a random time after start, {kill_phases['mid-delivery']} mid-delivery; "
           f"seed {seed}; {time.monotonic() - started:.0f}s")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "overwritten pages"])
async def test_corrupt_database_stops_with_a_clear_error_and_is_left_alone(tmp_path, damage):
    db = tmp_path / "herald.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("CREATE TABLE filler (x TEXT)")
    con.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 400)
    con.commit()
    con.close()
    data = db.read_bytes()
    if damage == "garbage":
        data = os.urandom(len(data))
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = data[:4096] + b"\xff" * 8192 + data[4096 + 8192:]
    db.write_bytes(data)
    async with FakeDiscord(token=TOKEN) as fake:
        cfg = write_config(tmp_path, fake, [("file:/nonexistent.xml", 1)])  # never fetched
        for args in ((), ("--dry-run", "--once")):
            p = herald(cfg, *args)
            out, err = await asyncio.to_thread(p.communicate, timeout=60)
            assert p.returncode == 1, (args, err[-2000:])
            assert "herald: cannot open database" in err or "is corrupted" in err, err[-2000:]
            assert "Traceback" not in err
            assert db.read_bytes() == data  # never replaced by a fresh database (that would re-announce history)
        assert fake.identifies == []  # it stopped before logging in
    record(f"database corrupted at start ({damage})", area="storage", runs=2, lost=0, duplicated=0,
           outcome="exit 1 with 'cannot open database …'; file left untouched; Discord never contacted")
