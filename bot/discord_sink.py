"""Delivering announcements to Discord: channels, threads, forums and webhooks.

Sends go through discord.py's HTTP client, which keeps per-route rate-limit
buckets from Discord's headers; a small limiter on top keeps Herald far below
the global limit. Errors are mapped onto Herald's transient/permanent kinds.
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

from bot import limits
from bot.deliver import WEBHOOK_QUERY, channel_message_body, webhook_body
from bot.errors import PermanentDeliveryError, TransientDeliveryError
from bot.logs import register_secret
from bot.render import thread_name
from bot.storage.base import ClaimedDelivery

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

    def __init__(self, bot: "commands.Bot", *, session: aiohttp.ClientSession | None = None,
                 rate: float = DELIVERY_REQUESTS_PER_SECOND) -> None:
        self.bot = bot
        self._session = session
        self._own_session = session is None
        self._closed = False
        self.limiter = RateLimiter(rate)
        self.rate_limited = 0  # 429s that reached Herald (discord.py retries most itself)

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
        sub = claimed.subscription
        if sub.webhook_env:
            return await self._send_webhook(claimed, payload)
        channel_id = sub.channel_id
        if channel_id is None:
            raise PermanentDeliveryError(f"unknown target {sub.target!r}", target_broken=True)
        await self.limiter.acquire()
        try:
            return await self._send_channel(claimed, channel_id, payload, nonce)
        except discord.Forbidden as exc:
            raise PermanentDeliveryError(f"no access to channel {channel_id}: {_error_text(exc)}",
                                         target_broken=True, status=403) from None
        except discord.NotFound as exc:
            raise PermanentDeliveryError(f"channel {channel_id} not found: {_error_text(exc)}",
                                         target_broken=True, status=404) from None
        except discord.DiscordServerError as exc:
            raise TransientDeliveryError(f"Discord server error: {_error_text(exc)}") from None
        except discord.RateLimited as exc:
            self.rate_limited += 1
            raise TransientDeliveryError("rate limited", retry_after=exc.retry_after) from None
        except discord.HTTPException as exc:
            if exc.status == 429:
                self.rate_limited += 1
                raise TransientDeliveryError("rate limited without retry information", retry_after=5.0) from None
            if exc.status >= 500:
                raise TransientDeliveryError(f"Discord server error: {_error_text(exc)}") from None
            if exc.status == 401:
                raise TransientDeliveryError("Discord rejected the token (401)", retry_after=60.0) from None
            raise PermanentDeliveryError(f"Discord rejected the message: {_error_text(exc)}", status=exc.status) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise TransientDeliveryError(f"network error: {type(exc).__name__}: {exc}") from None

    async def _channel_type(self, channel_id: int) -> discord.ChannelType | None:
        channel = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except discord.NotFound:
                return None
        return getattr(channel, "type", None)

    async def _send_channel(self, claimed: ClaimedDelivery, channel_id: int, payload: dict[str, Any], nonce: str) -> str:
        ctype = await self._channel_type(channel_id)
        if ctype is None:
            raise PermanentDeliveryError(f"channel {channel_id} not found (HTTP 404: Unknown Channel)", target_broken=True, status=404)
        name = thread_name(claimed.entries[0]) if claimed.delivery.kind == "entry" else \
            (payload["embeds"][0].get("title") or "More posts")[: limits.THREAD_NAME]
        if ctype == discord.ChannelType.forum or ctype == discord.ChannelType.media:
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
        if claimed.subscription.create_thread and ctype in (discord.ChannelType.text, discord.ChannelType.news):
            try:
                await self.limiter.acquire()
                await self.bot.http.request(
                    Route("POST", "/channels/{channel_id}/messages/{message_id}/threads",
                          channel_id=channel_id, message_id=message_id),
                    json={"name": name, "auto_archive_duration": 1440},
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

    async def _send_webhook(self, claimed: ClaimedDelivery, payload: dict[str, Any]) -> str | None:
        env = claimed.subscription.webhook_env or ""
        url = self._webhook_url(env)
        body = webhook_body(payload, claimed.subscription)
        await self.limiter.acquire()
        sep = "&" if "?" in url else "?"
        try:
            async with self._http_session().post(f"{url}{sep}{WEBHOOK_QUERY}", json=body) as resp:
                text = await resp.text()
                if 200 <= resp.status < 300:
                    try:
                        return str(json.loads(text).get("id"))
                    except (ValueError, AttributeError):
                        return None
                if resp.status == 429:
                    self.rate_limited += 1
                    try:
                        retry = float(json.loads(text).get("retry_after", 5))
                    except (ValueError, AttributeError, TypeError):
                        retry = float(resp.headers.get("Retry-After", 5))
                    raise TransientDeliveryError("webhook rate limited", retry_after=retry)
                if resp.status >= 500:
                    raise TransientDeliveryError(f"webhook server error HTTP {resp.status}")
                if resp.status in (401, 403, 404):
                    raise PermanentDeliveryError(f"webhook ${env} refused (HTTP {resp.status}): {text[:300]}",
                                                 target_broken=True, status=resp.status)
                raise PermanentDeliveryError(f"webhook rejected the message (HTTP {resp.status}): {text[:800]}",
                                             status=resp.status)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise TransientDeliveryError(f"webhook network error: {type(exc).__name__}") from None
