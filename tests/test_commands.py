"""Slash commands through the fake Discord: INTERACTION_CREATE into the real discord.py client."""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from bot.fetch import Fetcher
from bot.models import FeedState
from tests.discord_harness import SEED, running_bot
from tests.support import TOKEN, make_config
from tests.discord_markdown import read
from tests.fakediscord import FakeDiscord
from tests.feedgen import rss, write_feed

pytestmark = pytest.mark.usefixtures("token_env")  # the configs read $HERALD_TEST_TOKEN
EPHEMERAL = 64


class MapResolver(AbstractResolver):
    """DNS for tests: names map to fixed addresses."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if host not in self.names:
            raise OSError(f"unknown host {host}")
        return [{"hostname": host, "host": self.names[host], "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


class FeedSite:
    """A site on 127.0.0.2 (treated as public) and 127.0.0.1 (loopback) on the same port."""

    def __init__(self) -> None:
        self.seed = SEED.read_bytes()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.pages: dict[str, tuple[bytes, str]] = {}
        self.failing: dict[str, tuple[int, str]] = {}  # path → (status, reason phrase)

    async def start(self) -> "FeedSite":
        self.pages = pages = {
            "/feed.xml": (self.seed, "application/rss+xml"),
            "/blog/": (b'<!doctype html><html><head><title>Blog</title><link rel="alternate" '
                       b'type="application/rss+xml" title="RSS" href="/feed.xml"></head><body>hello</body></html>',
                       "text/html"),
            "/plain.html": (b"<!doctype html><html><body>no feed</body></html>", "text/html"),
        }
        redirects = {"/to-loopback": "http://127.0.0.1:{port}/feed.xml",
                     "/to-private-name": "http://intranet.example:{port}/feed.xml"}

        async def handler(request: web.Request) -> web.StreamResponse:
            if request.path in redirects:
                raise web.HTTPFound(redirects[request.path].format(port=self.port))
            if request.path in self.failing:
                status, reason = self.failing[request.path]
                return web.Response(status=status, reason=reason)
            if request.path not in pages:
                raise web.HTTPNotFound()
            body, ctype = pages[request.path]
            return web.Response(body=body, content_type=ctype)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        for _ in range(20):  # the same port on both addresses; .1 first, as other tests use .1's ports
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            try:
                await web.TCPSite(self.runner, "127.0.0.2", self.port).start()
                return self
            except OSError:
                await site.stop()
        raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    def url(self, path: str, host: str = "blog.example") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def site():
    s = await FeedSite().start()
    yield s
    await s.close()


@pytest.fixture
async def world(tmp_path, fake, site):
    """A guild with the seed feed's 10 posts stored, a manager, a member and a second guild."""
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    other_guild = fake.add_guild(name="Other")
    other_channel = fake.add_channel(other_guild, "elsewhere")
    member = fake.add_user(username="member")
    fake.add_member(guild, member)
    config = make_config(tmp_path, [
        {"url": SEED.as_uri(), "name": "vsoch", "channels": [channel]},
        {"url": write_feed(tmp_path / "secret.xml", [{"title": "Secret kubernetes plans", "guid": "s1",
                                                      "link": "https://secret.example/1", "description": "kubernetes",
                                                      "date": 1_700_000_000}]),
         "name": "secret-feed", "channels": [other_channel]},
    ], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        fetcher = Fetcher(timeout=5, max_bytes=5_000_000,
                          resolver=MapResolver({"blog.example": "127.0.0.2", "intranet.example": "127.0.0.1",
                                                "metadata.example": "169.254.169.254"}),
                          public_addresses=frozenset({"127.0.0.2"}))
        bot.herald.fetcher = bot.herald.poller.fetcher = fetcher
        await bot.herald.poller.cycle_done.wait()
        yield {"bot": bot, "guild": guild, "channel": channel, "member": member, "other_guild": other_guild,
               "other_channel": other_channel, "site": site}
        await fetcher.close()


async def command(fake, w, name, options=None, *, subcommand=None, user=None, perms=None, guild=None, bypass=False):
    if name == "feed" and perms is None:
        perms = ["view_channel", "send_messages", "manage_guild"]  # a server manager
    started = time.monotonic()
    rec = await fake.send_slash_command(guild or w["guild"], w["channel"] if guild is None else w["other_channel"],
                                        user, name, options or {}, subcommand=subcommand, member_permissions=perms,
                                        bypass_command_permissions=bypass)
    resp = await rec.wait_response(timeout=3.0)
    assert time.monotonic() - started < 3.0
    return rec, resp


def embed_text(resp) -> str:
    data = resp.get("data") or resp
    return "\n".join(str(e.get("title", "")) + "\n" + str(e.get("description", "")) for e in data.get("embeds", []))


async def test_search_finds_kubernetes_post_first_and_pages(fake, world):
    rec, resp = await command(fake, world, "search", {"query": "kubernetes"})
    data = resp["data"]
    assert data["flags"] & EPHEMERAL
    desc = data["embeds"][0]["description"]
    first = desc.split("\n\n")[0]
    assert "Rootless User-Space Kubernetes with GPU" in first
    assert "**Kubernetes**" in desc or "**kubernetes**" in desc.lower()
    footer = data["embeds"][0]["footer"]["text"]
    total = int(footer.rsplit(" ", 1)[1])
    assert footer.startswith("Results 1–") and total >= 1
    # "kubernetes" appears in more than one post; make paging observable with a broad query
    rec, resp = await command(fake, world, "search", {"query": "the"})
    footer = resp["data"]["embeds"][0]["footer"]["text"]
    assert footer.startswith("Results 1–5 of ")
    press = await fake.press_button(rec, "herald:search:next", rec.user_id)
    page2 = await press.wait_response(timeout=3.0)
    assert page2["type"] == 7  # UPDATE_MESSAGE
    assert page2["data"]["embeds"][0]["footer"]["text"].startswith("Results 6–")
    # another member cannot turn the pages
    stranger = fake.add_user(username="stranger")
    fake.add_member(world["guild"], stranger)
    press = await fake.press_button(rec, "herald:search:prev", stranger)
    denied = await press.wait_response(timeout=3.0)
    assert denied["type"] == 4 and denied["data"]["flags"] & EPHEMERAL
    assert "Only the member who searched" in denied["data"]["content"]


async def test_search_stemming_diacritics_phrase_and_public(fake, world):
    _, resp = await command(fake, world, "search", {"query": "orchestrating"})
    assert "Orchestration" in embed_text(resp)
    _, resp = await command(fake, world, "search", {"query": "\"user-space kubernetes\"", "public": True})
    assert not (resp["data"].get("flags", 0) & EPHEMERAL)
    assert "Rootless User-Space Kubernetes with GPU" in embed_text(resp)


HOSTILE = ['"', '""', '"unclosed', "*", "-", "-kubernetes", "NEAR", "NEAR(a b)", "a AND", "OR OR", "AND",
           "(", ")", "((kubernetes", "kube*", "title:x", "^x", "🎉🦕", "x" * 1000, "k " * 500, "   ", "'; DROP TABLE entries;--",
           "\\", "NOT", "{a}", "a:b:c"]


async def test_hostile_queries_all_answered(fake, world):
    for q in HOSTILE:
        _, resp = await command(fake, world, "search", {"query": q})
        text = embed_text(resp)
        assert resp["type"] == 4, q
        assert "went wrong" not in (resp["data"].get("content") or ""), q
        assert "Search:" in text, q


async def test_recent_newest_first(fake, world):
    _, resp = await command(fake, world, "recent", {"count": 3})
    desc = resp["data"]["embeds"][0]["description"]
    assert desc.index("Treading Water") < desc.index("Observation") < desc.index("I Love You")
    assert "For Coach" not in desc


async def test_guild_isolation(fake, world):
    _, resp = await command(fake, world, "search", {"query": "kubernetes"}, guild=world["other_guild"])
    text = embed_text(resp)
    assert "Secret kubernetes plans" in text and "Rootless" not in text and "Results 1–1 of 1" in str(resp)
    _, resp = await command(fake, world, "search", {"query": "kubernetes"})
    assert "Secret" not in embed_text(resp)
    _, resp = await command(fake, world, "recent", {"count": 10}, guild=world["other_guild"])
    assert "Treading Water" not in embed_text(resp)
    _, resp = await command(fake, world, "feed", subcommand="list", guild=world["other_guild"])
    text = embed_text(resp)
    assert "secret-feed" in text and "VanessaSaurus" not in text and "**vsoch**" not in text
    _, resp = await command(fake, world, "feed", {"feed": "vsoch"}, subcommand="pause", guild=world["other_guild"])
    assert "No feed named" in resp["data"]["content"]
    _, resp = await command(fake, world, "feed", subcommand="list")
    text = embed_text(resp)
    assert "vsoch" in text and "from config" in text and "secret-feed" not in text


async def test_feed_commands_need_manage_server(fake, world):
    with pytest.raises(PermissionError):  # Discord hides the command (default_member_permissions)
        await fake.send_slash_command(world["guild"], world["channel"], world["member"], "feed",
                                      {"url": "https://example.org/feed", "channel": world["channel"]},
                                      subcommand="add", member_permissions=["send_messages"])
    # ... and a server that overrode that default still gets refused at run time
    _, resp = await command(fake, world, "feed", {"url": "https://example.org/feed", "channel": world["channel"]},
                            subcommand="add", user=world["member"], perms=["send_messages"], bypass=True)
    assert resp["data"]["flags"] & EPHEMERAL
    assert "Manage Server" in resp["data"]["content"]


async def _add(fake, world, url, backfill=None):
    options = {"url": url, "channel": world["channel"]}
    if backfill is not None:
        options["backfill"] = backfill
    rec, resp = await command(fake, world, "feed", options, subcommand="add")
    assert resp["type"] == 5  # deferred: it fetches
    [follow] = await rec.wait_followups(1, timeout=10)
    return follow


INTERNAL_TARGETS = [
    "http://127.0.0.1:{port}/feed.xml", "http://localhost:{port}/feed.xml", "http://10.0.0.5/feed.xml",
    "http://192.168.1.1/feed.xml", "http://169.254.169.254/latest/meta-data", "http://[::1]:{port}/feed.xml",
    "http://[fe80::1]/feed.xml", "http://intranet.example:{port}/feed.xml", "http://metadata.example/feed.xml",
    "http://blog.example:{port}/to-loopback", "http://blog.example:{port}/to-private-name",
    "file:///etc/passwd", "ftp://example.org/feed.xml",
]


async def test_feed_add_refuses_internal_addresses(fake, world):
    for target in INTERNAL_TARGETS:
        follow = await _add(fake, world, target.format(port=world["site"].port))
        text = follow["content"]
        assert "cannot be used" in text or "refused" in text, (target, text)
        assert "Added" not in text
    feeds = await world["bot"].storage.list_feeds(world["guild"])
    assert [f.name for f in feeds] == ["vsoch"]


async def test_feed_add_discovers_feed_from_html_page(fake, world):
    follow = await _add(fake, world, world["site"].url("/blog/"), backfill=1)
    assert "Added **VanessaSaurus**" in follow["content"]
    assert "found on" in follow["content"]
    assert follow["embeds"][0]["title"] == "Treading Water"  # the newest entry, as it will be announced
    feeds = await world["bot"].storage.list_feeds(world["guild"])
    assert world["site"].url("/feed.xml") in [f.url for f in feeds]
    # refused the second time in the same channel
    follow = await _add(fake, world, world["site"].url("/feed.xml"))
    assert "already announced" in follow["content"]


async def test_feed_add_not_a_feed(fake, world):
    follow = await _add(fake, world, world["site"].url("/plain.html"))
    assert "not a feed" in follow["content"] and "Added" not in follow["content"]


async def test_feed_pause_resume_status_test_remove(fake, world):
    _, resp = await command(fake, world, "feed", {"feed": "vsoch"}, subcommand="pause")
    assert "paused" in resp["data"]["content"]
    _, resp = await command(fake, world, "feed", {"feed": "vsoch"}, subcommand="status")
    assert "paused" in str(resp["data"]["embeds"][0]["fields"][0]["value"])
    _, resp = await command(fake, world, "feed", {"feed": "vsoch"}, subcommand="resume")
    assert "resumed" in resp["data"]["content"]
    _, resp = await command(fake, world, "feed", {"feed": "vsoch"}, subcommand="status")
    value = resp["data"]["embeds"][0]["fields"][0]["value"]
    assert "10 entries stored" in value
    _, resp = await command(fake, world, "feed", {"feed": "vsoch"}, subcommand="test")
    assert resp["data"]["flags"] & EPHEMERAL and resp["data"]["embeds"][0]["title"] == "Treading Water"
    _, resp = await command(fake, world, "feed", {"feed": "vsoch"}, subcommand="remove")
    assert "config file" in resp["data"]["content"]
    _, resp = await command(fake, world, "feed", {"feed": "nope"}, subcommand="status")
    assert "No feed named" in resp["data"]["content"]


async def test_autocomplete_caps_at_25_prefix_first(fake, world):
    storage = world["bot"].storage
    for i in range(100):
        await storage.add_feed(f"https://example.org/f{i}.xml", target=f"channel:{world['channel']}",
                               guild_id=world["guild"], name=f"news {i:03d}", backfill=0, now=time.time())
    await storage.add_feed("https://example.org/zz.xml", target=f"channel:{world['channel']}",
                           guild_id=world["guild"], name="all the news", backfill=0, now=time.time())
    started = time.monotonic()
    rec = await fake.send_autocomplete(world["guild"], world["channel"], None, "feed", {"feed": "news"},
                                       focused="feed", subcommand="status")
    resp = await rec.wait_response(timeout=3.0)
    assert time.monotonic() - started < 3.0
    choices = resp["data"]["choices"]
    assert len(choices) == 25
    assert all(c["name"].startswith("news") for c in choices)
    rec = await fake.send_autocomplete(world["guild"], world["channel"], None, "search", {"query": "x", "feed": "the n"},
                                       focused="feed")
    resp = await rec.wait_response(timeout=3.0)
    assert [c["name"] for c in resp["data"]["choices"]] == ["all the news"]


async def test_commands_answer_within_3s_with_latency(fake, world):
    fake.latency = 0.25
    # each command's own answer (not an error reply), within Discord's 3 s (command() checks the time)
    for name, opts, sub, shows in [
        ("search", {"query": "kubernetes"}, None, "Rootless User-Space Kubernetes with GPU"),
        ("recent", {}, None, "Treading Water"),
        ("feed", {}, "list", "vsoch"),
        ("feed", {"feed": "vsoch"}, "status", "10 entries stored"),
    ]:
        _, resp = await command(fake, world, name, opts, subcommand=sub)
        assert resp["type"] == 4, (name, sub, resp)  # CHANNEL_MESSAGE_WITH_SOURCE: answered, not deferred
        data = resp["data"]
        assert "went wrong" not in (data.get("content") or ""), (name, sub, data)
        [embed] = data["embeds"]
        text = embed_text(resp) + "".join(str(f["value"]) for f in embed.get("fields", []))
        assert shows in text, (name, sub, text)


async def test_command_sync_only_when_changed(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    config = make_config(tmp_path, [{"url": SEED.as_uri(), "channels": [channel]}], fake=fake)
    async with running_bot(config, TOKEN):
        pass
    assert fake.command_sync_count() == 1
    async with running_bot(config, TOKEN):
        pass
    assert fake.command_sync_count() == 1  # unchanged: not synced again
    config = make_config(tmp_path, [{"url": SEED.as_uri(), "channels": [channel]}], fake=fake, discord={"guild_ids": [guild]})
    async with running_bot(config, TOKEN):
        pass
    assert fake.command_sync_count(guild) == 1


async def test_feed_add_quota_and_missing_permission(fake, world):
    bot = world["bot"]
    noembed = fake.add_channel(world["guild"], "noembed", perms=["view_channel", "send_messages"])
    rec, resp = await command(fake, world, "feed", {"url": world["site"].url("/feed.xml"), "channel": noembed},
                              subcommand="add")
    [follow] = await rec.wait_followups(1, timeout=10)
    assert "lacks Embed Links" in follow["content"]
    object.__setattr__(bot.config.discord, "feed_quota", 0)
    follow = await _add(fake, world, world["site"].url("/feed.xml"))
    assert "limit (0)" in follow["content"] and "Added" not in follow["content"]


async def test_unexpected_error_gets_an_error_id_that_is_logged(fake, world, monkeypatch, caplog):
    async def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(world["bot"].storage, "recent", broken)
    _, resp = await command(fake, world, "recent", {})
    content = resp["data"]["content"]
    assert resp["data"]["flags"] & EPHEMERAL
    eid = content.split("error id `")[1].split("`")[0]
    assert len(eid) == 8
    assert any(eid in r.getMessage() and r.exc_info for r in caplog.records)
    assert "database on fire" not in content  # internals stay in the log


async def test_cli_search_and_feeds_list(tmp_path, fake, world):
    import json
    import subprocess
    import sys

    bot = world["bot"]
    db = bot.config.storage_url()
    cfg = tmp_path / "cli.toml"
    cfg.write_text(f'[storage]\nurl = "{db}"\n')
    run = lambda *a: subprocess.run([sys.executable, "-m", "bot", *a, "--config", str(cfg)], capture_output=True,
                                    text=True, timeout=60)
    out = run("search", "kubernetes", "--feed", "vsoch", "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout.splitlines()[0])
    assert first["title"] == "Rootless User-Space Kubernetes with GPU" and "**" in first["snippet"]
    out = run("search", "kubernetes", "--feed", "secret-feed")
    assert out.returncode == 0 and "Secret kubernetes plans" in out.stdout and "Rootless" not in out.stdout
    out = run("search", '"NEAR" (*')
    assert out.returncode == 0 and "no results" in out.stdout
    out = run("feeds", "list")
    assert out.returncode == 0 and "vsoch" in out.stdout and "secret-feed" in out.stdout


# --- feed-controlled text in commands and notices -----------------------------------------------------------

HOSTILE_TITLE = "[https://discord.com/settings](https://evil.example/steal) `x`"
HOSTILE_REASON = "Oops [click](https://evil.example/steal) `y`"
OUR_CODE = {"/feed resume", "/feed add"}  # the code spans Herald's own texts write


def assert_shown_safely(md: str, *visible: str, own_code: set[str] = OUR_CODE) -> None:
    """Read as Discord does: no link to evil.example, no code span Herald did not write, and
    every untrusted text still visible as written."""
    r = read(md)
    assert not [link for link in r.links if "evil.example" in (urlsplit(link[1]).hostname or "")], (md, r.links)
    code = {s.text for s in r.spans if s.kind in ("code", "codeblock")}
    assert code <= own_code, (md, code)
    assert all(s.text.startswith(("<#", "<t:")) for s in r.of("mention")), md  # Herald names channels and dates
    for text in visible:
        assert text in r.text, (text, r.text)


async def polled_once(bot, url: str, timeout: float = 10.0) -> None:
    """Waits for the poller's cycles until the feed at ``url`` has been fetched (its entries stored)."""
    poller = bot.herald.poller
    while not any(f.url == url and f.last_success for f in await bot.storage.list_feeds()):
        poller.cycle_done.clear()
        poller.wake()
        await asyncio.wait_for(poller.cycle_done.wait(), timeout)


async def test_feed_text_and_server_errors_show_as_written_everywhere(fake, world):
    bot, site, channel = world["bot"], world["site"], world["channel"]
    site.pages["/hostile.xml"] = (rss([{"title": HOSTILE_TITLE, "link": "https://blog.example/p/1", "guid": "h1",
                                        "description": "zanzibar orchestration", "date": 1_700_000_000}],
                                      title=HOSTILE_TITLE), "application/rss+xml")
    follow = await _add(fake, world, site.url("/hostile.xml"))
    assert "Added" in follow["content"]
    assert_shown_safely(follow["content"], HOSTILE_TITLE)
    await polled_once(bot, site.url("/hostile.xml"))
    site.failing["/hostile.xml"] = (500, HOSTILE_REASON)
    await bot.herald.poller.poll_due(everything=True)
    [info] = [f for f in await bot.storage.list_feeds(world["guild"]) if f.url == site.url("/hostile.xml")]
    assert info.name == HOSTILE_TITLE and HOSTILE_REASON in (info.last_error or ""), info

    _, resp = await command(fake, world, "search", {"query": "zanzibar", "public": True})
    desc = resp["data"]["embeds"][0]["description"]
    assert_shown_safely(desc, HOSTILE_TITLE)
    assert read(desc).links == [(HOSTILE_TITLE + " → blog.example", "https://blog.example/p/1")]  # names the real host
    _, resp = await command(fake, world, "recent", {"feed": HOSTILE_TITLE})
    assert_shown_safely(resp["data"]["embeds"][0]["description"], HOSTILE_TITLE)
    _, resp = await command(fake, world, "feed", subcommand="list")
    assert_shown_safely(resp["data"]["embeds"][0]["description"], HOSTILE_TITLE, HOSTILE_REASON)
    _, resp = await command(fake, world, "feed", {"feed": HOSTILE_TITLE}, subcommand="status")
    [field] = resp["data"]["embeds"][0]["fields"]
    assert_shown_safely(field["name"], HOSTILE_TITLE)
    assert_shown_safely(field["value"], HOSTILE_REASON)
    for sub in ("pause", "resume"):
        _, resp = await command(fake, world, "feed", {"feed": HOSTILE_TITLE}, subcommand=sub)
        assert_shown_safely(resp["data"]["content"], HOSTILE_TITLE)

    # the notices: a feed paused for failing, and a channel Discord refuses
    resume = f"herald feeds resume {info.id}"  # a code span cannot show the name's backtick: the id instead
    await bot.herald._feed_paused(FeedState(id=info.id, url=info.url, title=HOSTILE_TITLE), f"HTTP 500 {HOSTILE_REASON}")
    await bot.herald._target_broken(f"channel:{channel}", HOSTILE_REASON)
    def two_notices():
        sent = [m for m in fake.messages(channel) if m["via"] == "bot"]  # not the public /search answer
        return sent if len(sent) >= 2 else None

    notices = await fake.wait_until(two_notices, timeout=5.0, what="two notices")
    assert "was paused" in notices[0]["content"] and "Stopped announcing" in notices[1]["content"]
    for notice in notices:
        assert_shown_safely(notice["content"], HOSTILE_TITLE, HOSTILE_REASON, own_code=OUR_CODE | {resume})
        assert resume in {s.text for s in read(notice["content"]).of("code")}
