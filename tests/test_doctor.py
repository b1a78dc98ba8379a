"""``herald doctor`` against broken configs, unreachable feeds and the fake Discord."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import aiohttp
import discord
import discord.http
import pytest

from bot.doctor import INVITE_PERMISSIONS, _permissions, run_doctor
from tests.conftest import unclosed_resources
from tests.discord_harness import fake_discord_toml
from tests.support import TOKEN, make_config
from tests.fakediscord import FakeDiscord
from tests.feedgen import numbered_items, write_feed

pytestmark = pytest.mark.usefixtures("token_env")  # the configs read $HERALD_TEST_TOKEN
ROOT = Path(__file__).parent.parent


async def doctor(config) -> tuple[int, str]:
    out = io.StringIO()
    saved = discord.http.Route.BASE
    code = await run_doctor(config, out=out)
    assert discord.http.Route.BASE == saved  # the doctor puts discord.py's endpoints back
    return code, out.getvalue()


async def herald_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=ROOT, env=env if env is not None else dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert unclosed_resources(err.decode()) == [], err.decode()  # every aiohttp session closed
    return proc.returncode, out.decode(), err.decode()


def line_about(output: str, needle: str, area: str | None = None) -> str:
    """The first report line (``[ status] area  text``) whose text mentions ``needle``."""
    lines = [line for line in output.splitlines()
             if line.startswith("[") and needle in line[16:] and (area is None or line[7:15].strip() == area)]
    assert lines, f"no line mentions {needle!r}:\n{output}"
    return lines[0]


async def test_broken_config_names_the_key(tmp_path):
    cfg = tmp_path / "herald.toml"
    cfg.write_text('[[feeds]]\nurl = "https://example.org/feed.xml"\nchannels = ["news"]\n\n[polling]\ninterval = "soon"\n')
    code, out, err = await herald_cli("doctor", "--config", str(cfg))
    assert code != 0
    assert "feeds[0].channels" in err and "polling.interval" in err
    assert out == ""


async def test_missing_permissions_are_named_exactly(tmp_path, fake):
    guild = fake.add_guild(name="Readers")
    good = fake.add_channel(guild, "good")
    noembed = fake.add_channel(guild, "noembed", perms=["view_channel", "send_messages"])
    hidden = fake.add_channel(guild, "hidden", perms=["send_messages", "embed_links"])
    forum = fake.add_channel(guild, "forum", type=15, perms=["view_channel", "embed_links"])
    parent = fake.add_channel(guild, "parent", perms=["view_channel", "send_messages", "embed_links"])
    thread = fake.add_channel(guild, "a-thread", type=11, parent_id=parent)
    threaded = fake.add_channel(guild, "threaded", perms=["view_channel", "send_messages", "embed_links"])
    role_denied = fake.add_channel(guild, "role-denied", overwrites=[
        {"id": fake.bot_role_id(guild), "type": 0, "allow": 0, "deny": 1 << 14}])  # Embed Links, via the bot's role
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = make_config(tmp_path, [
        {"url": url, "name": "plain", "channels": [good, noembed, hidden, forum, thread, role_denied, 999]},
        {"url": write_feed(tmp_path / "g.xml", numbered_items(1)), "name": "threads", "channels": [threaded],
         "create_thread": True},
    ], fake=fake)
    code, out = await doctor(config)
    assert code == 1, out
    assert line_about(out, f"({good})").startswith("[  ok]")
    assert "lacks Embed Links (" in line_about(out, f"#noembed ({noembed})")
    assert "lacks View Channel" in line_about(out, f"channel {hidden}")
    assert "lacks Embed Links, Create Posts (" in line_about(out, f"#forum ({forum})")  # no posting: no embeds
    assert "Send Messages in Threads" in line_about(out, f"#a-thread ({thread})")
    assert "lacks Create Public Threads (" in line_about(out, f"#threaded ({threaded})")
    assert "lacks Embed Links (" in line_about(out, f"#role-denied ({role_denied})")
    assert "does not exist" in line_about(out, "channel 999")
    assert f"client_id={fake.app_id}&scope=bot%20applications.commands&permissions={INVITE_PERMISSIONS}" in out
    assert "logged in as Herald" in out
    assert "fix: in Discord" in out  # says how to fix it
    assert "7 problems found" in out
    assert TOKEN not in out


async def test_permission_math_agrees_with_discord_rules(fake):
    """The doctor's permission computation against the fake's own implementation of Discord's
    algorithm, over roles, @everyone, role and member overwrites, administrators and threads."""
    guild = fake.add_guild(everyone_permissions=["view_channel"], bot_permissions=["send_messages"])
    extra = fake.add_role(guild, "extra", ["embed_links", "send_messages_in_threads"], assign_to_bot=True)
    bot_role = fake.bot_role_id(guild)
    V, S, E, T = 1 << 10, 1 << 11, 1 << 14, 1 << 38
    cases = {
        "plain": [],
        "everyone-denies-view": [{"id": guild, "type": 0, "allow": 0, "deny": V}],
        "role-gives-view-back": [{"id": guild, "type": 0, "allow": 0, "deny": V},
                                 {"id": extra, "type": 0, "allow": V, "deny": 0}],
        "role-deny-beats-nothing": [{"id": bot_role, "type": 0, "allow": 0, "deny": S}],
        "allow-beats-deny-across-roles": [{"id": bot_role, "type": 0, "allow": 0, "deny": E},
                                          {"id": extra, "type": 0, "allow": E, "deny": 0}],
        "member-beats-roles": [{"id": extra, "type": 0, "allow": S, "deny": 0},
                               {"id": fake.bot_user_id, "type": 1, "allow": 0, "deny": S}],
        "threads-only": [{"id": bot_role, "type": 0, "allow": T, "deny": S}],
    }
    channels = {name: fake.add_channel(guild, name, overwrites=ows) for name, ows in cases.items()}
    threads = {name: fake.add_channel(guild, f"{name}-t", type=11, parent_id=cid) for name, cid in channels.items()}
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async def get(path: str) -> dict:
            async with http.get(fake.api_base + path) as resp:
                assert resp.status == 200, (path, resp.status)
                return await resp.json()

        guild_wire = await get(f"/guilds/{guild}")
        member = await get(f"/guilds/{guild}/members/{fake.bot_user_id}")
        for name, cid in channels.items():
            ows = fake.channels[cid]["overwrites"]
            wire_ows = [{"id": str(o["id"]), "type": o["type"], "allow": str(o["allow"]), "deny": str(o["deny"])}
                        for o in ows]
            for channel_id, thread in ((cid, False), (threads[name], True)):
                ours = _permissions(guild_wire, member, fake.bot_user_id, wire_ows, thread=thread)
                assert ours.value == fake.permissions_for(channel_id), (name, thread)
        admin = dict(guild_wire, roles=[dict(r, permissions=str(1 << 3)) if str(r["id"]) == str(extra) else r
                                        for r in guild_wire["roles"]])
        assert _permissions(admin, member, fake.bot_user_id, [], thread=False) == discord.Permissions.all()


async def test_healthy_setup_exits_zero_through_the_cli(tmp_path, fake):
    guild = fake.add_guild()
    text = fake.add_channel(guild, "news")
    forum = fake.add_channel(guild, "forum", type=15)
    hooked = fake.add_channel(guild, "hooked")
    hook_url = fake.add_webhook(hooked)
    url = write_feed(tmp_path / "f.xml", numbered_items(3))
    cfg = tmp_path / "herald.toml"
    cfg.write_text(fake_discord_toml(fake, tmp_path / 'h.db') + f"""[[feeds]]
url = "{url}"
name = "news"
channels = [{text}, {forum}]
webhooks = ["HERALD_TEST_HOOK"]
""")
    env = dict(os.environ, HERALD_TEST_TOKEN=TOKEN, HERALD_TEST_HOOK=hook_url)
    code, out, err = await herald_cli("doctor", "--config", str(cfg), env=env)
    assert code == 0, out + err
    assert "[FAIL]" not in out
    assert '"Test Feed" 3 entries' in line_about(out, "news (file:")
    assert "logged in as Herald" in out
    assert line_about(out, f"#news ({text})").startswith("[  ok]")
    assert line_about(out, f"#forum ({forum})").startswith("[  ok]")
    assert line_about(out, "$HERALD_TEST_HOOK").startswith("[  ok]")
    assert "No problems found" in out
    assert TOKEN not in out + err and hook_url.rsplit("/", 1)[1] not in out + err
    assert [r.path for r in fake.requests if r.method != "GET"] == []  # the doctor only looks


async def test_without_token_discord_checks_are_skipped(tmp_path, fake, monkeypatch):
    monkeypatch.delenv("HERALD_TEST_TOKEN")
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = make_config(tmp_path, [{"url": url, "channels": [123]}], fake=fake)
    code, out = await doctor(config)
    assert code == 0, out
    skipped = line_about(out, "", area="discord")
    assert skipped.startswith("[skip]") and "$HERALD_TEST_TOKEN is not set" in skipped
    assert "export HERALD_TEST_TOKEN=" in out
    assert fake.requests == []


async def test_unreachable_feed_rejected_token_and_unset_webhook(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("HERALD_TEST_TOKEN", "wrong.token.value-that-discord-rejects")
    monkeypatch.delenv("HERALD_TEST_MISSING_HOOK", raising=False)
    good = write_feed(tmp_path / "f.xml", numbered_items(1))
    (tmp_path / "page.xml").write_text("<html><body>not a feed</body></html>")
    config = make_config(tmp_path, [
        {"url": good, "name": "good", "channels": [1]},
        {"url": (tmp_path / "missing.xml").as_uri(), "name": "gone", "channels": [1]},
        {"url": (tmp_path / "page.xml").as_uri(), "name": "page", "channels": [1]},
        {"url": good + "?hook", "name": "hooked", "webhooks": ["HERALD_TEST_MISSING_HOOK"]},
    ], fake=fake)
    code, out = await doctor(config)
    assert code == 1
    assert line_about(out, "good (file:").startswith("[  ok]")
    assert line_about(out, "gone (file:").startswith("[FAIL]")
    page = line_about(out, "page (file:")
    assert page.startswith("[FAIL]") and "not a feed" in page
    assert "feeds[2].url" in out  # where to fix it
    assert "$HERALD_TEST_MISSING_HOOK is not set (feeds[3] (hooked))" in out
    assert "Discord rejected the token in $HERALD_TEST_TOKEN" in out
    assert "Reset Token" in out
    assert "wrong.token.value-that-discord-rejects" not in out


async def test_storage_problem_is_reported(tmp_path, fake):
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = make_config(tmp_path, [{"url": url, "channels": [1]}], fake=fake, storage={"url": f"sqlite:///{tmp_path / 'no-such-folder' / 'h.db'}"})
    code, out = await doctor(config)
    assert code == 1
    storage = line_about(out, "", area="storage")
    assert storage.startswith("[FAIL]") and "no-such-folder" in storage
    assert "create that folder" in out


async def test_feeds_whose_server_cannot_be_known_are_named_with_the_fix(tmp_path, fake, monkeypatch):
    guild = fake.add_guild(name="Readers")
    news = fake.add_channel(guild, "news")
    hooked = fake.add_channel(guild, "hooked")
    live_hook = fake.add_webhook(hooked)
    dead_hook = fake.add_webhook(hooked)
    fake.webhooks.pop(int(dead_hook.split("/")[-2]))  # deleted in Discord since
    monkeypatch.setenv("HERALD_TEST_LIVE_HOOK", live_hook)
    monkeypatch.setenv("HERALD_TEST_DEAD_HOOK", dead_hook)
    urls = [write_feed(tmp_path / f"f{i}.xml", numbered_items(1)) for i in range(5)]
    config = make_config(tmp_path, [
        {"url": urls[0], "name": "by-channel", "channels": [news]},
        {"url": urls[1], "name": "by-webhook", "webhooks": ["HERALD_TEST_LIVE_HOOK"]},
        {"url": urls[2], "name": "homeless", "webhooks": ["HERALD_TEST_DEAD_HOOK"]},
        {"url": urls[3], "name": "pinned", "webhooks": ["HERALD_TEST_DEAD_HOOK"], "guild_id": guild},
        {"url": urls[4], "name": "invisible", "channels": [900_000_000_000_000_999]},
    ], fake=fake)
    code, out = await doctor(config)
    assert code == 1
    servers = [line for line in out.splitlines() if line[7:15].strip() == "server"]
    assert len(servers) == 2, out
    assert "feeds[2] (homeless): its Discord server cannot be known" in servers[0]
    assert "feeds[4] (invisible)" in servers[1]
    assert "set guild_id = <server id>" in out and "Copy Server ID" in out
    for name in ("by-channel", "by-webhook", "pinned"):
        assert f"({name}): its Discord server" not in out


async def test_create_thread_on_a_forum_or_thread_contradicts_the_channel(tmp_path, fake):
    guild = fake.add_guild()
    forum = fake.add_channel(guild, "forum", type=15)
    parent = fake.add_channel(guild, "parent")
    thread = fake.add_channel(guild, "a-thread", type=11, parent_id=parent)
    text = fake.add_channel(guild, "text")
    config = make_config(tmp_path, [
        {"url": write_feed(tmp_path / "a.xml", numbered_items(1)), "name": "plain", "channels": [forum, thread, text]},
        {"url": write_feed(tmp_path / "b.xml", numbered_items(1)), "name": "threads", "channels": [forum, thread, text],
         "create_thread": True},
    ], fake=fake)
    code, out = await doctor(config)
    assert code == 0, out  # it still works: Herald ignores create_thread there
    forum_line = [line for line in out.splitlines() if f"#forum ({forum})" in line and "create_thread" in line]
    thread_line = [line for line in out.splitlines() if f"#a-thread ({thread})" in line and "create_thread" in line]
    assert forum_line and forum_line[0].startswith("[warn]") and "feeds[1] (threads)" in forum_line[0]
    assert "feeds[0]" not in forum_line[0]  # the feed that uses the forum as a forum is not the contradiction
    assert thread_line and thread_line[0].startswith("[warn]")
    assert not [line for line in out.splitlines() if f"#text ({text})" in line and "create_thread" in line]
    assert "remove create_thread" in out
