"""Discord targets at run time: the startup check, learning a target's server, and notices.

:class:`TargetChecker` checks every configured channel and webhook once the bot is ready
(pausing the unusable ones) and records the server each subscription belongs to.
:class:`DiscordNotifier` is the core's :class:`bot.notices.Notifier`: it posts a notice's text
into the first channel that takes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import discord
from discord.http import Route

from bot import limits, notices
from bot.config import Config
from bot.errors import PermanentDeliveryError, TransientDeliveryError
from bot.permissions import can_post_plain, channel_problem
from bot.render import truncate
from bot.storage.base import Storage
from bot.targets import WebhookTarget, format_target

if TYPE_CHECKING:
    from bot.app import Herald
    from bot.discord_sink import DiscordSink

log = logging.getLogger("herald.discord")


async def target_problem(client: discord.Client, channel_id: int, create_thread: bool) -> str | None:
    """Why Herald cannot announce into channel ``channel_id`` (looked up in the cache, else asked
    of Discord), or None when it can as far as the bot can tell."""
    channel: Any = client.get_channel(channel_id)
    if channel is None:
        try:
            channel = await client.fetch_channel(channel_id)
        except discord.NotFound:
            return f"channel {channel_id} does not exist or the bot is not in its server"
        except discord.Forbidden:
            return f"channel {channel_id}: the bot cannot see it (missing View Channel)"
        except discord.HTTPException as exc:
            return f"channel {channel_id}: Discord error {exc.status} while checking it"
    return channel_problem(channel, channel_id, create_thread=create_thread)


class TargetChecker:
    """The startup check of every target, and each subscription's server as channels become visible."""

    def __init__(self, client: discord.Client, herald: Herald, sink: DiscordSink, *,
                 clock: Callable[[], float], webhook_channels: dict[str, int]) -> None:
        self.client = client
        self.herald = herald
        self.sink = sink
        self.clock = clock
        self.webhook_channels = webhook_channels  # webhook variable -> the channel it posts into
        self.checked = asyncio.Event()

    @property
    def storage(self) -> Storage:
        return self.herald.storage

    async def check(self) -> list[str]:
        """Checks every configured channel and webhook; pauses the subscriptions whose target is
        unusable, and records each subscription's server (from its channel or its webhook), so the
        server's /feed commands and /search see it. Returns the problems found (also logged)."""
        problems: list[str] = []
        now = self.clock()
        subs = await self.storage.subscriptions()
        seen: set[str] = set()
        broken: list[tuple[str, str]] = []
        for sub in subs:
            if sub.target in seen or sub.channel_id is None:
                continue
            seen.add(sub.target)
            problem = await target_problem(self.client, sub.channel_id, sub.create_thread)
            guild_id = self._channel_guild_id(sub.channel_id)  # a visible channel names its server, usable or not
            if guild_id is not None:
                await self.storage.set_subscription_guild(sub.target, guild_id)
            if problem is None:
                continue
            problems.append(problem)
            log.error("%s; its feed subscriptions there are paused", problem)
            if await self.storage.pause_target(sub.target, problem, now):  # newly paused: one notice
                broken.append((sub.target, problem))
        for sub in subs:
            env = sub.webhook_env
            if env is None or sub.target in seen:
                continue
            seen.add(sub.target)
            problem = await self._check_webhook(env)
            if problem is None:
                continue
            problems.append(problem)
            log.error("%s; that webhook's subscriptions are paused", problem)
            if await self.storage.pause_target(sub.target, problem, now):
                broken.append((sub.target, problem))
        await self._log_homeless_feeds()
        for target, problem in broken:  # once every target is checked, so a notice never goes to a broken one
            try:
                await self.herald.target_broken(target, problem)
            except Exception:
                log.exception("could not send the notice for %s", target)
        self.checked.set()
        return problems

    def _channel_guild_id(self, channel_id: int) -> int | None:
        channel = self.client.get_channel(channel_id)
        guild = getattr(channel, "guild", None)
        return getattr(guild, "id", None)

    async def _check_webhook(self, env: str) -> str | None:
        """Looks the webhook in ``$env`` up (``GET /webhooks/{id}/{token}``) and records its server
        and channel. Returns the problem that makes it unusable, or None."""
        if not os.environ.get(env, "").strip():
            return f"webhook variable ${env} is not set"
        try:
            home = await self.sink.webhook_home(env)
        except PermanentDeliveryError as exc:
            return str(exc)
        except TransientDeliveryError as exc:  # sending may still work; the next start asks again
            log.warning("%s; its server stays unknown until Herald can ask Discord", exc)
            return None
        if home.channel_id is not None:
            self.webhook_channels[env] = home.channel_id
        if home.guild_id is not None:
            await self.storage.set_subscription_guild(format_target(WebhookTarget(env)), home.guild_id)
        return None

    async def _log_homeless_feeds(self) -> None:
        """Names the feeds whose server is still unknown: its /feed commands and /search cannot see them."""
        subs = [s for s in await self.storage.subscriptions() if s.guild_id is None]
        if not subs:
            return
        names = {f.id: f.name for f in await self.storage.list_feeds()}
        for feed_id in dict.fromkeys(s.feed_id for s in subs):
            targets = ", ".join(s.target for s in subs if s.feed_id == feed_id)
            log.error("feed %s (%s): its Discord server is unknown (the channel is not visible to the bot, or the "
                      "webhook could not be looked up), so /feed list, /search and /feed resume there do not see it; "
                      "set guild_id = <server id> in its [[feeds]] table, or let the bot see the channel",
                      names.get(feed_id, feed_id), targets)

    async def learn_guild(self, channels: Iterable[Any]) -> None:
        """A channel became visible (created, permissions changed, server joined): its subscriptions
        that have no server yet get this one."""
        by_id = {c.id: c.guild.id for c in channels if getattr(c, "guild", None) is not None}
        if not by_id:
            return
        for sub in await self.storage.subscriptions():
            cid = sub.channel_id
            if sub.guild_id is None and cid in by_id:
                await self.storage.set_subscription_guild(sub.target, by_id[cid])
                log.info("%s is in server %s; its feeds show there now", sub.target, by_id[cid])


class DiscordNotifier:
    """Posts the core's notices into Discord, always also logging them."""

    def __init__(self, client: discord.Client, config: Config, storage: Storage,
                 webhook_channels: dict[str, int]) -> None:
        self.client = client
        self.config = config
        self.storage = storage
        self.webhook_channels = webhook_channels

    async def notify(self, notice: notices.Notice) -> None:
        await self.send(notice.kind, notice.feed_id, notices.text(notice))

    async def send(self, kind: str, feed_id: int | None, text: str) -> None:
        """Posts a notice about a feed, always also to the log. Tried in order until one takes it:
        the feed's own alerts_channel, [discord] alerts_channel, the feed's channels that are not
        paused, the channel its webhook posts into, then the system channel of the feed's server.
        A channel whose subscriptions are paused (broken) is never tried."""
        log.warning("notice (%s): %s", kind, text)
        tried: list[str] = []
        for channel_id in await self._alert_channels(feed_id):
            try:
                await self.client.http.request(
                    Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id),
                    json={"content": truncate(text, limits.MESSAGE_CONTENT), "allowed_mentions": {"parse": []}},
                )
                return
            except discord.HTTPException as exc:
                tried.append(f"{channel_id} (HTTP {exc.status})")
                log.warning("could not post a notice to channel %s: HTTP %s; trying the next channel", channel_id,
                            exc.status)
        if tried:
            log.error("no channel took the notice above (tried %s); give the feed a working alerts_channel",
                      ", ".join(tried))
        else:
            log.error("no channel can take the notice above: the feed's channels are broken and its server has no "
                      "system channel the bot can post in; set alerts_channel (per feed or in [discord])")

    async def _alert_channels(self, feed_id: int | None) -> list[int]:
        subs = await self.storage.subscriptions(feed_id) if feed_id is not None else []
        broken = {s.channel_id for s in await self.storage.subscriptions() if s.paused and s.channel_id is not None}
        candidates: list[int | None] = [s.alerts_channel for s in subs]
        candidates.append(self.config.discord.alerts_channel)
        candidates += [s.channel_id for s in subs if not s.paused]
        candidates += [self.webhook_channels.get(s.webhook_env) for s in subs if s.webhook_env and not s.paused]
        for guild_id in dict.fromkeys(s.guild_id for s in subs if s.guild_id is not None):
            guild = self.client.get_guild(guild_id)
            system = getattr(guild, "system_channel", None)
            if system is not None:
                candidates.append(system.id)
        out: list[int] = []
        for cid in candidates:
            if cid is None or cid in out or cid in broken or not can_post_plain(self.client.get_channel(cid)):
                continue
            out.append(cid)
        return out
