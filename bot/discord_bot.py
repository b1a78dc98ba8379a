"""The Discord side: the bot, its one entry point, the startup check and the error handler."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from typing import Any, Callable

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.http import Route

from bot import limits
from bot.app import Herald
from bot.config import Config, DiscordConfig
from bot.discord_sink import DiscordSink
from bot.errors import HeraldError, PermanentDeliveryError, TransientDeliveryError
from bot.logs import register_secret
from bot.metrics import Metrics
from bot.ops import OpsServer, start_ops
from bot.render import truncate
from bot.targets import WebhookTarget, format_target

log = logging.getLogger("herald.discord")

EXTENSIONS = ("cogs.pipeline", "cogs.search", "cogs.feeds")
COMMAND_HASH_KEY = "command_hash"

_USABLE_TYPES = {
    discord.ChannelType.text: "text",
    discord.ChannelType.news: "announcement",
    discord.ChannelType.forum: "forum",
    discord.ChannelType.media: "media",
    discord.ChannelType.public_thread: "thread",
    discord.ChannelType.private_thread: "thread",
    discord.ChannelType.news_thread: "thread",
}


def apply_endpoints(cfg: DiscordConfig) -> None:
    """Points discord.py at a Discord-compatible server when the config names one."""
    if cfg.api_base:
        Route.BASE = cfg.api_base.rstrip("/")
    if cfg.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.gateway_url)


def required_permissions(kind: str, create_thread: bool = False) -> dict[str, str]:
    """Permission attribute → the name Discord's UI shows, for a target of ``kind``."""
    needed = {"view_channel": "View Channel", "embed_links": "Embed Links"}
    if kind == "thread":
        needed["send_messages_in_threads"] = "Send Messages in Threads"
    elif kind in ("forum", "media"):
        needed["send_messages"] = "Create Posts"
    else:
        needed["send_messages"] = "Send Messages"
        if create_thread:
            needed["create_public_threads"] = "Create Public Threads"
    return needed


def error_id() -> str:
    return secrets.token_hex(4)


class HeraldBot(commands.Bot):
    def __init__(self, config: Config, *, once: bool = False, clock: Callable[[], float] = time.time,
                 herald: Herald | None = None, **options: Any) -> None:
        """``options`` go to discord.py's Bot (tests shorten ``guild_ready_timeout``)."""
        discord.VoiceClient.warn_nacl = False  # Herald never joins voice
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # channels, threads, roles and the bot's own member; nothing privileged
        self.metrics = herald.metrics if herald is not None and isinstance(herald.metrics, Metrics) else Metrics()
        super().__init__(
            command_prefix=commands.when_mentioned, intents=intents, help_command=None,
            allowed_mentions=discord.AllowedMentions.none(), max_ratelimit_timeout=30.0,
            http_trace=self.metrics.trace_config(), **options,
        )
        self.config = config
        self.once = once
        self.clock = clock
        self.sink = DiscordSink(self)
        self.herald = herald or Herald(config, self.sink, clock=clock, metrics=self.metrics)
        self.ops: OpsServer | None = None
        self.herald.alert = self.send_alert
        self.storage = self.herald.storage
        self.targets_checked = asyncio.Event()
        self.webhook_channels: dict[str, int] = {}  # webhook variable -> the channel it posts into
        self._closed_all: asyncio.Event | None = None
        self.exit_code = 0
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def setup_hook(self) -> None:
        await self.herald.open()
        if not self.once:
            self.ops = await start_ops(self.config, self.herald, bot=self)
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        await self.sync_commands()

    async def close(self) -> None:
        """Closes once: a second call (discord.py's connect loop closes the bot when its websocket
        ends and it may not reconnect) waits for the first."""
        if self._closed_all is not None:
            await self._closed_all.wait()
            return
        self._closed_all = asyncio.Event()
        try:
            await super().close()  # unloads the cogs: the pipeline stops and hands back in-flight rows
        finally:
            try:
                if self.ops is not None:
                    await self.ops.stop()
                await self.sink.close()
                await self.herald.close()
            finally:
                self._closed_all.set()

    # --- slash command sync -----------------------------------------------------------------

    def command_hash(self) -> str:
        payload = sorted((c.to_dict(self.tree) for c in self.tree.get_commands()), key=lambda c: c["name"])
        scope = sorted(self.config.discord.guild_ids)
        return hashlib.sha256(json.dumps([payload, scope], sort_keys=True).encode()).hexdigest()

    async def sync_commands(self) -> bool:
        """Syncs slash commands only when their definitions changed since the last sync."""
        digest = self.command_hash()
        if await self.storage.get_meta(COMMAND_HASH_KEY) == digest:
            log.info("slash commands unchanged; not syncing")
            return False
        guild_ids = self.config.discord.guild_ids
        if guild_ids:
            for gid in guild_ids:
                guild = discord.Object(gid)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
            log.info("slash commands synced to %d guild(s)", len(guild_ids))
        else:
            await self.tree.sync()
            log.info("slash commands synced globally")
        await self.storage.set_meta(COMMAND_HASH_KEY, digest)
        return True

    # --- startup check ----------------------------------------------------------------------

    async def check_targets(self) -> list[str]:
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
            problem = await self._target_problem(sub.channel_id, sub.create_thread)
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
                await self.herald._target_broken(target, problem)
            except Exception:
                log.exception("could not send the notice for %s", target)
        self.targets_checked.set()
        return problems

    def _channel_guild_id(self, channel_id: int) -> int | None:
        channel = self.get_channel(channel_id)
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

    async def learn_guild(self, channels: Any) -> None:
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

    async def on_guild_channel_create(self, channel: Any) -> None:
        await self.learn_guild([channel])

    async def on_guild_channel_update(self, _before: Any, after: Any) -> None:
        await self.learn_guild([after])

    async def on_thread_create(self, thread: Any) -> None:
        await self.learn_guild([thread])

    async def on_thread_update(self, _before: Any, after: Any) -> None:
        await self.learn_guild([after])

    async def on_guild_join(self, guild: Any) -> None:
        await self.learn_guild([*guild.channels, *guild.threads])

    async def on_guild_available(self, guild: Any) -> None:
        await self.learn_guild([*guild.channels, *guild.threads])

    async def _target_problem(self, channel_id: int, create_thread: bool) -> str | None:
        channel: Any = self.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.fetch_channel(channel_id)
            except discord.NotFound:
                return f"channel {channel_id} does not exist or the bot is not in its server"
            except discord.Forbidden:
                return f"channel {channel_id}: the bot cannot see it (missing View Channel)"
            except discord.HTTPException as exc:
                return f"channel {channel_id}: Discord error {exc.status} while checking it"
        kind = _USABLE_TYPES.get(getattr(channel, "type", None))  # type: ignore[arg-type]
        if kind is None:
            return f"channel {channel_id} ({getattr(channel, 'name', '?')}) is a {channel.type} channel; use a text, announcement, forum or thread channel"
        guild = getattr(channel, "guild", None)
        if guild is None or guild.me is None:
            return None  # cannot compute permissions here; sending will tell
        perms = channel.permissions_for(guild.me)
        missing = [label for attr, label in required_permissions(kind, create_thread).items() if not getattr(perms, attr)]
        if missing:
            return f"channel #{channel.name} ({channel_id}): the bot lacks {', '.join(missing)}"
        return None

    # --- alerts -------------------------------------------------------------------------------

    async def send_alert(self, kind: str, feed_id: int | None, text: str) -> None:
        """Posts a notice about a feed, always also to the log. Tried in order until one takes it:
        the feed's own alerts_channel, [discord] alerts_channel, the feed's channels that are not
        paused, the channel its webhook posts into, then the system channel of the feed's server.
        A channel whose subscriptions are paused (broken) is never tried."""
        log.warning("notice (%s): %s", kind, text)
        tried: list[str] = []
        for channel_id in await self._alert_channels(feed_id):
            try:
                await self.http.request(
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
            guild = self.get_guild(guild_id)
            system = getattr(guild, "system_channel", None)
            if system is not None:
                candidates.append(system.id)
        out: list[int] = []
        for cid in candidates:
            if cid is None or cid in out or cid in broken or not self._can_post(cid):
                continue
            out.append(cid)
        return out

    def _can_post(self, channel_id: int) -> bool:
        """False only when the cache shows the bot cannot post plain messages there (then Discord
        would refuse); an unknown channel is tried, and Discord's answer decides."""
        channel: Any = self.get_channel(channel_id)
        if channel is None:
            return True
        if channel.type in (discord.ChannelType.forum, discord.ChannelType.media, discord.ChannelType.category):
            return False
        guild = getattr(channel, "guild", None)
        if guild is None or guild.me is None:
            return True
        perms = channel.permissions_for(guild.me)
        send = perms.send_messages_in_threads if isinstance(channel, discord.Thread) else perms.send_messages
        return bool(perms.view_channel and send)

    # --- the central error handler --------------------------------------------------------------

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.MissingPermissions):
            text = "You need the **Manage Server** permission to manage feeds."
        elif isinstance(error, app_commands.CheckFailure):
            text = str(error) or "You cannot use this command here."
        elif isinstance(original, HeraldError):
            text = str(original)
        else:
            eid = error_id()
            log.error("command %s failed (error id %s)", getattr(interaction.command, "qualified_name", "?"), eid,
                      exc_info=original)
            text = f"Something went wrong on Herald's side (error id `{eid}`). The server admin can find it in the log."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell the user about an error: %s", text)


def run_discord(config: Config, *, once: bool = False) -> int:
    """``herald run`` without ``--dry-run``: log in and deliver until stopped (or one cycle)."""
    token = config.discord.token()
    if not token:
        print(f"herald: no Discord token: set the environment variable {config.discord.token_env} to your bot's "
              "token (Discord developer portal → your application → Bot → Reset Token)", file=sys.stderr)
        return 2
    register_secret(token)
    try:
        return asyncio.run(_run_bot(config, token, once))
    except KeyboardInterrupt:
        return 130


# Discord unreachable at login: wait this long, doubling up to the maximum, then try again.
CONNECT_RETRY_FIRST = 5.0
CONNECT_RETRY_MAX = 300.0
_UNREACHABLE = (aiohttp.ClientConnectionError, OSError, asyncio.TimeoutError, discord.DiscordServerError)


def unreachable_reason(exc: BaseException) -> str:
    """A short, readable reason for a failed connection to Discord (no traceback)."""
    if isinstance(exc, discord.DiscordServerError):
        return f"Discord answered HTTP {exc.status}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate error: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS error: {exc.os_error}"
    dns_error = getattr(aiohttp, "ClientConnectorDNSError", ())  # aiohttp 3.10+
    if isinstance(exc, dns_error) or isinstance(getattr(exc, "os_error", None), socket.gaierror):
        return f"DNS lookup of {getattr(exc, 'host', '?')} failed"
    os_error = getattr(exc, "os_error", exc)
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer (timed out)"
    return f"{type(exc).__name__}: {exc}"


class OneLineReconnects(logging.Filter):
    """discord.py logs every failed gateway reconnect with a traceback; below debug level, one line
    that says what failed is enough (it retries with backoff by itself). Before the first gateway
    connection discord.py cannot reconnect at all, and Herald's own retry says so instead."""

    def __init__(self, current: list["HeraldBot"]) -> None:
        super().__init__()
        self.current = current

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info and record.msg == "Attempting a reconnect in %.2fs"):
            return True
        if any(bot.ws is None for bot in self.current):
            return log.isEnabledFor(logging.DEBUG)  # never connected: Herald's retry line follows
        if log.isEnabledFor(logging.DEBUG):
            return True
        exc = record.exc_info[1]
        delay = record.args[0] if isinstance(record.args, tuple) and record.args else 0.0
        record.msg = "lost the connection to Discord's gateway (%s); reconnecting in %.0fs"
        record.args = (unreachable_reason(exc) if exc is not None else "unknown error", delay)
        record.exc_info = None
        record.exc_text = None
        return True


async def _run_bot(config: Config, token: str, once: bool) -> int:
    """Logs in and runs until stopped. Discord unreachable at login: one log line, then retry with
    a growing pause until stopped (with ``--once``: exit 1 at once, also when the gateway cannot
    be reached after the login)."""
    apply_endpoints(config.discord)
    current: list[HeraldBot] = []
    reconnects = OneLineReconnects(current)
    logging.getLogger("discord.client").addFilter(reconnects)
    try:
        return await _run_bot_until_stopped(config, token, once, current)
    finally:
        logging.getLogger("discord.client").removeFilter(reconnects)


async def _run_bot_until_stopped(config: Config, token: str, once: bool, current: list["HeraldBot"]) -> int:
    stop = asyncio.Event()

    def on_signal() -> None:
        stop.set()
        for bot in current:
            asyncio.ensure_future(bot.close())

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass
    delay = CONNECT_RETRY_FIRST
    while True:
        bot = HeraldBot(config, once=once)
        current[:] = [bot]
        try:
            async with bot:
                await bot.start(token, reconnect=not once)  # --once: a gateway that fails ends the run
            return bot.exit_code
        except discord.LoginFailure:
            print(f"herald: Discord rejected the token in {config.discord.token_env} (401 Unauthorized); "
                  "reset it in the developer portal and set the variable again", file=sys.stderr)
            return 1
        except discord.PrivilegedIntentsRequired:
            print("herald: Discord refused the connection for privileged intents; Herald needs none", file=sys.stderr)
            return 1
        except HeraldError as exc:
            print(f"herald: {exc}", file=sys.stderr)
            return 1
        except AttributeError as exc:
            # discord.py 2.x: when the very first gateway connection fails, its reconnect step reads
            # ``self.ws.sequence`` with no websocket yet. That is the gateway being unreachable.
            cause = exc.__context__
            if bot.ws is not None or not isinstance(cause, _UNREACHABLE):
                raise
            if stop.is_set():
                return 0
            log.debug("connecting to Discord's gateway failed", exc_info=True)
            log.error("cannot reach Discord at %s: %s; retrying in %.0fs until stopped",
                      discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, unreachable_reason(cause), delay)
        except _UNREACHABLE as exc:
            if stop.is_set():
                return 0
            if bot.ws is not None:  # it was connected: a new outage starts with the short pause again
                delay = CONNECT_RETRY_FIRST
            # after the login, it was the gateway (the websocket) that failed
            where = Route.BASE if bot.user is None else str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
            log.debug("connecting to Discord failed", exc_info=True)
            if once:
                log.error("cannot reach Discord at %s: %s; giving up (--once); --log-level debug shows the traceback",
                          where, unreachable_reason(exc))
                return 1
            log.error("cannot reach Discord at %s: %s; retrying in %.0fs until stopped", where,
                      unreachable_reason(exc), delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return 0
        except asyncio.TimeoutError:
            delay = min(delay * 2, CONNECT_RETRY_MAX)
