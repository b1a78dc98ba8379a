"""bot/targets.py (one parse and one format for a target's text) and the webhook half of
bot/discord_sink.py (discord.py's webhook transport, one error mapping with channel sends)."""

from __future__ import annotations

import asyncio

import aiohttp
import discord
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.deliver import webhook_endpoint
from bot.discord_sink import DiscordSink, _Where, delivery_error
from bot.errors import PermanentDeliveryError, TransientDeliveryError
from bot.models import Delivery, StoredEntry, Subscription
from bot.storage.base import ClaimedDelivery
from bot.targets import (
    ChannelTarget,
    WebhookAddress,
    WebhookTarget,
    format_target,
    parse_target,
    post_shape,
    webhook_address,
)

TOKEN = "targets-test-token"
HOOK_ENV = "HERALD_TARGETS_HOOK"

env_names = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789"), min_size=1, max_size=40)
targets = st.one_of(st.builds(ChannelTarget, st.integers(0, 2**64)), st.builds(WebhookTarget, env_names))


@given(targets)
def test_format_then_parse_is_the_same_target(target) -> None:
    text = format_target(target)
    assert parse_target(text) == target and str(target) == text


@given(st.integers(0, 2**64), env_names)
def test_subscription_reads_its_target_through_the_one_parser(channel_id, env) -> None:
    channel = Subscription(1, 1, format_target(ChannelTarget(channel_id)))
    hook = Subscription(2, 1, format_target(WebhookTarget(env)))
    assert (channel.channel_id, channel.webhook_env) == (channel_id, None)
    assert (hook.channel_id, hook.webhook_env) == (None, env)


@pytest.mark.parametrize("text", ["", "channel", "channel:", "channel:12a", "channel:-5", "channel:١٢",
                                  "webhook:", "webhook: X", "thread:5", "channel:" + "1" * 300])
def test_text_that_is_not_a_target_is_refused_by_name(text) -> None:
    with pytest.raises(ValueError, match="not a target"):
        parse_target(text)
    assert Subscription(1, 1, text).channel_id is None and Subscription(1, 1, text).webhook_env is None


def test_forum_and_media_channels_take_a_post_the_others_a_message() -> None:
    assert [post_shape(t) for t in ("forum", "media")] == ["forum_post", "forum_post"]
    assert {post_shape(t) for t in ("text", "news", "public_thread", "private_thread", "news_thread")} == {"message"}


@pytest.mark.parametrize(("url", "address"), [
    ("https://discord.com/api/webhooks/123/tok-en_1", WebhookAddress("https://discord.com/api", 123, "tok-en_1")),
    ("http://127.0.0.1:8080/api/v10/webhooks/5/t/", WebhookAddress("http://127.0.0.1:8080/api/v10", 5, "t")),
    ("https://discord.com/api/webhooks/1/t?thread_id=99", WebhookAddress("https://discord.com/api", 1, "t", 99)),
    ("https://discord.com/api/webhooks/x1/t", None),
    ("https://discord.com/api/hooks/1/t", None),
    ("https://discord.com/api/webhooks/1/t?thread_id=general", None),
    ("ftp://discord.com/api/webhooks/1/t", None),
    ("http://[::1/api/webhooks/1/t", None),
    ("https://discord.com:0/api/webhooks/1/t", None),
])
def test_webhook_url_taken_apart(url, address) -> None:
    assert webhook_address(url) == address


# --- one error mapping for channel and webhook sends ---


class _Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = "reason"
        self.headers = headers or {}


def _http(cls: type[discord.HTTPException], status: int,
          headers: dict[str, str] | None = None) -> discord.HTTPException:
    return cls(_Response(status, headers), {"message": "nope", "code": 1})  # type: ignore[arg-type]


CHANNEL = _Where("channel 42", webhook=False)
HOOK = _Where("webhook $HOOK", webhook=True)


@pytest.mark.parametrize("where", [CHANNEL, HOOK])
def test_refusals_pause_the_target_and_name_it(where) -> None:
    for exc, status in ((_http(discord.Forbidden, 403), 403), (_http(discord.NotFound, 404), 404)):
        error = delivery_error(exc, where).exception
        assert isinstance(error, PermanentDeliveryError) and error.target_broken and error.status == status
        assert where.label in str(error)


@pytest.mark.parametrize("where", [CHANNEL, HOOK])
def test_server_errors_and_429s_are_retried(where) -> None:
    server = delivery_error(_http(discord.DiscordServerError, 503), where)
    assert isinstance(server.exception, TransientDeliveryError) and not server.rate_limited
    limited = delivery_error(_http(discord.HTTPException, 429, {"Retry-After": "7"}), where)
    assert isinstance(limited.exception, TransientDeliveryError) and limited.rate_limited
    assert limited.exception.retry_after == 7.0
    rejected = delivery_error(_http(discord.HTTPException, 400), where).exception
    assert isinstance(rejected, PermanentDeliveryError) and not rejected.target_broken


def test_a_rate_limit_discord_py_would_wait_too_long_for_is_retried_later() -> None:
    limited = delivery_error(discord.RateLimited(42.0), CHANNEL)
    assert isinstance(limited.exception, TransientDeliveryError) and limited.rate_limited
    assert limited.exception.retry_after == 42.0


async def test_the_sink_maps_a_channel_send_that_discord_py_gave_up_on() -> None:
    class _Http:
        async def request(self, *_args: object, **_kwargs: object) -> None:
            raise discord.RateLimited(42.0)

    class _Bot:
        http = _Http()

        def get_channel(self, _channel_id: int) -> object:
            return type("Channel", (), {"type": discord.ChannelType.text})()

    sink = DiscordSink(_Bot())  # type: ignore[arg-type]
    claimed = _claimed(1)
    claimed.subscription.target = format_target(ChannelTarget(42))
    with pytest.raises(TransientDeliveryError, match="rate limited") as info:
        await sink.send(claimed, {"embeds": [{"title": "t"}]}, "n")
    assert info.value.retry_after == 42.0 and sink.rate_limited == 1


def test_a_401_is_the_bot_token_for_a_channel_and_the_webhook_itself_for_a_webhook() -> None:
    channel = delivery_error(_http(discord.HTTPException, 401), CHANNEL).exception
    assert isinstance(channel, TransientDeliveryError) and "rejected the token" in str(channel)
    hook = delivery_error(_http(discord.HTTPException, 401), HOOK).exception
    assert isinstance(hook, PermanentDeliveryError) and hook.target_broken


def test_a_webhook_network_error_never_quotes_the_exception_it_may_hold_the_url() -> None:
    exc = aiohttp.InvalidURL("https://discord.com/api/webhooks/1/SECRET")
    hook = delivery_error(exc, HOOK).exception
    assert isinstance(hook, TransientDeliveryError) and "SECRET" not in str(hook)
    assert "webhook network error" in str(hook) and "InvalidURL" in str(hook)
    assert "SECRET" in str(delivery_error(exc, CHANNEL).exception)  # a channel's errors hold no secret


# --- webhook sends against the fake Discord ---


@pytest.fixture
async def fake():
    from tests.fakediscord import FakeDiscord

    async with FakeDiscord(token=TOKEN, message_rate=(2, 1.0)) as f:
        yield f


def _claimed(n: int) -> ClaimedDelivery:
    entry = StoredEntry(id=n, feed_id=1, key=f"id:{n}", title=f"post {n}", link=None, summary="s", author=None,
                        published=None, image=None, first_seen=0.0)
    sub = Subscription(1, 1, format_target(WebhookTarget(HOOK_ENV)), username="Feed Bot")
    return ClaimedDelivery(Delivery(n, 1, (n,), "entry"), sub, [entry], None)


async def test_webhook_posts_into_the_thread_its_url_names_at_the_urls_own_server(fake, monkeypatch) -> None:
    assert fake.api_base != discord.http.Route.BASE  # no bot here: only the URL says where the fake is
    guild = fake.add_guild()
    text = fake.add_channel(guild, "text")
    thread = fake.add_channel(guild, "talk", type=11, parent_id=text)
    monkeypatch.setenv(HOOK_ENV, f"{fake.add_webhook(text)}?thread_id={thread}")
    sink = DiscordSink(bot=None)  # type: ignore[arg-type]  # webhooks need no bot
    try:
        payload = {"content": "into the thread", "allowed_mentions": {"parse": []}}
        message_id = await sink.send(_claimed(1), payload, "n")
    finally:
        await sink.close()
    [posted] = fake.messages(thread)
    assert posted["id"] == message_id and posted["content"] == "into the thread" and fake.messages(text) == []
    [req] = [r for r in fake.requests if r.method == "POST" and r.path.startswith("/webhooks/")]
    assert req.query == {"wait": "true", "thread_id": str(thread)}
    assert req.json == {"content": "into the thread", "allowed_mentions": {"parse": []}, "username": "Feed Bot"}
    assert req.headers.get("Content-Type") == "application/json"
    hook_id = req.path.split("/")[2]
    assert webhook_endpoint(HOOK_ENV) == f"POST /api/v10/webhooks/{hook_id}/<token>?wait=true&thread_id={thread}"


def test_the_printed_webhook_endpoint_hides_the_token_and_says_what_is_wrong(monkeypatch) -> None:
    monkeypatch.setenv(HOOK_ENV, "https://discord.com/api/webhooks/123/SECRET")
    assert webhook_endpoint(HOOK_ENV) == "POST /api/webhooks/123/<token>?wait=true"
    monkeypatch.setenv(HOOK_ENV, "https://discord.com/api/channels/123/SECRET")
    assert webhook_endpoint(HOOK_ENV) == f"POST ${HOOK_ENV} (not a webhook URL)"
    monkeypatch.delenv(HOOK_ENV)
    assert webhook_endpoint(HOOK_ENV) == f"POST ${HOOK_ENV} (not set)"


async def test_webhook_sends_wait_for_the_webhooks_own_rate_limit(fake, monkeypatch) -> None:
    guild = fake.add_guild()
    text = fake.add_channel(guild, "text")
    monkeypatch.setenv(HOOK_ENV, fake.add_webhook(text))
    sink = DiscordSink(bot=None)  # type: ignore[arg-type]
    try:
        # five sends at once through a webhook allowed two per second: discord.py's per-webhook
        # bucket makes the later ones wait for the reset instead of running into 429s
        ids = await asyncio.wait_for(asyncio.gather(*(sink.send(_claimed(n), {"content": f"m{n}"}, "n")
                                                      for n in range(5))), timeout=30)
    finally:
        await sink.close()
    assert len(set(ids)) == 5 and len(fake.messages(text)) == 5
    assert fake.count_status(429) == 0 and sink.rate_limited == 0


async def test_a_429_on_a_webhook_is_waited_out_by_discord_py_and_the_message_sent_once(fake, monkeypatch) -> None:
    guild = fake.add_guild()
    text = fake.add_channel(guild, "text")
    monkeypatch.setenv(HOOK_ENV, fake.add_webhook(text))
    fake.rate_limit_next(1, retry_after=0.2, route=lambda method, path: path.startswith("/webhooks/"))
    sink = DiscordSink(bot=None)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(sink.send(_claimed(1), {"content": "after the 429"}, "n"), timeout=30)
    finally:
        await sink.close()
    assert fake.count_status(429) == 1  # served, then retried after its retry_after
    assert [m["content"] for m in fake.messages(text)] == ["after the 429"]


async def test_a_deleted_webhook_pauses_its_target(fake, monkeypatch) -> None:
    guild = fake.add_guild()
    text = fake.add_channel(guild, "text")
    url = fake.add_webhook(text)
    fake.webhooks.pop(int(url.rsplit("/", 2)[-2]))
    monkeypatch.setenv(HOOK_ENV, url)
    sink = DiscordSink(bot=None)  # type: ignore[arg-type]
    try:
        with pytest.raises(PermanentDeliveryError, match=f"webhook \\${HOOK_ENV} not found") as info:
            await sink.send(_claimed(1), {"content": "x"}, "n")
    finally:
        await sink.close()
    assert info.value.target_broken and info.value.status == 404
    assert url.rsplit("/", 1)[1] not in str(info.value)


async def test_a_variable_that_holds_no_webhook_url_pauses_its_target(monkeypatch) -> None:
    monkeypatch.setenv(HOOK_ENV, "https://discord.com/api/channels/1/messages")
    sink = DiscordSink(bot=None)  # type: ignore[arg-type]
    try:
        with pytest.raises(PermanentDeliveryError, match="not a webhook URL") as info:
            await sink.send(_claimed(1), {"content": "x"}, "n")
    finally:
        await sink.close()
    assert info.value.target_broken
