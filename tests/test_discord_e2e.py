"""End to end: the real discord.py client, Herald's pipeline and the fake Discord."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.limits import EMBED_DESCRIPTION, EMBED_TITLE, EMBED_TOTAL
from bot.render import embed_length
from tests.discord_harness import SEED, fake_discord_toml, running_bot
from tests.support import TOKEN, make_config
from tests.fakediscord import FakeDiscord
from tests.feedgen import numbered_items, write_feed

pytestmark = pytest.mark.usefixtures("token_env")  # the configs read $HERALD_TEST_TOKEN
ROOT = Path(__file__).parent.parent


def posts(fake: FakeDiscord, channel_id: int) -> list[dict]:
    return [r for r in fake.requests if r.method == "POST" and r.path == f"/channels/{channel_id}/messages"
            and r.status == 200]


async def test_seed_feed_backfill_two_embeds(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    config = make_config(tmp_path, [{"url": SEED.as_uri(), "name": "vsoch", "channels": [channel], "backfill": 2}], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        await fake.wait_for_messages(channel, 2, timeout=20)
        await bot.herald.worker.deliver_due()
    msgs = fake.messages(channel)
    assert len(msgs) == 2
    assert [m["embeds"][0]["title"] for m in msgs] == ["Observation", "Treading Water"]  # newest two, oldest first
    for m in msgs:
        e = m["embeds"][0]
        assert e["url"].startswith("https://vsoch.github.io/2026/")
        assert len(e["title"]) <= EMBED_TITLE and len(e.get("description", "")) <= EMBED_DESCRIPTION
        assert embed_length(e) <= EMBED_TOTAL
        assert e["footer"]["text"] == "VanessaSaurus"
        assert len(e["description"]) > 200 and "<p>" not in e["description"]
    sent = posts(fake, channel)
    assert all(r.json["allowed_mentions"] == {"parse": []} for r in sent)
    assert all(r.json.get("enforce_nonce") is True and len(r.json["nonce"]) <= 25 for r in sent)
    assert fake.count_status(429) == 0
    assert [i["intents"] for i in fake.identifies] == [1]  # Guilds only: nothing privileged


async def test_role_mentions_ping_only_configured_roles(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    items = [{"title": "@everyone <@&1> <@123> @here", "link": "https://example.org/a", "guid": "a",
              "description": "<p>@everyone hello <@&1> and <@123> in <#5></p>", "author": "x@y.z (@everyone)",
              "date": 1_700_000_000}]
    url = write_feed(tmp_path / "f.xml", items)
    config = make_config(tmp_path, [{"url": url, "channels": [channel], "backfill": 1, "mention_roles": [777]}], fake=fake)
    async with running_bot(config, TOKEN):
        await fake.wait_for_messages(channel, 1, timeout=20)
    [req] = posts(fake, channel)
    assert req.json["allowed_mentions"] == {"parse": [], "roles": ["777"]}
    assert req.json["content"] == "<@&777>"
    assert "@everyone" in req.json["embeds"][0]["title"]  # shown, but it pings nobody


async def test_hostile_title_without_roles_pings_nobody(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    items = [{"title": "@everyone <@&1> <@123>", "link": "https://example.org/a", "guid": "a", "description": "x",
              "date": 1_700_000_000}]
    config = make_config(tmp_path, [{"url": write_feed(tmp_path / "f.xml", items), "channels": [channel],
                                           "backfill": 1}], fake=fake)
    async with running_bot(config, TOKEN):
        await fake.wait_for_messages(channel, 1, timeout=20)
    [req] = posts(fake, channel)
    assert req.json["allowed_mentions"] == {"parse": []}
    assert "content" not in req.json


async def test_webhook_forum_thread_and_create_thread(tmp_path, fake, monkeypatch):
    guild = fake.add_guild()
    text = fake.add_channel(guild, "text")
    forum = fake.add_channel(guild, "forum", type=15)
    thread = fake.add_channel(guild, "a-thread", type=11, parent_id=text)
    threaded = fake.add_channel(guild, "threaded")
    hook_url = fake.add_webhook(text)
    monkeypatch.setenv("HERALD_HOOK", hook_url)
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = make_config(tmp_path, [
        {"url": url, "name": "hooked", "webhooks": ["HERALD_HOOK"], "backfill": 1, "username": "Feed Bot",
         "avatar_url": "https://example.org/a.png"},
        {"url": write_feed(tmp_path / "g.xml", numbered_items(1, prefix="Forum post")), "name": "forum",
         "channels": [forum, thread], "backfill": 1},
        {"url": write_feed(tmp_path / "h.xml", numbered_items(1, prefix="Threaded")), "name": "threaded",
         "channels": [threaded], "backfill": 1, "create_thread": True},
    ], fake=fake)
    async with running_bot(config, TOKEN):
        await fake.wait_until(lambda: len(fake.messages(text)) >= 1 and fake.threads(forum) and fake.messages(thread)
                              and fake.threads(threaded), timeout=20, what="all four deliveries")
    [hooked] = fake.messages(text)
    assert hooked["author"]["username"] == "Feed Bot"
    hook_req = [r for r in fake.requests if r.path.startswith("/webhooks/") and r.method == "POST"][0]
    assert hook_req.json["avatar_url"] == "https://example.org/a.png"
    assert hook_req.json["allowed_mentions"] == {"parse": []}
    [post] = fake.threads(forum)
    assert post["name"] == "Forum post 0"
    assert [m["embeds"][0]["title"] for m in fake.messages(thread)] == ["Forum post 0"]
    [opened] = fake.threads(threaded)
    assert opened["name"] == "Threaded 0"


async def test_burst_of_100_in_order_without_429(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "burst")
    url = write_feed(tmp_path / "f.xml", numbered_items(100))
    config = make_config(tmp_path, [{"url": url, "channels": [channel], "backfill": 100, "max_per_poll": 100}], fake=fake)
    async with running_bot(config, TOKEN):
        started = time.monotonic()
        await fake.wait_for_messages(channel, 100, timeout=60)
        elapsed = time.monotonic() - started
    titles = [m["embeds"][0]["title"] for m in fake.messages(channel)]
    assert titles == [f"Post {i}" for i in range(100)]
    assert fake.count_status(429) == 0
    print(f"\nburst: 100 entries in {elapsed:.2f}s ({100 / elapsed:.1f}/s) with fake limit 5 per 0.5 s, 0 429s")


async def test_5xx_and_429_then_everything_arrives_once(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "flaky")
    url = write_feed(tmp_path / "f.xml", numbered_items(12))
    fake.fail_next(2, status=502, route="/channels/{channel_id}/messages")
    fake.rate_limit_next(3, retry_after=0.3, route="/channels/{channel_id}/messages")
    config = make_config(tmp_path, [{"url": url, "channels": [channel], "backfill": 12, "max_per_poll": 20}], fake=fake)
    async with running_bot(config, TOKEN):
        await fake.wait_for_messages(channel, 12, timeout=60)
    titles = [m["embeds"][0]["title"] for m in fake.messages(channel)]
    assert titles == [f"Post {i}" for i in range(12)]
    sends = [r.status for r in fake.requests_to("POST /channels/{channel_id}/messages")]
    # every injected fault was served (two 502s, then three 429s), each was retried, and nothing else failed
    assert sends.count(502) == 2 and sends.count(429) == 3, sends
    assert sends[:5] == [502, 502, 429, 429, 429], sends
    assert sends.count(200) == 12 and len(sends) == 17, sends


async def test_gateway_dropped_bot_resumes_and_keeps_delivering(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    path = tmp_path / "f.xml"
    url = write_feed(path, numbered_items(1))
    config = make_config(tmp_path, [{"url": url, "channels": [channel], "backfill": 1}], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        await fake.wait_for_messages(channel, 1, timeout=20)
        await fake.drop_gateway()
        await fake.wait_until(lambda: fake.resumes, timeout=20, what="a RESUME")
        write_feed(path, numbered_items(2))
        await bot.herald.run_once()
        await fake.wait_for_messages(channel, 2, timeout=20)
    assert len(fake.identifies) == 1 and len(fake.resumes) >= 1
    assert [m["embeds"][0]["title"] for m in fake.messages(channel)] == ["Post 0", "Post 1"]


async def test_403_and_404_channels_pause_and_others_carry_on(tmp_path, fake):
    guild = fake.add_guild()
    good = fake.add_channel(guild, "good")
    mute = fake.add_channel(guild, "muted")
    gone = fake.add_channel(guild, "gone")
    url = write_feed(tmp_path / "f.xml", numbered_items(2))
    config = make_config(tmp_path, [{"url": url, "name": "f", "channels": [good, mute, gone], "backfill": 2}], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        for ch in (good, mute, gone):
            await fake.wait_for_messages(ch, 2, timeout=20)
        # permissions change and a channel is deleted after the startup check
        fake.set_bot_permissions(mute, ["view_channel"])
        fake.delete_channel(gone)
        path = tmp_path / "f.xml"
        write_feed(path, numbered_items(3))
        await bot.herald.run_once()
        await fake.wait_for_messages(good, 3, timeout=20)
        subs = await bot.storage.subscriptions()
        info = (await bot.storage.list_feeds())[0]
    by_target = {s.target: s for s in subs}
    assert not by_target[f"channel:{good}"].paused
    assert by_target[f"channel:{mute}"].paused and "403" in by_target[f"channel:{mute}"].pause_reason
    assert by_target[f"channel:{gone}"].paused and "404" in by_target[f"channel:{gone}"].pause_reason
    assert info.failed >= 2  # the failed deliveries are visible with their reason


async def test_startup_check_pauses_unusable_channel(tmp_path, fake):
    guild = fake.add_guild()
    good = fake.add_channel(guild, "good")
    noembed = fake.add_channel(guild, "noembed", perms=["view_channel", "send_messages"])
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = make_config(tmp_path, [{"url": url, "channels": [good, noembed, 999], "backfill": 1}], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        await fake.wait_for_messages(good, 1, timeout=20)
        subs = {s.target: s for s in await bot.storage.subscriptions()}
    assert "Embed Links" in subs[f"channel:{noembed}"].pause_reason
    assert "does not exist" in subs["channel:999"].pause_reason
    assert fake.messages(noembed) == []


def _herald(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _write_toml(path: Path, fake: FakeDiscord, db: Path, feeds: str) -> Path:
    path.write_text(fake_discord_toml(fake, db) + f"""[polling]
interval = "1h"
{feeds}
""")
    return path


async def test_missing_and_rejected_token(tmp_path, fake):
    cfg = _write_toml(tmp_path / "h.toml", fake, tmp_path / "h.db", "")
    env = {k: v for k, v in os.environ.items() if k != "HERALD_TEST_TOKEN"}
    p = _herald(["run", "--config", str(cfg)], env)
    out, err = await asyncio.to_thread(p.communicate, timeout=60)
    assert p.returncode != 0 and "HERALD_TEST_TOKEN" in err
    env["HERALD_TEST_TOKEN"] = "wrong.token.value-that-discord-rejects"
    p = _herald(["run", "--config", str(cfg)], env)
    out, err = await asyncio.to_thread(p.communicate, timeout=60)
    assert p.returncode != 0 and "rejected the token" in err
    assert "wrong.token.value-that-discord-rejects" not in err + out


async def test_sigkill_mid_burst_then_restart_delivers_exactly_once(tmp_path):
    async with FakeDiscord(token=TOKEN, message_rate=(5, 1.0)) as fake:
        guild = fake.add_guild()
        channel = fake.add_channel(guild, "burst")
        url = write_feed(tmp_path / "f.xml", numbered_items(40))
        db = tmp_path / "h.db"
        cfg = _write_toml(tmp_path / "h.toml", fake, db, f"""
[[feeds]]
url = "{url}"
channels = [{channel}]
backfill = 40
max_per_poll = 40
""")
        env = dict(os.environ, HERALD_TEST_TOKEN=TOKEN)
        p = _herald(["run", "--config", str(cfg)], env)
        try:
            await fake.wait_for_messages(channel, 8, timeout=60)
        finally:
            p.send_signal(signal.SIGKILL)
            await asyncio.to_thread(p.wait, 30)
        before = len(fake.messages(channel))
        assert before < 40, "the burst finished before the kill; the test proves nothing"
        p = _herald(["run", "--config", str(cfg)], env)
        try:
            await fake.wait_for_messages(channel, 40, timeout=90)
        finally:
            p.send_signal(signal.SIGTERM)
            out, err = await asyncio.to_thread(p.communicate, timeout=30)
        assert p.returncode == 0, err[-2000:]
        titles = [m["embeds"][0]["title"] for m in fake.messages(channel)]
        assert titles == [f"Post {i}" for i in range(40)], titles
