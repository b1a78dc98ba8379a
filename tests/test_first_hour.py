"""The admin's first hour: feeds that belong to no server, notices that reach someone, failures a
person can read, and what `herald check` finds. End to end through the fake Discord and the CLI."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from bot.app import Herald
from bot.config import config_from_dict
from bot.deliver import ConsoleSink
from tests.conftest import unclosed_resources
from tests.discord_harness import SEED, fake_discord_toml, running_bot
from tests.support import START, TOKEN, Clock, make_config
from tests.fakediscord import FakeDiscord

pytestmark = pytest.mark.usefixtures("token_env")  # the configs read $HERALD_TEST_TOKEN
ROOT = Path(__file__).resolve().parents[1]
HOOK_ENV = "HERALD_TEST_HOOK"
MANAGER = ["view_channel", "send_messages", "manage_guild"]
EVENT_TIMEOUT = 10.0


async def command(fake: FakeDiscord, guild: int, channel: int, name: str, options: dict | None = None, *,
                  subcommand: str | None = None) -> dict:
    rec = await fake.send_slash_command(guild, channel, None, name, options or {}, subcommand=subcommand,
                                        member_permissions=MANAGER if name == "feed" else None)
    return await rec.wait_response(timeout=3.0)


def answer_text(resp: dict) -> str:
    data = resp.get("data") or {}
    parts = [data.get("content") or ""]
    for e in data.get("embeds", []):
        parts += [str(e.get("title", "")), str(e.get("description", ""))]
        parts += [f"{f['name']}\n{f['value']}" for f in e.get("fields", [])]
    return "\n".join(parts)


async def wait_cycle(bot) -> None:
    await asyncio.wait_for(bot.herald.poller.cycle_done.wait(), EVENT_TIMEOUT)


# --- feeds that belong to no server -------------------------------------------------------------------


async def test_webhook_only_config_feed_is_listed_searchable_and_resumable_in_its_guild(tmp_path, fake, monkeypatch):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    monkeypatch.setenv(HOOK_ENV, fake.add_webhook(channel))
    config = make_config(tmp_path, [{"url": SEED.as_uri(), "name": "locked", "webhooks": [HOOK_ENV],
                                           "backfill": 1}], fake=fake)  # no guild_id: Herald asks Discord
    async with running_bot(config, TOKEN) as bot:
        [sub] = await bot.storage.subscriptions()
        assert sub.guild_id == guild  # from GET /webhooks/{id}/{token}
        assert fake.requests_to("GET /webhooks/{webhook_id}/{token}")[0].status == 200
        await wait_cycle(bot)
        await fake.wait_for_messages(channel, 1, timeout=EVENT_TIMEOUT)

        listed = answer_text(await command(fake, guild, channel, "feed", subcommand="list"))
        assert "Feeds (1)" in listed and "**locked**" in listed
        found = answer_text(await command(fake, guild, channel, "search", {"query": "kubernetes"}))
        assert "Rootless User-Space Kubernetes with GPU" in found
        recent = answer_text(await command(fake, guild, channel, "recent", {"feed": "locked", "count": 1}))
        assert "Treading Water" in recent
        status = answer_text(await command(fake, guild, channel, "feed", {"feed": "locked"}, subcommand="status"))
        assert "locked" in status and "never succeeded" not in status
        paused = answer_text(await command(fake, guild, channel, "feed", {"feed": "locked"}, subcommand="pause"))
        assert "**locked** is paused" in paused
        resumed = answer_text(await command(fake, guild, channel, "feed", {"feed": "locked"}, subcommand="resume"))
        assert "**locked** is resumed" in resumed and "No feed named" not in resumed
        assert not (await bot.storage.find_feed("locked", guild)).paused


async def test_notice_for_a_broken_channel_goes_to_the_guilds_system_channel(tmp_path, fake):
    guild = fake.add_guild()
    general = fake.add_channel(guild, "general")
    locked = fake.add_channel(guild, "locked", perms=["view_channel", "embed_links"])  # no Send Messages
    fake.set_system_channel(guild, general)
    missing = (tmp_path / "gone.xml").as_uri()  # never fetched successfully
    config = make_config(tmp_path, [{"url": missing, "name": "locked", "channels": [locked]}], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        [notice] = await fake.wait_for_messages(general, 1, timeout=EVENT_TIMEOUT)
        assert "Stopped announcing **locked**" in notice["content"] and f"<#{locked}>" in notice["content"]
        assert "Send Messages" in notice["content"] and notice["allowed_mentions"] == {"parse": []}
        assert fake.messages(locked) == []
        [sub] = await bot.storage.subscriptions()
        assert sub.paused and sub.guild_id == guild  # a visible but unusable channel still names its server
        await wait_cycle(bot)
        listed = answer_text(await command(fake, guild, general, "feed", subcommand="list"))
        assert "Feeds (1)" in listed and "**locked**" in listed
        status = answer_text(await command(fake, guild, general, "feed", {"feed": "locked"}, subcommand="status"))
        assert "never succeeded" in status and "undated" not in status
        resumed = answer_text(await command(fake, guild, general, "feed", {"feed": "locked"}, subcommand="resume"))
        assert "**locked** is resumed" in resumed


async def test_notice_skips_a_channel_that_refuses_it_and_always_reaches_the_log(tmp_path, fake, caplog):
    caplog.set_level(logging.WARNING, logger="herald.discord")
    guild = fake.add_guild()
    broken = fake.add_channel(guild, "broken", perms=["view_channel"])
    quiet = fake.add_channel(guild, "quiet", perms=["view_channel", "embed_links"])
    alerts = fake.add_channel(guild, "alerts")
    other = fake.add_channel(guild, "other")
    config = make_config(tmp_path, [
        {"url": SEED.as_uri(), "name": "vsoch", "channels": [broken, other], "alerts_channel": alerts},
        {"url": (tmp_path / "x.xml").as_uri(), "name": "alone", "channels": [quiet]},
    ], fake=fake)
    fake.fail_next(1, status=403, route=f"POST /channels/{alerts}/messages")  # the alerts channel refuses it
    async with running_bot(config, TOKEN):
        [notice] = await fake.wait_for_messages(other, 1, timeout=EVENT_TIMEOUT)  # the feed's other channel
        assert "Stopped announcing **vsoch**" in notice["content"]
    assert fake.messages(alerts) == []
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"could not post a notice to channel {alerts}: HTTP 403; trying the next" in m for m in logged)
    assert any("notice (target)" in m and "vsoch" in m for m in logged)
    # "alone" has no working channel and the guild no system channel: the log says so, with the fix
    assert any("notice (target)" in m and "alone" in m for m in logged)
    assert any("no channel can take the notice" in m and "alerts_channel" in m for m in logged)
    assert fake.messages(quiet) == [] and fake.messages(broken) == []


async def test_a_channel_that_becomes_visible_gives_its_feed_a_server(tmp_path, fake, caplog):
    caplog.set_level(logging.ERROR, logger="herald.discord")
    guild = fake.add_guild()
    general = fake.add_channel(guild, "general")
    late_id = 900_000_000_000_000_777
    config = make_config(tmp_path, [{"url": SEED.as_uri(), "name": "late", "channels": [late_id]}], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        [sub] = await bot.storage.subscriptions()
        assert sub.guild_id is None
        assert any("feed late" in r.getMessage() and "guild_id" in r.getMessage() for r in caplog.records)
        learned = asyncio.Event()
        original = bot.learn_guild

        async def learn_and_tell(channels):
            await original(channels)
            learned.set()

        bot.learn_guild = learn_and_tell
        fake.add_channel(guild, "late", channel_id=late_id)  # CHANNEL_CREATE
        await asyncio.wait_for(learned.wait(), EVENT_TIMEOUT)
        [sub] = await bot.storage.subscriptions()
        assert sub.guild_id == guild
        listed = answer_text(await command(fake, guild, general, "feed", subcommand="list"))
        assert "**late**" in listed


# --- pause notices in words ------------------------------------------------------------------------


async def test_pause_notice_of_a_feed_that_never_worked_says_so(tmp_path):
    config = config_from_dict({
        "storage": {"url": f"sqlite:///{tmp_path / 'h.db'}"},
        "polling": {"pause_after": "1s"},
        "feeds": [{"url": (tmp_path / "missing.xml").as_uri(), "name": "broken", "channels": [1]}],
    }, tmp_path / "herald.toml")
    now = [1_800_000_000.0]
    notices = []

    async def alert(kind, feed_id, text):
        notices.append(text)

    async with Herald(config, ConsoleSink(io.StringIO()), clock=lambda: now[0], parse_inline=True) as herald:
        herald.alert = alert
        await herald.run_once()
        now[0] += 5  # well past pause_after, but not a minute
        await herald.run_once()
    [text] = notices
    assert "failing since its first poll" in text and "0 minutes" not in text


async def test_a_shorter_interval_takes_effect_at_the_next_start(tmp_path):
    def config(interval: str, default: str = "1h"):
        return make_config(tmp_path, [{"url": SEED.as_uri(), "name": "vsoch", "channels": [1], "interval": interval}],
                           polling={"interval": default})

    start = START
    clock = Clock(start)
    async with Herald(config("1h"), ConsoleSink(io.StringIO()), clock=clock, parse_inline=True) as herald:
        await herald.run_once()
        [info] = await herald.storage.list_feeds()
        assert info.next_fetch > start + 3000  # about an hour away
    clock.advance(60)
    async with Herald(config("5m"), ConsoleSink(io.StringIO()), clock=clock, parse_inline=True) as herald:
        [info] = await herald.storage.list_feeds()
        assert info.next_fetch == info.last_fetch + 300  # not the hour the old interval gave it
        assert await herald.storage.claim_due_feeds(start + 301, 10, 60)


# --- failures a person can read --------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def unreachable_config(tmp_path: Path, api_base: str | None = None) -> Path:
    """A config whose Discord is a closed port (REST and gateway), or only its gateway when
    ``api_base`` names a live fake."""
    port = closed_port()
    path = tmp_path / "herald.toml"
    path.write_text(textwrap.dedent(f"""
        [discord]
        token_env = "HERALD_TEST_TOKEN"
        api_base = "{api_base or f'http://127.0.0.1:{port}/api/v10'}"
        gateway_url = "ws://127.0.0.1:{port}/"
        [storage]
        url = "sqlite:///{tmp_path / 'h.db'}"
        [[feeds]]
        url = "{SEED.as_uri()}"
        channels = [123456789012345678]
    """))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERALD_CONFIG", "DISCORD_TOKEN")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HERALD_TEST_TOKEN"] = TOKEN
    env.update(extra)
    return env


async def herald(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=ROOT, env=env or cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise AssertionError(f"herald {' '.join(args)} did not finish within {timeout}s") from None
    assert unclosed_resources(err.decode()) == []
    return proc.returncode, out.decode(), err.decode()


async def test_discord_unreachable_with_once_is_one_line_and_exit_1(tmp_path):
    config = unreachable_config(tmp_path)
    code, out, err = await herald("run", "--once", "--config", str(config))
    assert code == 1 and out == ""
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if "ERROR" in line]
    assert "cannot reach Discord at http://127.0.0.1:" in line and "connection refused" in line
    assert "giving up (--once)" in line
    assert len(err.splitlines()) <= 2, err  # discord.py's "logging in" line and Herald's one line

    code, _, err = await herald("run", "--once", "--log-level", "debug", "--config", str(config))
    assert code == 1 and "Traceback" in err and "ConnectionRefusedError" in err  # the details, when asked


async def test_gateway_unreachable_after_the_login_with_once_is_one_line_and_exit_1(tmp_path, fake):
    config = unreachable_config(tmp_path, api_base=fake.api_base)
    code, out, err = await herald("run", "--once", "--config", str(config))
    assert code == 1 and out == "" and "Traceback" not in err
    [line] = [line for line in err.splitlines() if "ERROR" in line]
    assert "cannot reach Discord at ws://127.0.0.1:" in line and "connection refused" in line


@pytest.mark.parametrize("gateway_only", [False, True], ids=["rest", "gateway"])
async def test_discord_unreachable_retries_until_stopped(tmp_path, fake, gateway_only):
    config = unreachable_config(tmp_path, api_base=fake.api_base if gateway_only else None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config), cwd=ROOT, env=cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        seen = []
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), EVENT_TIMEOUT)).decode()
            assert line, f"herald exited before retrying: {seen}"
            seen.append(line)
            if "retrying in" in line:
                break
        assert "cannot reach Discord" in line and "connection refused" in line and "until stopped" in line
        assert ("ws://" in line) == gateway_only
        proc.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.stderr.read(), EVENT_TIMEOUT)).decode()
        code = await asyncio.wait_for(proc.wait(), EVENT_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert "Traceback" not in "".join(seen) + rest and unclosed_resources(rest) == []


def test_unreachable_reasons_are_short_and_name_the_failure():
    import socket as socket_module
    import ssl
    from types import SimpleNamespace

    import aiohttp
    import discord

    from bot.discord_bot import unreachable_reason

    key = SimpleNamespace(host="discord.example", port=443, ssl=True)
    dns = getattr(aiohttp, "ClientConnectorDNSError", aiohttp.ClientConnectorError)
    assert unreachable_reason(dns(key, socket_module.gaierror(-2, "Name or service not known"))) == \
        "DNS lookup of discord.example failed"
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connect call failed"))
    assert unreachable_reason(refused) == "connection refused"
    cert = aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError("certificate has expired"))
    assert unreachable_reason(cert).startswith("TLS certificate error: ") and "expired" in unreachable_reason(cert)
    assert unreachable_reason(asyncio.TimeoutError()) == "no answer (timed out)"

    class Response:
        status, reason = 503, "Service Unavailable"

    assert unreachable_reason(discord.DiscordServerError(Response(), "")) == "Discord answered HTTP 503"
    for reason in map(unreachable_reason, (refused, cert)):
        assert "\n" not in reason


def test_a_failed_reconnect_is_one_line_unless_debugging():
    from bot.discord_bot import OneLineReconnects

    class Bot:
        ws: object | None = object()  # connected once: discord.py reconnects by itself

    def record() -> logging.LogRecord:
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except ConnectionRefusedError:
            return logging.LogRecord("discord.client", logging.ERROR, __file__, 1, "Attempting a reconnect in %.2fs",
                                     (2.5,), sys.exc_info())

    bot = Bot()
    one_line = OneLineReconnects([bot])  # type: ignore[list-item]
    rec = record()
    assert one_line.filter(rec) and rec.exc_info is None
    assert rec.getMessage() == "lost the connection to Discord's gateway (connection refused); reconnecting in 2s"
    bot.ws = None  # never connected: Herald's own retry line says it, discord.py's is dropped
    assert not one_line.filter(record())
    herald_log = logging.getLogger("herald")
    saved = herald_log.level
    herald_log.setLevel(logging.DEBUG)
    try:
        bot.ws = object()
        rec = record()
        assert one_line.filter(rec) and rec.exc_info is not None  # --log-level debug keeps the traceback
    finally:
        herald_log.setLevel(saved)


async def test_once_after_a_webhook_send_closes_every_session(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    config = tmp_path / "herald.toml"
    config.write_text(fake_discord_toml(fake, tmp_path / "h.db") + textwrap.dedent(f"""
        [[feeds]]
        url = "{SEED.as_uri()}"
        name = "hooked"
        webhooks = ["{HOOK_ENV}"]
        backfill = 1
    """))
    code, _, err = await herald("run", "--once", "--config", str(config),
                                env=cli_env(**{HOOK_ENV: fake.add_webhook(channel)}))
    assert code == 0, err
    assert len(fake.messages(channel)) == 1
    assert "Unclosed" not in err and "Traceback" not in err


async def test_a_webhook_send_racing_the_shutdown_opens_no_session(fake, monkeypatch):
    from bot.discord_sink import DiscordSink
    from bot.errors import TransientDeliveryError
    from bot.models import Delivery, StoredEntry, Subscription
    from bot.storage.base import ClaimedDelivery

    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    monkeypatch.setenv(HOOK_ENV, fake.add_webhook(channel))
    sink = DiscordSink(bot=None)  # type: ignore[arg-type]  # webhooks need no bot
    home = await sink.webhook_home(HOOK_ENV)
    assert (home.guild_id, home.channel_id) == (guild, channel)
    await sink.close()
    entry = StoredEntry(id=1, feed_id=1, key="id:1", title="t", link=None, summary="s", author=None, published=None,
                        image=None, first_seen=0.0)
    claimed = ClaimedDelivery(Delivery(1, 1, (1,), "entry"), Subscription(1, 1, f"webhook:{HOOK_ENV}"), [entry], None)
    with pytest.raises(TransientDeliveryError, match="stopping"):
        await sink.send(claimed, {"content": "late"}, "nonce")
    assert sink._session is None and fake.messages(channel) == []


# --- the test-wide check for unclosed sessions -------------------------------------------------------


LEAKY_TESTS = '''
import aiohttp

from tests.conftest import no_unclosed_sessions  # noqa: F401  # the autouse check under test


async def test_leaks_a_session():
    aiohttp.ClientSession()  # never closed


async def test_closes_its_session():
    async with aiohttp.ClientSession():
        pass
'''


def test_the_unclosed_session_check_fails_a_leaking_test(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"]
                                                   if os.environ.get("PYTHONPATH") else ""))
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                                           "-o", "asyncio_default_fixture_loop_scope=function")
    # the leaking test passes its call and fails at teardown; the clean one is untouched
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks_a_session*",
                                 "an aiohttp session or connector was not closed: Unclosed client session"])


def test_unclosed_resources_reads_process_output():
    err = "INFO fine\nERROR   asyncio: Unclosed client session\nclient_session: <x>\nUnclosed connector\n"
    assert unclosed_resources(err) == ["ERROR   asyncio: Unclosed client session", "Unclosed connector"]
    assert unclosed_resources("all good\n") == []
