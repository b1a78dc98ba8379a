"""Delivering announcements to Discord: channels, threads, forums and webhooks.

Channel sends go through discord.py's HTTP client, which keeps per-route rate-limit
buckets from Discord's headers; webhook sends through discord.py's webhook transport,
which keeps one lock and bucket per webhook. A small limiter on top keeps Herald far
below the global limit. What either raises is mapped onto Herald's transient/permanent
kinds by one function, :func:`delivery_error`. Where a target's text says to send is
read by bot.targets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import discord
from discord.http import Route
from discord.webhook.async_ import AsyncWebhookAdapter

from bot import limits
from bot.deliver import channel_message_body, webhook_body, webhook_query
from bot.errors import PermanentDeliveryError, TransientDeliveryError
from bot.logs import register_secret
from bot.render import thread_name
from bot.storage.base import ClaimedDelivery
from bot.targets import THREADABLE_CHANNEL_TYPES, WebhookTarget, parse_target, post_shape, webhook_address

if TYPE_CHECKING:
    from discord.ext import commands

log = logging.getLogger("herald.discord")

# Stay well under Discord's global 50 requests/s.
DELIVERY_REQUESTS_PER_SECOND = limits.GLOBAL_REQUESTS_PER_SECOND // 2


class RateLimiter:
    """At most ``rate`` acquisitions per second, spaced evenly."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


THREAD_AUTO_ARCHIVE_MINUTES = 1440  # a thread Herald opens on its post archives after a day without messages
DIGEST_THREAD_NAME = "More posts"  # a digest's thread, when the digest has no title

# A webhook object is well under 2 KB; more than this is not Discord answering.
WEBHOOK_INFO_MAX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class WebhookHome:
    """The server and channel a webhook posts into (None when Discord does not say)."""

    guild_id: int | None
    channel_id: int | None


def _snowflake_or_none(value: Any) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def _error_text(exc: discord.HTTPException) -> str:
    body = exc.text or ""
    return f"HTTP {exc.status} (code {exc.code}): {body}"[:900]


class DiscordSink:
    """Implements bot.deliver.Sink for a logged-in ``commands.Bot``."""

    def __init__(self, bot: commands.Bot, *, session: aiohttp.ClientSession | None = None,
                 rate: float = DELIVERY_REQUESTS_PER_SECOND) -> None:
        self.bot = bot
        self._session = session
        self._own_session = session is None
        self._closed = False
        self.limiter = RateLimiter(rate)
        self.rate_limited = 0  # 429s that reached Herald (discord.py retries most itself)
        # discord.py's webhook transport: one lock and one rate-limit bucket per webhook, for every send
        self._webhooks = AsyncWebhookAdapter()  # type: ignore[no-untyped-call]  # discord.py leaves it unannotated

    async def close(self) -> None:
        self._closed = True
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http_session(self) -> aiohttp.ClientSession:
        if self._closed:  # a send that races the shutdown must not open a session nobody closes
            raise TransientDeliveryError("Herald is stopping; the delivery is retried when it starts again")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def send(self, claimed: ClaimedDelivery, payload: dict[str, Any], nonce: str) -> str | None:
        try:
            target = parse_target(claimed.subscription.target)
        except ValueError as exc:
            raise PermanentDeliveryError(str(exc), target_broken=True) from None
        if isinstance(target, WebhookTarget):
            where = _Where(f"webhook ${target.env}", webhook=True)
        else:
            where = _Where(f"channel {target.channel_id}", webhook=False)
        await self.limiter.acquire()
        try:
            if isinstance(target, WebhookTarget):
                return await self._send_webhook(claimed, target, payload)
            return await self._send_channel(claimed, target.channel_id, payload, nonce)
        except (discord.HTTPException, discord.RateLimited, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            error = delivery_error(exc, where)
        if error.rate_limited:
            self.rate_limited += 1
        raise error.exception from None

    async def _channel_type(self, channel_id: int) -> discord.ChannelType | None:
        channel = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except discord.NotFound:
                return None
        return getattr(channel, "type", None)

    async def _send_channel(self, claimed: ClaimedDelivery, channel_id: int, payload: dict[str, Any],
                            nonce: str) -> str:
        ctype = await self._channel_type(channel_id)
        if ctype is None:
            raise PermanentDeliveryError(f"channel {channel_id} not found (HTTP 404: Unknown Channel)",
                                         target_broken=True, status=404)
        name = thread_name(claimed.entries[0]) if claimed.delivery.kind == "entry" else \
            (payload["embeds"][0].get("title") or DIGEST_THREAD_NAME)[: limits.THREAD_NAME]
        if post_shape(str(ctype)) == "forum_post":
            data = await self.bot.http.request(
                Route("POST", "/channels/{channel_id}/threads", channel_id=channel_id),
                json={"name": name, "message": payload},
            )
            message = data.get("message") or {}
            return str(message.get("id") or data.get("id"))
        body = channel_message_body(payload, nonce)
        data = await self.bot.http.request(
            Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id), json=body,
        )
        message_id = str(data["id"])
        if claimed.subscription.create_thread and str(ctype) in THREADABLE_CHANNEL_TYPES:
            try:
                await self.limiter.acquire()
                await self.bot.http.request(
                    Route("POST", "/channels/{channel_id}/messages/{message_id}/threads",
                          channel_id=channel_id, message_id=message_id),
                    json={"name": name, "auto_archive_duration": THREAD_AUTO_ARCHIVE_MINUTES},
                )
            except discord.HTTPException as exc:
                # the announcement is out; a missing thread is logged, not retried (that would repost)
                log.warning("announced in %s but could not open its thread: %s", channel_id, _error_text(exc))
        return message_id

    @staticmethod
    def _webhook_url(env: str) -> str:
        """The webhook URL in ``$env``, checked; a missing or malformed one cannot be fixed by retrying."""
        url = os.environ.get(env, "").strip()
        if not url:
            raise PermanentDeliveryError(f"webhook URL variable ${env} is not set", target_broken=True)
        register_secret(url)
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # an unbalanced [ in the host, a port out of range
            valid = False
        if not valid:  # a typo in the variable: retrying cannot fix it
            raise PermanentDeliveryError(f"webhook URL in ${env} is not a valid http(s) URL", target_broken=True)
        return url

    async def webhook_home(self, env: str) -> WebhookHome:
        """Where the webhook in ``$env`` posts: ``GET /webhooks/{id}/{token}`` answers with the
        webhook object, whose ``guild_id`` and ``channel_id`` name its server and channel.
        Raises PermanentDeliveryError when Discord does not know the webhook (deleted, wrong token),
        TransientDeliveryError when it cannot be asked now."""
        url = self._webhook_url(env)
        try:
            async with self._http_session().get(url) as resp:
                text = (await resp.content.read(WEBHOOK_INFO_MAX_BYTES)).decode("utf-8", "replace")
                if resp.status in (401, 403, 404):
                    raise PermanentDeliveryError(f"webhook ${env} is unknown to Discord (HTTP {resp.status}): it was "
                                                 "deleted or its URL is wrong", target_broken=True, status=resp.status)
                if not 200 <= resp.status < 300:
                    raise TransientDeliveryError(f"webhook ${env}: Discord answered HTTP {resp.status}")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise TransientDeliveryError(f"webhook ${env}: network error: {type(exc).__name__}") from None
        try:
            data = json.loads(text)
            return WebhookHome(_snowflake_or_none(data.get("guild_id")), _snowflake_or_none(data.get("channel_id")))
        except (ValueError, AttributeError):
            raise TransientDeliveryError(f"webhook ${env}: Discord's answer is not a webhook object") from None

    async def _send_webhook(self, claimed: ClaimedDelivery, target: WebhookTarget,
                            payload: dict[str, Any]) -> str | None:
        """``POST {base}/webhooks/{id}/{token}?wait=true[&thread_id=…]`` through discord.py's webhook
        transport, which keeps one lock and rate-limit bucket per webhook and retries what Discord
        asks it to (a 429 with its retry_after, a 5xx a few times)."""
        url = self._webhook_url(target.env)
        address = webhook_address(url)
        if address is None:  # a typo in the variable: retrying cannot fix it
            raise PermanentDeliveryError(f"webhook URL in ${target.env} is not a webhook URL "
                                         "(…/webhooks/<id>/<token>)", target_broken=True)
        body = webhook_body(payload, claimed.subscription)
        # Webhook.send's own transport, given Herald's request as it is: send() would rebuild the
        # embeds (new keys, another order) and its query changes between discord.py versions, and
        # --json promises the request that is sent
        route = Route("POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=address.webhook_id,
                      webhook_token=address.token)
        route.url = address.base + route.url[len(Route.BASE):]  # the server the URL names, not Route.BASE
        data = await self._webhooks.request(route, self._http_session(), payload=body,
                                            params=webhook_query(address.thread_id))
        return str(data["id"]) if isinstance(data, dict) and data.get("id") else None


@dataclass(frozen=True, slots=True)
class _Where:
    """What a send was for, as error messages name it."""

    label: str  # "channel 123" or "webhook $ENV"
    webhook: bool  # a webhook's URL is a secret and carries its own token


@dataclass(frozen=True, slots=True)
class MappedError:
    exception: TransientDeliveryError | PermanentDeliveryError
    rate_limited: bool = False


RATE_LIMIT_DEFAULT_RETRY = 5.0  # seconds, when a 429 does not say how long
TOKEN_REJECTED_RETRY = 60.0  # seconds: a bot token Discord refuses (401) is for an operator to fix


def _retry_after(exc: discord.HTTPException) -> float:
    header = exc.response.headers.get("Retry-After")
    try:
        return float(header) if header is not None else RATE_LIMIT_DEFAULT_RETRY
    except ValueError:
        return RATE_LIMIT_DEFAULT_RETRY


def delivery_error(exc: BaseException, where: _Where) -> MappedError:
    """One mapping of what a channel or webhook send raised onto Herald's transient (retried
    later) and permanent (given up; ``target_broken`` pauses the target) errors."""
    if isinstance(exc, discord.RateLimited):
        return MappedError(TransientDeliveryError("rate limited", retry_after=exc.retry_after), rate_limited=True)
    if isinstance(exc, discord.Forbidden):
        return MappedError(PermanentDeliveryError(f"no access to {where.label}: {_error_text(exc)}",
                                                  target_broken=True, status=403))
    if isinstance(exc, discord.NotFound):
        return MappedError(PermanentDeliveryError(f"{where.label} not found: {_error_text(exc)}",
                                                  target_broken=True, status=404))
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            return MappedError(TransientDeliveryError(f"{where.label}: rate limited", retry_after=_retry_after(exc)),
                               rate_limited=True)
        if exc.status >= 500:
            return MappedError(TransientDeliveryError(f"Discord server error ({where.label}): {_error_text(exc)}"))
        if exc.status == 401 and where.webhook:  # the token in the webhook's URL: only a new URL fixes it
            return MappedError(PermanentDeliveryError(f"{where.label} refused its token: {_error_text(exc)}",
                                                      target_broken=True, status=401))
        if exc.status == 401:
            return MappedError(TransientDeliveryError("Discord rejected the token (401)",
                                                      retry_after=TOKEN_REJECTED_RETRY))
        return MappedError(PermanentDeliveryError(f"Discord rejected the message for {where.label}: {_error_text(exc)}",
                                                  status=exc.status))
    detail = "" if where.webhook else f": {exc}"  # a webhook's errors may quote its URL, a secret
    return MappedError(TransientDeliveryError(f"{'webhook ' if where.webhook else ''}network error "
                                              f"({where.label}): {type(exc).__name__}{detail}"))
