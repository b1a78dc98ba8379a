"""Tests of the fake Discord server, driven by the real discord.py client.

Every test talks to FakeDiscord on 127.0.0.1 only; discord.py is pointed at it with
point_discord_py_at. Synchronisation is done with events and fake.wait_until, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from typing import Any, AsyncIterator, Dict, Optional

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.http import Route

try:
    from tests.fakediscord import FakeDiscord, InteractionFailed, limits, permissions, point_discord_py_at
except ImportError:  # tests/ on sys.path instead of the repo root
    from fakediscord import FakeDiscord, InteractionFailed, limits, permissions, point_discord_py_at

TOKEN = "fake-token.for-herald.tests"
READY_TIMEOUT = 10.0


def guild_intents() -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


@contextlib.asynccontextmanager
async def fake_discord(**kwargs: Any) -> AsyncIterator[FakeDiscord]:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("message_rate", (20, 0.5))
    original_base = discord.http.Route.BASE
    async with FakeDiscord(**kwargs) as fake:
        with point_discord_py_at(fake):
            assert discord.http.Route.BASE == fake.api_base
            yield fake
        assert discord.http.Route.BASE == original_base  # the patch was undone
        assert not fake.internal_errors, fake.internal_errors


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with fake_discord() as f:
        yield f


class World:
    def __init__(self, fake: FakeDiscord) -> None:
        self.guild = fake.add_guild(name="Herald Test")
        self.text = fake.add_channel(self.guild, "news", 0)
        self.announcement = fake.add_channel(self.guild, "announcements", 5)
        self.forum = fake.add_channel(self.guild, "feeds-forum", 15)
        self.thread = fake.add_channel(self.guild, "a-thread", 11, parent_id=self.text)
        self.read_only = fake.add_channel(self.guild, "read-only", 0, perms={"view_channel", "read_message_history"})
        self.no_embeds = fake.add_channel(
            self.guild, "no-embeds", 0, perms={"view_channel", "send_messages", "read_message_history"}
        )
        self.hidden = fake.add_channel(self.guild, "hidden", 0, perms=0)
        self.user = fake.add_member(self.guild, username="reader")


@contextlib.asynccontextmanager
async def running(client: discord.Client, token: str = TOKEN) -> AsyncIterator[discord.Client]:
    """Start the real client against the fake, wait for on_ready, always close it."""
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    client.event(on_ready)
    task = asyncio.create_task(client.start(token))
    waiter = asyncio.create_task(ready.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what start() raised
            raise AssertionError("client.start() returned before READY")
        assert ready.is_set(), "client never became ready"
        yield client
    finally:
        waiter.cancel()
        await client.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)


class FastClient(discord.Client):
    async def before_identify_hook(self, shard_id: Optional[int], *, initial: bool = False) -> None:
        pass  # discord.py waits 5 s before a re-IDENTIFY; not needed against the fake


def new_client(**kwargs: Any) -> discord.Client:
    return FastClient(intents=kwargs.pop("intents", guild_intents()), guild_ready_timeout=0.05, **kwargs)


def error_at(errors: Dict[str, Any], *path: Any) -> list:
    node: Any = errors
    for part in path:
        node = node[str(part)]
    return node["_errors"]


def post_message(client: discord.Client, channel_id: int, body: Dict[str, Any]):
    return client.http.request(Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id), json=body)


RELEVANT_BITS = [
    "view_channel",
    "send_messages",
    "send_messages_in_threads",
    "embed_links",
    "attach_files",
    "read_message_history",
    "create_public_threads",
    "manage_webhooks",
    "mention_everyone",
]


# --------------------------------------------------------------------------- login / gateway


@pytest.mark.asyncio
async def test_permission_constants_match_discord_py() -> None:
    for name, bit in permissions.FLAGS.items():
        py_name = {"use_vad": "use_voice_activation", "manage_guild_expressions": "manage_expressions",
                   "create_guild_expressions": "create_expressions"}.get(name, name)
        assert discord.Permissions(**{py_name: True}).value == bit, name


@pytest.mark.asyncio
async def test_login_ready_and_guild_create_give_usable_guild(fake: FakeDiscord) -> None:
    w = World(fake)
    muted = fake.add_role(w.guild, "muted", 0, assign_to_bot=True)
    role_denied = fake.add_channel(
        w.guild, "role-denied", 0,
        overwrites=[{"id": muted, "type": 0, "allow": 0, "deny": permissions.FLAGS["send_messages"]}],
    )
    client = new_client()
    async with running(client):
        guild = client.get_guild(w.guild)
        assert guild is not None and guild.name == "Herald Test" and not guild.unavailable
        assert guild.get_role(muted) in guild.me.roles
        assert guild.me is not None and guild.me.id == fake.bot_user_id
        assert client.user.id == fake.bot_user_id and client.application_id == fake.app_id
        types = {c.id: c.type for c in guild.channels}
        assert types[w.text] is discord.ChannelType.text
        assert types[w.announcement] is discord.ChannelType.news
        assert types[w.forum] is discord.ChannelType.forum
        thread = guild.get_thread(w.thread)
        assert thread is not None and thread.parent_id == w.text

        # discord.py's view of the bot's permissions agrees with what the fake's REST enforces.
        for cid in (w.text, w.announcement, w.forum, w.thread, w.read_only, w.no_embeds, w.hidden, role_denied):
            channel = guild.get_channel_or_thread(cid)
            mine = channel.permissions_for(guild.me)
            theirs = fake.bot_permissions(cid)
            for bit in RELEVANT_BITS:
                assert getattr(mine, bit) == (bit in theirs), (channel.name, bit)
        assert not guild.get_channel(w.read_only).permissions_for(guild.me).send_messages
        assert not guild.get_channel(w.hidden).permissions_for(guild.me).view_channel
        assert not guild.get_channel(role_denied).permissions_for(guild.me).send_messages
        with pytest.raises(discord.Forbidden):
            await guild.get_channel(role_denied).send("denied through a role overwrite")

    # The client asked only for what it needs, over the documented gateway URL.
    assert fake.identify_intents == [guild_intents().value]
    conn = fake.gateway_connections[0]
    assert conn["query"] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    assert [r.path for r in fake.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]
    assert all("Authorization" not in r.headers for r in fake.requests)


@pytest.mark.asyncio
async def test_json_content_type_is_exact_and_unknown_routes_are_recorded(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": f"Bot {TOKEN}"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["id"] == str(fake.bot_user_id)
        async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot nope"}) as resp:
            assert resp.status == 401
            assert await resp.json() == {"message": "401: Unauthorized", "code": 0}
        async with http.get(f"{fake.api_base}/gateway/bot", headers={"Authorization": f"Bot {TOKEN}"}) as resp:
            assert (await resp.json())["url"] == fake.gateway_url
        async with http.get(f"{fake.api_base}/channels/1/pins", headers={"Authorization": f"Bot {TOKEN}"}) as resp:
            assert resp.status == 404
            assert await resp.json() == {"message": "404: Not Found", "code": 0}
        fake.set_token_valid(False)
        async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": f"Bot {TOKEN}"}) as resp:
            assert resp.status == 401
    assert [r.path for r in fake.unknown_routes] == ["/channels/1/pins"]


@pytest.mark.asyncio
async def test_bad_token_is_login_failure(fake: FakeDiscord) -> None:
    World(fake)
    client = new_client()
    with pytest.raises(discord.LoginFailure):
        async with running(client, token="not-the-token"):
            pass
    assert fake.requests[0].path == "/users/@me" and fake.requests[0].status == 401
    assert fake.identifies == []


@pytest.mark.asyncio
async def test_gateway_rejects_bad_token_and_privileged_intents(fake: FakeDiscord) -> None:
    World(fake)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
            hello = await ws.receive_json()
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == fake.heartbeat_interval_ms
            await ws.send_json({"op": 1, "d": None})
            assert (await ws.receive_json())["op"] == 11
            await ws.send_json({"op": 2, "d": {"token": "bad", "intents": 1, "properties": {}}})
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4004
    intents = guild_intents()
    intents.message_content = True
    client = new_client(intents=intents)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running(client):
            pass
    assert fake.identify_intents[-1] == intents.value


@pytest.mark.asyncio
async def test_drop_gateway_resumes_and_replays_missed_events(fake: FakeDiscord) -> None:
    w = World(fake)
    client = new_client()
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    client.event(on_resumed)
    async with running(client):
        session_id = client.ws.session_id
        async with fake.gateway_paused():
            await fake.drop_gateway()
            new_channel = fake.add_channel(w.guild, "created-during-outage", 0)
            await fake.settle()
            assert client.get_channel(new_channel) is None
        await asyncio.wait_for(resumed.wait(), 10)
        # Replayed frames come before RESUMED, so the client already has the channel.
        assert client.get_channel(new_channel) is not None
        assert len(fake.identifies) == 1, "the client must RESUME, not IDENTIFY again"
        assert [r["session_id"] for r in fake.resumes] == [session_id]
        assert [f["t"] for f in fake.replayed] == ["CHANNEL_CREATE"]
        assert fake.replayed[0]["s"] == fake.resumes[0]["seq"] + 1
        assert fake.gateway_connections[-1]["path"] == "/gateway/resume"  # READY's resume_gateway_url

        # A session the server forgot is invalidated: the client has to IDENTIFY again.
        await fake.drop_gateway(resumable=False)
        await fake.wait_until(lambda: len(fake.identifies) == 2 and fake.connected_sessions == 1, 10,
                              what="re-IDENTIFY after INVALID_SESSION")
        assert len(fake.resumes) == 2


# --------------------------------------------------------------------------- messages


@pytest.mark.asyncio
async def test_send_message_is_recorded_and_listed(fake: FakeDiscord) -> None:
    w = World(fake)
    async with running(new_client()) as client:
        data = await post_message(client, w.text, {"content": "first", "allowed_mentions": {"parse": []}})
        assert data["content"] == "first" and data["author"]["id"] == str(fake.bot_user_id)
        channel = client.get_channel(w.announcement)
        embed = discord.Embed(title="Entry", description="Summary", url="https://example.org/1")
        msg = await channel.send("second", embed=embed)
        assert msg.embeds[0].title == "Entry"
        await channel.send("third @everyone", allowed_mentions=discord.AllowedMentions.none())
        in_thread = await client.get_channel(w.text).get_thread(w.thread).send("in thread")
        assert in_thread.channel.id == w.thread

        recorded = fake.messages(w.text)
        assert [m["content"] for m in recorded] == ["first"]
        assert recorded[0]["allowed_mentions"] == {"parse": []}
        ann = fake.messages(w.announcement)
        assert [m["content"] for m in ann] == ["second", "third @everyone"]
        assert ann[0]["embeds"][0]["url"] == "https://example.org/1"
        assert ann[1]["mention_everyone"] is False  # AllowedMentions.none() was honoured
        assert [m["content"] for m in fake.messages(w.thread)] == ["in thread"]

        posted = fake.requests_to("POST /channels/{channel_id}/messages")
        assert len(posted) == 4 and all(r.status == 200 for r in posted)
        assert posted[0].json["content"] == "first"

        await msg.publish()  # crosspost in the announcement channel
        assert fake.messages(w.announcement)[0]["flags"] & 1
        with pytest.raises(discord.HTTPException) as info:
            await msg.publish()
        assert info.value.code == 40033

        upload = await client.get_channel(w.text).send("with file", file=discord.File(io.BytesIO(b"x" * 1234), "feed.opml"))
        assert upload.attachments[0].filename == "feed.opml" and upload.attachments[0].size == 1234
        assert fake.requests[-1].files[0]["size"] == 1234 and fake.requests[-1].json["content"] == "with file"
        with pytest.raises(discord.Forbidden):  # no Attach Files there
            await client.get_channel(w.no_embeds).send(file=discord.File(io.BytesIO(b"x"), "a.txt"))

        history = await client.http.request(
            Route("GET", "/channels/{channel_id}/messages", channel_id=w.announcement), params={"limit": 1}
        )
        assert [m["content"] for m in history] == ["third @everyone"]  # newest first, limit honoured


@pytest.mark.asyncio
async def test_message_create_events_respect_intents(fake: FakeDiscord) -> None:
    w = World(fake)
    intents = guild_intents()
    intents.guild_messages = True
    client = new_client(intents=intents)
    async with running(client):
        own = client.wait_for("message", check=lambda m: m.author.id == fake.bot_user_id, timeout=5)
        await client.get_channel(w.text).send("from the bot")
        assert (await own).content == "from the bot"
        url = fake.add_webhook(w.text)
        from_hook = client.wait_for("message", check=lambda m: m.webhook_id is not None, timeout=5)
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"content": "secret"}) as resp:
                assert resp.status == 204
        # Without the privileged MESSAGE_CONTENT intent, other authors' content is blanked.
        assert (await from_hook).content == ""
    assert fake.identify_intents == [intents.value]


LIMIT_CASES = [
    ("content", {"content": "x" * 2001}, ("content",), "BASE_TYPE_MAX_LENGTH"),
    ("embed count", {"embeds": [{"title": "t"}] * 11}, ("embeds",), "BASE_TYPE_MAX_LENGTH"),
    ("title", {"embeds": [{"title": "x" * 257}]}, ("embeds", 0, "title"), "BASE_TYPE_MAX_LENGTH"),
    ("description", {"embeds": [{"description": "x" * 4097}]}, ("embeds", 0, "description"), "BASE_TYPE_MAX_LENGTH"),
    ("field count", {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, ("embeds", 0, "fields"), "BASE_TYPE_MAX_LENGTH"),
    ("field name", {"embeds": [{"fields": [{"name": "x" * 257, "value": "v"}]}]}, ("embeds", 0, "fields", 0, "name"), "BASE_TYPE_MAX_LENGTH"),
    ("field value", {"embeds": [{"fields": [{"name": "n", "value": "x" * 1025}]}]}, ("embeds", 0, "fields", 0, "value"), "BASE_TYPE_MAX_LENGTH"),
    ("empty field value", {"embeds": [{"fields": [{"name": "n", "value": ""}]}]}, ("embeds", 0, "fields", 0, "value"), "BASE_TYPE_REQUIRED"),
    ("footer", {"embeds": [{"footer": {"text": "x" * 2049}}]}, ("embeds", 0, "footer", "text"), "BASE_TYPE_MAX_LENGTH"),
    ("author", {"embeds": [{"author": {"name": "x" * 257}}]}, ("embeds", 0, "author", "name"), "BASE_TYPE_MAX_LENGTH"),
    ("total", {"embeds": [{"description": "x" * 4000}, {"description": "y" * 2001}]}, ("embeds",), "MAX_EMBED_SIZE_EXCEEDED"),
    ("nonce", {"content": "hi", "nonce": "n" * 26}, ("nonce",), "BASE_TYPE_MAX_LENGTH"),
    ("relative url", {"embeds": [{"title": "t", "url": "/relative/link"}]}, ("embeds", 0, "url"), "URL_TYPE_INVALID_URL"),
]

AT_LIMIT = [
    {"content": "x" * 2000},
    {"embeds": [{"title": "t"}] * 10},
    {"embeds": [{"title": "x" * 256, "description": "y" * 4096, "footer": {"text": "z" * 1648}}]},  # exactly 6000
    {"embeds": [{"fields": [{"name": "x" * 256, "value": "y" * 1024}] * 4}]},
    {"content": "hi", "nonce": "n" * 25},
]


@pytest.mark.asyncio
async def test_message_limits_answer_400_with_discord_error_shape(fake: FakeDiscord) -> None:
    w = World(fake)
    async with running(new_client()) as client:
        for name, body, path, code in LIMIT_CASES:
            with pytest.raises(discord.HTTPException) as info:
                await post_message(client, w.text, body)
            assert info.value.status == 400 and info.value.code == 50035, name
            response = fake.requests[-1].response
            assert response["message"] == "Invalid Form Body", name
            assert code in [e["code"] for e in error_at(response["errors"], *path)], name
        content_error = error_at(fake.requests_to("POST /channels/{channel_id}/messages")[0].response["errors"], "content")
        assert content_error == [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]

        with pytest.raises(discord.HTTPException) as info:
            await post_message(client, w.text, {"content": "", "embeds": []})
        assert info.value.status == 400 and info.value.code == 50006

        assert fake.messages(w.text) == []
        for body in AT_LIMIT:
            await post_message(client, w.text, body)
        assert len(fake.messages(w.text)) == len(AT_LIMIT)

        # The same rules apply to forum posts (thread name) and webhooks (username).
        forum = client.get_channel(w.forum)
        with pytest.raises(discord.HTTPException) as info:
            await forum.create_thread(name="n" * 101, content="body")
        assert info.value.code == 50035
        assert error_at(fake.requests[-1].response["errors"], "name")[0]["code"] == "BASE_TYPE_BAD_LENGTH"
        with pytest.raises(discord.HTTPException) as info:
            await forum.create_thread(name="ok", content="x" * 2001)
        assert error_at(fake.requests[-1].response["errors"], "message", "content")


@pytest.mark.asyncio
async def test_nonce_with_enforce_nonce_dedupes(fake: FakeDiscord) -> None:
    w = World(fake)
    async with running(new_client()) as client:
        channel = client.get_channel(w.text)
        first = await channel.send("entry 1", nonce="feed-1-entry-1")
        again = await channel.send("entry 1", nonce="feed-1-entry-1")
        assert again.id == first.id
        assert [m["content"] for m in fake.messages(w.text)] == ["entry 1"]
        assert fake.requests_to("POST /channels/{channel_id}/messages")[-1].json["enforce_nonce"] is True

        # Without enforce_nonce a repeated nonce is just a new message.
        await post_message(client, w.text, {"content": "a", "nonce": "same"})
        await post_message(client, w.text, {"content": "a", "nonce": "same"})
        assert len(fake.messages(w.text)) == 3
        # Same nonce in another channel is another message.
        await client.get_channel(w.announcement).send("entry 1", nonce="feed-1-entry-1")
        assert len(fake.messages(w.announcement)) == 1


# --------------------------------------------------------------------------- rate limits and faults


@pytest.mark.asyncio
async def test_burst_is_paced_by_discord_py_without_429s() -> None:
    async with fake_discord(message_rate=(3, 0.5)) as fake:
        w = World(fake)
        async with running(new_client()) as client:
            channel = client.get_channel(w.text)
            started = time.monotonic()
            await asyncio.gather(*(channel.send(f"entry {i}") for i in range(9)))
            elapsed = time.monotonic() - started
        assert fake.count_status(429) == 0
        assert len(fake.messages(w.text)) == 9
        assert elapsed >= 0.9, "9 messages at 3 per 0.5 s need at least two waits"
        posted = fake.requests_to("POST /channels/{channel_id}/messages")
        assert len(posted) == 9


@pytest.mark.asyncio
async def test_rate_limit_headers_and_429_shape_for_clients_that_ignore_them() -> None:
    async with fake_discord(message_rate=(2, 5.0), global_rate=4) as fake:
        w = World(fake)
        auth = {"Authorization": f"Bot {TOKEN}"}
        url = f"{fake.api_base}/channels/{w.text}/messages"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"content": "1"}, headers=auth) as resp:
                assert resp.status == 200
                assert resp.headers["X-RateLimit-Limit"] == "2"
                assert resp.headers["X-RateLimit-Remaining"] == "1"
                assert 0 < float(resp.headers["X-RateLimit-Reset-After"]) <= 5.0
                assert float(resp.headers["X-RateLimit-Reset"]) > time.time()
                bucket = resp.headers["X-RateLimit-Bucket"]
            async with http.post(url, json={"content": "2"}, headers=auth) as resp:
                assert resp.headers["X-RateLimit-Remaining"] == "0"
            async with http.post(url, json={"content": "3"}, headers=auth) as resp:
                assert resp.status == 429
                assert resp.headers["Via"] and resp.headers["X-RateLimit-Scope"] == "user"
                assert resp.headers["X-RateLimit-Bucket"] == bucket
                assert resp.headers["Content-Type"] == "application/json"
                body = await resp.json()
                assert body["global"] is False and 0 < body["retry_after"] <= 5.0
            # Fourth authorised request this second: over the global limit of 4? (3 so far) -> fifth is.
            async with http.get(f"{fake.api_base}/users/@me", headers=auth) as resp:
                assert resp.status == 200
            async with http.get(f"{fake.api_base}/users/@me", headers=auth) as resp:
                assert resp.status == 429
                assert resp.headers["X-RateLimit-Global"] == "true"
                assert resp.headers["X-RateLimit-Scope"] == "global"
                assert (await resp.json())["global"] is True
        assert len(fake.messages(w.text)) == 2
        assert fake.count_status(429) == 2


@pytest.mark.asyncio
async def test_injected_429_and_5xx_are_retried_by_discord_py(fake: FakeDiscord) -> None:
    w = World(fake)
    async with running(new_client()) as client:
        channel = client.get_channel(w.text)
        fake.rate_limit_next(1, retry_after=0.05, route="POST /channels/{channel_id}/messages")
        await channel.send("after a 429")
        fake.rate_limit_next(1, retry_after=0.05, global_=True, route="POST /channels/{channel_id}/messages")
        await channel.send("after a global 429")
        fake.fail_next(1, status=500, route=f"/channels/{w.text}/messages")
        await channel.send("after a 500")
        statuses = [r.status for r in fake.requests_to("POST /channels/{channel_id}/messages")]
        assert statuses == [429, 200, 429, 200, 500, 200]
        assert [m["content"] for m in fake.messages(w.text)] == ["after a 429", "after a global 429", "after a 500"]
        assert fake.count_status(429) == 2

        # Non-retryable statuses surface to the caller.
        fake.fail_next(1, status=503, route=lambda method, path: method == "GET")
        with pytest.raises(discord.DiscordServerError):
            await client.http.request(Route("GET", "/channels/{channel_id}", channel_id=w.text))

        # latency is applied to every response and can be changed at runtime
        fake.latency = 0.15
        started = time.monotonic()
        await client.http.request(Route("GET", "/channels/{channel_id}", channel_id=w.text))
        assert time.monotonic() - started >= 0.15
        fake.latency = 0.0


# --------------------------------------------------------------------------- permissions and missing things


@pytest.mark.asyncio
async def test_permissions_and_unknown_channels(fake: FakeDiscord) -> None:
    w = World(fake)
    async with running(new_client()) as client:
        with pytest.raises(discord.Forbidden) as info:
            await client.get_channel(w.read_only).send("nope")
        assert info.value.code == 50013
        with pytest.raises(discord.Forbidden) as info:
            await post_message(client, w.hidden, {"content": "nope"})
        assert info.value.code == 50001
        no_embeds = client.get_channel(w.no_embeds)
        await no_embeds.send("plain text is fine")
        with pytest.raises(discord.Forbidden) as info:
            await no_embeds.send(embed=discord.Embed(title="strict: no Embed Links"))
        assert info.value.code == 50013
        with pytest.raises(discord.NotFound) as info:
            await post_message(client, 424242424242424242, {"content": "x"})
        assert info.value.code == 10003
        with pytest.raises(discord.HTTPException) as info:
            await post_message(client, w.forum, {"content": "forums take posts, not messages"})
        assert info.value.code == 50008
        assert [m["content"] for m in fake.messages(w.no_embeds)] == ["plain text is fine"]

        # Changing permissions is pushed over the gateway, so discord.py stays in agreement.
        # (client.wait_for is registered before acting: fake.wait_until cannot see client-side state.)
        updated = client.wait_for("guild_channel_update", check=lambda before, after: after.id == w.text, timeout=5)
        fake.set_bot_permissions(w.text, {"view_channel"})
        await updated
        assert not client.get_channel(w.text).permissions_for(client.get_guild(w.guild).me).send_messages
        with pytest.raises(discord.Forbidden):
            await client.get_channel(w.text).send("now forbidden")
        fake.set_bot_permissions(w.forum, {"view_channel", "read_message_history"})
        await fake.settle()
        with pytest.raises(discord.Forbidden):
            await client.get_channel(w.forum).create_thread(name="post", content="no Send Messages")

        deleted = client.wait_for("guild_channel_delete", check=lambda c: c.id == w.announcement, timeout=5)
        fake.delete_channel(w.announcement)
        await deleted
        assert client.get_channel(w.announcement) is None
        with pytest.raises(discord.NotFound):
            await post_message(client, w.announcement, {"content": "gone"})


# --------------------------------------------------------------------------- webhooks, forums, threads


@pytest.mark.asyncio
async def test_webhook_execution_with_username_and_avatar(fake: FakeDiscord) -> None:
    w = World(fake)
    url = fake.add_webhook(w.text)
    webhook_id, token = url.rsplit("/", 2)[1:]
    assert url == f"{fake.api_base}/webhooks/{webhook_id}/{token}"
    async with aiohttp.ClientSession() as session:
        hook = discord.Webhook.partial(int(webhook_id), token, session=session)
        sent = await hook.send(
            "New entry", username="Example Feed", avatar_url="https://example.org/icon.png", wait=True,
            embed=discord.Embed(title="Entry title"),
        )
        assert sent.author.name == "Example Feed" and sent.webhook_id == int(webhook_id)
        with pytest.raises(discord.HTTPException) as info:
            await hook.send("x", username="u" * 81, wait=True)
        assert info.value.code == 50035
        with pytest.raises(discord.HTTPException) as info:
            await hook.send("x", username="Discord Updates", wait=True)
        assert error_at(fake.requests[-1].response["errors"], "username")[0]["code"] == "USERNAME_INVALID_CONTAINS"
        async with session.post(url, json={"content": "no wait"}) as resp:
            assert resp.status == 204
        async with session.post(url + "x", json={"content": "bad token"}) as resp:
            assert resp.status == 401
    recorded = fake.messages(w.text)
    assert [m["content"] for m in recorded] == ["New entry", "no wait"]
    assert recorded[0]["username"] == "Example Feed"
    assert recorded[0]["avatar_url"] == "https://example.org/icon.png"
    assert recorded[0]["author"]["username"] == "Example Feed" and recorded[0]["via"] == "webhook"
    assert recorded[1]["author"]["username"] == "Herald Feeds"  # the webhook's own name


@pytest.mark.asyncio
async def test_forum_posts_and_threads(fake: FakeDiscord) -> None:
    w = World(fake)
    async with running(new_client()) as client:
        forum = client.get_channel(w.forum)
        thread_event = client.wait_for("thread_create", timeout=5)
        created = await forum.create_thread(
            name="Release 1.2", content="Changelog", embed=discord.Embed(title="1.2", description="notes")
        )
        assert created.thread.name == "Release 1.2" and created.thread.parent_id == w.forum
        assert created.message.id == created.thread.id  # forum starter message has the thread's id
        posts = fake.threads(w.forum)
        assert [(p["name"], p["type"]) for p in posts] == [("Release 1.2", 11)]
        starter = fake.messages(created.thread.id)
        assert [m["content"] for m in starter] == ["Changelog"] and starter[0]["embeds"][0]["title"] == "1.2"
        assert (await thread_event).id == created.thread.id  # THREAD_CREATE reached the client
        assert client.get_guild(w.guild).get_thread(created.thread.id) is not None

        text = client.get_channel(w.text)
        msg = await text.send("announce")
        from_msg = await msg.create_thread(name="discussion")
        assert from_msg.id == msg.id
        plain = await text.create_thread(name="plain", type=discord.ChannelType.public_thread)
        await plain.send("inside")
        assert {t["name"] for t in fake.threads(w.text)} == {"a-thread", "discussion", "plain"}
        assert [m["content"] for m in fake.messages(plain.id)] == ["inside"]
        with pytest.raises(discord.HTTPException) as info:
            await msg.create_thread(name="again")
        assert info.value.code == 160004

        # Webhooks into forums need a thread name; with one they create a post.
        url = fake.add_webhook(w.forum)
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "?wait=true", json={"content": "via hook"}) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == 220001
            async with session.post(url + "?wait=true", json={"content": "via hook", "thread_name": "Hook post"}) as resp:
                assert resp.status == 200
                hook_msg = await resp.json()
        assert [p["name"] for p in fake.threads(w.forum)] == ["Release 1.2", "Hook post"]
        assert fake.messages(int(hook_msg["channel_id"]))[0]["content"] == "via hook"


# --------------------------------------------------------------------------- interactions


class ConfirmView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=60)

    @discord.ui.button(label="Confirm", custom_id="confirm", style=discord.ButtonStyle.primary)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="Confirmed", view=None)


KNOWN_FEEDS = ["https://example.org/feed.xml", "https://example.com/atom", "https://blog.test/rss"]


class CommandBot(discord.Client):
    def __init__(self, guild_id: int) -> None:
        super().__init__(intents=guild_intents(), guild_ready_timeout=0.05)
        self.guild_id = guild_id
        self.tree = app_commands.CommandTree(self)
        self.seen: Dict[str, Any] = {}

        @self.tree.command(name="feed", description="Subscribe a channel to a feed", guild=discord.Object(guild_id))
        @app_commands.describe(url="Feed URL", channel="Where to post")
        async def feed(interaction: discord.Interaction, url: str, channel: discord.TextChannel) -> None:
            self.seen["channel"] = channel
            await interaction.response.send_message(f"Subscribed {channel.mention} to {url}", view=ConfirmView())

        @feed.autocomplete("url")
        async def feed_url(interaction: discord.Interaction, current: str):
            return [app_commands.Choice(name=u, value=u) for u in KNOWN_FEEDS if current in u]

    async def setup_hook(self) -> None:
        await self.tree.sync(guild=discord.Object(self.guild_id))


@pytest.mark.asyncio
async def test_slash_command_autocomplete_and_button(fake: FakeDiscord) -> None:
    w = World(fake)
    bot = CommandBot(w.guild)
    async with running(bot):
        assert fake.command_sync_count(w.guild) == 1 and fake.command_sync_count(None) == 0
        [command] = fake.commands(w.guild)
        assert command["name"] == "feed" and [o["type"] for o in command["options"]] == [3, 7]

        with pytest.raises(LookupError):
            await fake.send_slash_command(w.guild, w.text, w.user, "unsynced")
        with pytest.raises(ValueError):
            await fake.send_slash_command(w.guild, w.text, w.user, "feed", {"url": "https://x.test"})

        rec = await fake.send_slash_command(
            w.guild, w.text, w.user, "feed", {"url": "https://example.org/feed.xml", "channel": w.announcement}
        )
        response = await rec.wait_response(5)
        assert response["type"] == 4
        assert response["data"]["content"] == f"Subscribed <#{w.announcement}> to https://example.org/feed.xml"
        assert bot.seen["channel"].id == w.announcement
        original = rec.original
        assert original is not None and original["interaction_metadata"]["id"] == str(rec.id)
        assert fake.messages(w.text)[-1]["id"] == original["id"]
        assert original["components"][0]["components"][0]["custom_id"] == "confirm"

        auto = await fake.send_autocomplete(w.guild, w.text, w.user, "feed", {"url": "example"}, focused="url")
        auto_response = await auto.wait_response(5)
        assert auto_response["type"] == 8
        assert [c["value"] for c in auto_response["data"]["choices"]] == KNOWN_FEEDS[:2]
        assert auto.payload["data"]["options"] == [{"name": "url", "type": 3, "value": "example", "focused": True}]

        click = await fake.press_button(rec, "confirm", w.user)
        click_response = await click.wait_response(5)
        assert click_response["type"] == 7
        updated = fake.get_message(rec.original_message_id)
        assert updated["content"] == "Confirmed" and updated["components"] == []
        assert updated["edited_timestamp"] is not None

        # A second callback to the same interaction is refused like Discord does.
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{fake.api_base}/interactions/{rec.id}/{rec.token}/callback", json={"type": 4, "data": {"content": "again"}}
            ) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == 40060


@pytest.mark.asyncio
async def test_deferred_followup_and_late_response() -> None:
    async with fake_discord(interaction_response_deadline=1.0) as fake:
        w = World(fake)
        client = new_client()
        tree = app_commands.CommandTree(client)

        @tree.command(name="check", description="Check feeds")
        @app_commands.default_permissions(manage_guild=True)
        async def check(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send("3 new entries")
            await interaction.followup.send("details", ephemeral=True)
            await interaction.edit_original_response(content="3 new entries (edited)")

        @tree.command(name="slow", description="Too slow")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(1.5)  # the bot's own slow work, longer than the 1 s deadline
            try:
                await interaction.response.send_message("too late")
            except discord.NotFound:
                pass

        async with running(client):
            await tree.sync()
            assert fake.command_sync_count(None) == 1
            with pytest.raises(PermissionError):  # Discord would not offer /check to a plain member
                await fake.send_slash_command(w.guild, w.text, w.user, "check")
            rec = await fake.send_slash_command(w.guild, w.text, w.user, "check", member_permissions={"manage_guild"})
            assert (await rec.wait_response(5))["type"] == 5
            followups = await rec.wait_followups(2, 5)
            await rec.wait_edits(1, 5)
            assert followups[0]["id"] == str(rec.original_message_id)  # first followup filled the "thinking" message
            assert followups[1]["flags"] & 64  # ephemeral
            assert [m["content"] for m in fake.messages(w.text)] == ["3 new entries (edited)"]
            assert not fake.messages(w.text)[0]["flags"] & 128  # no longer loading
            original_url = f"{fake.api_base}/webhooks/{fake.app_id}/{rec.token}/messages/@original"
            async with aiohttp.ClientSession() as http:
                async with http.get(original_url) as resp:
                    assert (await resp.json())["content"] == "3 new entries (edited)"
                async with http.delete(original_url) as resp:
                    assert resp.status == 204
                async with http.get(original_url) as resp:
                    assert resp.status == 404 and (await resp.json())["code"] == 10008
            assert fake.messages(w.text) == [] and rec.original is None

            late = await fake.send_slash_command(w.guild, w.text, w.user, "slow")
            with pytest.raises(InteractionFailed, match="10062"):
                await late.wait_response(5)
            assert late.response is None


@pytest.mark.asyncio
async def test_get_webhook_with_token_names_its_guild_and_channel(fake: FakeDiscord) -> None:
    w = World(fake)
    url = fake.add_webhook(w.text, name="Feeds")
    webhook_id, token = url.rsplit("/", 2)[1:]
    async with aiohttp.ClientSession() as session:
        hook = await discord.Webhook.partial(int(webhook_id), token, session=session).fetch(prefer_auth=False)
        assert (hook.guild_id, hook.channel_id, hook.name, hook.token) == (w.guild, w.text, "Feeds", token)
        assert hook.user is None  # Discord sends no user when the webhook is fetched with its token
        async with session.get(url) as resp:
            body = await resp.json()
            assert resp.status == 200 and "url" not in body and "user" not in body
        async with session.get(url + "x") as resp:
            assert resp.status == 401
        fake.delete_channel(w.text)
        async with session.get(url) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == 10015


@pytest.mark.asyncio
async def test_system_channel_reaches_discord_py(fake: FakeDiscord) -> None:
    w = World(fake)
    fake.set_system_channel(w.guild, w.announcement)
    with pytest.raises(ValueError):
        fake.set_system_channel(w.guild, fake.add_channel(fake.add_guild(), "elsewhere"))
    client = new_client()
    with point_discord_py_at(fake):
        async with running(client):
            guild = client.get_guild(w.guild)
            assert guild is not None and guild.system_channel is not None
            assert guild.system_channel.id == w.announcement
            updated = client.wait_for("guild_update", timeout=5)
            fake.set_system_channel(w.guild, w.text)
            _, after = await updated
            assert after.system_channel is not None and after.system_channel.id == w.text
            fetched = await client.http.get_guild(w.guild)
            assert fetched["system_channel_id"] == str(w.text)
