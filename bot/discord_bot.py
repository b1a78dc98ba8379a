"""The Discord side: the bot, its one entry point, the startup check and the error handler."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from typing import Any, Callable

import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.http import Route

from bot import limits
from bot.app import Herald
from bot.config import Config, DiscordConfig
from bot.discord_sink import DiscordSink
from bot.errors import HeraldError
from bot.logs import register_secret
from bot.metrics import Metrics
from bot.ops import OpsServer, start_ops
from bot.render import truncate

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
        self.metrics = (herald.metrics if herald is not None else None) or Metrics()
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
        try:
            await super().close()  # unloads the cogs: the pipeline stops and hands back in-flight rows
        finally:
            if self.ops is not None:
                await self.ops.stop()
            await self.sink.close()
            await self.herald.close()

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
        """Checks every configured channel; pauses the subscriptions whose target is unusable.
        Returns the problems found (also logged)."""
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
            if problem is None:
                channel = self.get_channel(sub.channel_id)
                guild = getattr(channel, "guild", None)
                if guild is not None:
                    await self.storage.set_subscription_guild(sub.target, guild.id)
                continue
            problems.append(problem)
            log.error("%s; its feed subscriptions there are paused", problem)
            if await self.storage.pause_target(sub.target, problem, now):  # newly paused: one notice
                broken.append((sub.target, problem))
        for sub in subs:
            if sub.webhook_env and not os.environ.get(sub.webhook_env):
                problem = f"webhook variable ${sub.webhook_env} is not set"
                problems.append(problem)
                log.error("%s; that webhook's subscriptions are paused", problem)
                if await self.storage.pause_target(sub.target, problem, now):
                    broken.append((sub.target, problem))
        for target, problem in broken:  # once every target is checked, so a notice never goes to a broken one
            try:
                await self.herald._target_broken(target, problem)
            except Exception:
                log.exception("could not send the notice for %s", target)
        self.targets_checked.set()
        return problems

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
        """Posts a notice about a feed: to the feed's own alerts_channel, else [discord] alerts_channel,
        else the feed's first channel that is not paused (a broken channel cannot take its own notice)."""
        subs = await self.storage.subscriptions(feed_id) if feed_id is not None else []
        channel_id = next((s.alerts_channel for s in subs if s.alerts_channel), None) or self.config.discord.alerts_channel
        if channel_id is None:
            usable = [s for s in subs if s.channel_id is not None and not s.paused]
            if usable:
                channel_id = usable[0].channel_id
        if channel_id is None:
            log.warning("no alerts channel for: %s", text)
            return
        try:
            await self.http.request(
                Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id),
                json={"content": truncate(text, limits.MESSAGE_CONTENT), "allowed_mentions": {"parse": []}},
            )
        except discord.HTTPException as exc:
            log.error("could not post an alert to channel %s: HTTP %s", channel_id, exc.status)

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


async def _run_bot(config: Config, token: str, once: bool) -> int:
    apply_endpoints(config.discord)
    bot = HeraldBot(config, once=once)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass
    try:
        async with bot:
            await bot.start(token)
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
    return bot.exit_code
