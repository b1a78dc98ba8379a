"""The boundary between the core and Discord: notices as values, one channel check, one service
object for the cogs, a small Bot class with its machinery in extensions."""

from __future__ import annotations

import ast
import io
import logging
from pathlib import Path

import discord
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import notices
from bot.app import Herald
from bot.config import config_from_dict
from bot.deliver import ConsoleSink
from bot.discord_bot import HeraldBot
from bot.manage import Validated
from bot.models import FeedState, ParsedFeed
from bot.notices import BrokenFeed, FeedPaused, TargetBroken
from bot.permissions import (
    USABLE_TYPES,
    can_post_plain,
    channel_problem,
    channel_type,
    check_channel,
    required_permissions,
)
from bot.service import FeedNames, FeedService
from tests.discord_harness import SEED, running_bot
from tests.fakediscord import FakeDiscord
from tests.support import TOKEN, make_config

ROOT = Path(__file__).parent.parent
HOSTILE = "@everyone **bold** <#1>"


# --- notices -----------------------------------------------------------------------------------


def test_feed_paused_text_escapes_the_name_and_names_both_resume_commands() -> None:
    text = notices.text(FeedPaused(feed_id=3, name=HOSTILE, reason="HTTP 410 @here", command_name="my blog"))
    assert text.startswith("Feed **")
    # the feed's title and the reason are text, not Markdown: no ping, no bold, no channel mention
    assert "**\\@everyone \\*\\*bold\\*\\* \\<#1>**" in text and "HTTP 410 \\@here\n" in text
    assert "`/feed resume`" in text and "`herald feeds resume 'my blog'`" in text


def test_target_broken_text_names_the_channel_the_feeds_and_the_first_feeds_command() -> None:
    notice = TargetBroken(feed_id=2, target="channel:55", channel_id=55,
                          feeds=(BrokenFeed(2, "alpha"), BrokenFeed(4, "beta")), reason="Missing Access")
    text = notices.text(notice)
    assert text.startswith("Stopped announcing **alpha**, **beta** into <#55>: Missing Access\n")
    assert text.endswith("`/feed resume` or `herald feeds resume alpha`.")
    assert (notice.kind, notice.feed_id) == ("target", 2)


def test_target_broken_text_for_a_webhook_without_feeds() -> None:
    text = notices.text(TargetBroken(feed_id=None, target="webhook:HOOK", channel_id=None, feeds=(),
                                     reason="Unknown Webhook"))
    assert "its feeds into `webhook:HOOK`" in text and text.endswith("with `/feed resume`.")


def _herald(tmp_path: Path, feeds: list[dict[str, object]], notifier: notices.Notifier | None) -> Herald:
    config = config_from_dict({"storage": {"url": f"sqlite:///{tmp_path / 'h.db'}"}, "feeds": feeds},
                              tmp_path / "herald.toml")
    return Herald(config, ConsoleSink(io.StringIO()), parse_inline=True, notifier=notifier)


class KeepNotices:
    def __init__(self) -> None:
        self.got: list[notices.Notice] = []

    async def notify(self, notice: notices.Notice) -> None:
        self.got.append(notice)


async def test_the_core_hands_its_notifier_values_not_discord_text(tmp_path: Path) -> None:
    keep = KeepNotices()
    feeds = [{"url": SEED.as_uri(), "name": "one", "channels": [11, 12]},
             {"url": SEED.as_uri() + "?2", "name": "two", "channels": [11], "alerts_channel": 99}]
    async with _herald(tmp_path, feeds, keep) as herald:
        infos = {f.name: f for f in await herald.storage.list_feeds()}
        await herald.feed_paused(FeedState(id=infos["one"].id, url="u", title="Its Title"), "gone")
        await herald.feed_paused(FeedState(id=7, url="https://x.example/feed"), "gone")
        await herald.storage.pause_target("channel:11", "Missing Access", 0.0)
        await herald.target_broken("channel:11", "Missing Access")
    first, second, broken = keep.got
    assert first == FeedPaused(feed_id=infos["one"].id, name="Its Title", reason="gone", command_name=None)
    assert isinstance(second, FeedPaused) and second.name == "https://x.example/feed"  # no name, no title: its URL
    assert isinstance(broken, TargetBroken) and (broken.target, broken.channel_id) == ("channel:11", 11)
    assert {f.name for f in broken.feeds} == {"one", "two"}
    assert broken.feed_id == infos["one"].id  # it still has channel 12 to take the notice
    assert [n.kind for n in keep.got] == ["feed", "feed", "target"]
    assert "<#11>" in notices.text(broken)


async def test_without_a_notifier_a_pause_is_only_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="herald")
    async with _herald(tmp_path, [{"url": SEED.as_uri(), "name": "one", "channels": [11]}], None) as herald:
        await herald.feed_paused(FeedState(id=1, url="https://x.example/feed", name="one"), "HTTP 410")
        await herald.target_broken("channel:11", "Missing Access")
        assert not hasattr(herald, "alert")  # notices go to the notifier given at construction
    assert any("feed https://x.example/feed paused: HTTP 410" in r.getMessage() for r in caplog.records)


# --- the one channel check --------------------------------------------------------------------

_TYPES = [*USABLE_TYPES, discord.ChannelType.voice, discord.ChannelType.category, discord.ChannelType.stage_voice]


@given(st.sampled_from(_TYPES), st.integers(min_value=0, max_value=(1 << 41) - 1), st.booleans())
def test_check_channel_lists_exactly_the_missing_required_permissions(ctype: discord.ChannelType, value: int,
                                                                      create_thread: bool) -> None:
    perms = discord.Permissions(value)
    result = check_channel(ctype, perms, create_thread=create_thread)
    if ctype not in USABLE_TYPES:
        assert result.kind is None and not result.usable
        return
    needed = required_permissions(USABLE_TYPES[ctype], create_thread)
    assert result.kind == USABLE_TYPES[ctype]
    assert result.missing == tuple(label for attr, label in needed.items() if not getattr(perms, attr))
    assert result.usable == all(getattr(perms, attr) for attr in needed)
    assert check_channel(ctype.value, perms, create_thread=create_thread) == result  # the REST API's number


def test_required_permissions_per_kind() -> None:
    assert required_permissions("thread")["send_messages_in_threads"] == "Send Messages in Threads"
    assert required_permissions("forum")["send_messages"] == "Create Posts"
    assert "create_public_threads" in required_permissions("text", create_thread=True)
    assert "create_public_threads" not in required_permissions("thread", create_thread=True)
    assert check_channel(discord.ChannelType.text, None).missing == ()  # permissions unknown: only the type
    assert channel_type(9999) is None and channel_type("x") is None and channel_type(None) is None


class _Guild:
    def __init__(self, me: object) -> None:
        self.me = me


class _Channel:
    def __init__(self, ctype: discord.ChannelType, perms: discord.Permissions, me: object = "me") -> None:
        self.type = ctype
        self.name = "news"
        self.guild = _Guild(me)
        self._perms = perms

    def permissions_for(self, _member: object) -> discord.Permissions:
        return self._perms


def test_channel_problem_and_notice_channels() -> None:
    none = discord.Permissions.none()
    assert channel_problem(_Channel(discord.ChannelType.voice, none), 5) == (
        "channel 5 (news) is a voice channel; use a text, announcement, forum or thread channel")
    assert channel_problem(_Channel(discord.ChannelType.text, none), 5) == (
        "channel #news (5): the bot lacks View Channel, Embed Links, Send Messages")
    assert channel_problem(_Channel(discord.ChannelType.text, none, me=None), 5) is None  # sending will tell
    assert channel_problem(_Channel(discord.ChannelType.text, discord.Permissions.all()), 5) is None
    assert can_post_plain(None)
    assert not can_post_plain(_Channel(discord.ChannelType.forum, discord.Permissions.all()))
    assert not can_post_plain(_Channel(discord.ChannelType.text, none))
    assert can_post_plain(_Channel(discord.ChannelType.text, discord.Permissions(view_channel=True,
                                                                                 send_messages=True)))


# --- the service the cogs use -----------------------------------------------------------------


async def test_feed_service_names_add_and_wake(tmp_path: Path) -> None:
    async with _herald(tmp_path, [], None) as herald:
        now = [0.0]
        service = FeedService(herald)
        service.names = FeedNames(herald, ttl=5.0, clock=lambda: now[0])
        assert await service.names.names(1) == []
        feed = ParsedFeed(title="Blog", link=None, entries=())
        first = await service.add(1, Validated(url="https://a.example/feed", feed=feed), "channel:1", backfill=0)
        second = await service.add(1, Validated(url="https://b.example/feed", feed=feed), "channel:1", backfill=0)
        assert (first, second) == ("Blog", "Blog (2)")  # the cache was invalidated by the first add
        assert await service.names.names(1) == ["Blog", "Blog (2)"]
        await herald.storage.add_feed("https://c.example/feed", target="channel:1", guild_id=1, name="c", backfill=0,
                                      now=0.0)
        assert "c" not in await service.names.names(1)  # cached …
        now[0] = 6.0
        assert "c" in await service.names.names(1)  # … for its TTL only
        info = await service.resolve(1, "Blog (2)")
        herald.poller._wake.clear()
        await service.set_paused(info, 1, True, "by a test")
        assert not herald.poller._wake.is_set()
        await service.set_paused(info, 1, False, None)
        assert herald.poller._wake.is_set()  # resuming wakes the poller
        assert not (await service.resolve(1, "Blog (2)")).paused


# --- who may reach into what ---------------------------------------------------------------------


def _attribute_chains(path: Path) -> set[str]:
    """Every dotted name (``self.bot.herald.poller``) read in a module."""
    chains = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            parts = []
            cur: ast.expr = node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                chains.add(".".join([cur.id, *reversed(parts)]))
    return chains


def test_cogs_reach_neither_the_cores_internals_nor_private_names() -> None:
    for path in (ROOT / "cogs").rglob("*.py"):
        for chain in _attribute_chains(path):
            parts = chain.split(".")
            assert "herald" not in parts[1:-1] or parts[-1] in {"run", "run_once"}, (path, chain)
            assert not any(p.startswith("_") and not p.startswith("__") for p in parts[2:]), (path, chain)
        assert "setattr(" not in path.read_text(), path


def test_the_core_writes_no_discord_markdown_and_the_doctor_no_private_imports() -> None:
    app = (ROOT / "bot" / "app.py").read_text()
    assert "<#" not in app and "/feed resume" not in app
    tree = ast.parse((ROOT / "bot" / "doctor.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bot"):
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            assert not private, (node.module, private)
        if isinstance(node, ast.Assign):
            assert "Route.BASE" not in ast.unparse(node), ast.unparse(node)


def test_the_bot_class_is_lifecycle_only() -> None:
    own = {name for name, value in vars(HeraldBot).items() if callable(value) or isinstance(value, property)}
    assert own <= {"__init__", "setup_hook", "close", "targets_checked"}, own


async def test_command_sync_runs_only_when_the_commands_changed(tmp_path: Path, fake: FakeDiscord,
                                                                token_env: str) -> None:
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    config = make_config(tmp_path, [{"url": SEED.as_uri(), "name": "vsoch", "channels": [channel]}], fake=fake)
    puts = lambda: len(fake.requests_to("PUT /applications/{application_id}/commands"))  # noqa: E731
    async with running_bot(config, TOKEN) as bot:
        assert puts() == 1
        assert bot.get_cog("CommandSync") is not None and bot.get_cog("ErrorHandler") is not None
        assert bot.tree.on_error == bot.get_cog("ErrorHandler").on_app_command_error  # type: ignore[union-attr]
    async with running_bot(config, TOKEN):
        assert puts() == 1  # the same commands: no second sync


def test_the_core_imports_no_discord() -> None:
    """The core (Herald, the service the cogs use, notices, management, the CLI) loads without discord.py."""
    import subprocess
    import sys

    code = ("import sys, bot.app, bot.service, bot.notices, bot.manage, bot.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'discord'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_doctor_waits_out_429s_and_leaves_discord_py_endpoints_alone(tmp_path: Path, fake: FakeDiscord,
                                                                          token_env: str) -> None:
    from bot.doctor import run_doctor

    guild = fake.add_guild(name="Readers")
    good = fake.add_channel(guild, "good")
    config = make_config(tmp_path, [{"url": SEED.as_uri(), "name": "vsoch", "channels": [good]}], fake=fake)
    fake.rate_limit_next(1, retry_after=0.05, route="GET /users/@me")
    fake.rate_limit_next(1, retry_after=0.05, route=f"GET /channels/{good}")
    before = discord.http.Route.BASE
    out = io.StringIO()
    code = await run_doctor(config, out=out)
    assert code == 0, out.getvalue()
    assert "logged in as Herald" in out.getvalue() and f"#good ({good}) in 'Readers'" in out.getvalue()
    assert fake.count_status(429) == 2  # both were served, and waited out
    assert discord.http.Route.BASE == before != fake.api_base
