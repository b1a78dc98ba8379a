"""The Discord side: the bot (its lifecycle and its extensions) and its one entry point.

What the bot does lives in its extensions (cogs/): the pipeline, the slash commands, the
command sync (cogs.backend.sync) and the error handler (cogs.backend.errors). The startup check
of every target and the notices are in bot.discord_targets; the feed management the commands
use is bot.service.FeedService, the same for every cog.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands
from discord.http import Route

from bot.app import Herald
from bot.config import Config, DiscordConfig
from bot.discord_sink import DiscordSink
from bot.discord_targets import DiscordNotifier, TargetChecker
from bot.errors import HeraldError
from bot.logs import register_secret
from bot.metrics import Metrics
from bot.ops import OpsServer, start_ops
from bot.service import FeedService
from bot.storage import open_storage

log = logging.getLogger("herald.discord")

# Loaded in this order: the error handler first (it answers for every command), the command sync
# last (it syncs the commands the others defined).
EXTENSIONS = ("cogs.backend.errors", "cogs.backend.guilds", "cogs.pipeline", "cogs.search", "cogs.feeds",
              "cogs.backend.sync")


def apply_endpoints(cfg: DiscordConfig) -> None:
    """Points discord.py at a Discord-compatible server when the config names one."""
    if cfg.api_base:
        Route.BASE = cfg.api_base.rstrip("/")
    if cfg.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.gateway_url)


class HeraldBot(commands.Bot):
    """Starts and stops the core with the Discord connection, and loads the extensions."""

    def __init__(self, config: Config, *, once: bool = False, clock: Callable[[], float] = time.time,
                 **options: Any) -> None:
        """``options`` go to discord.py's Bot (tests shorten ``guild_ready_timeout``)."""
        discord.VoiceClient.warn_nacl = False  # Herald never joins voice
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.none()
        intents.guilds = True  # channels, threads, roles and the bot's own member; nothing privileged
        self.metrics = Metrics()
        super().__init__(
            command_prefix=commands.when_mentioned, intents=intents, help_command=None,
            allowed_mentions=discord.AllowedMentions.none(), max_ratelimit_timeout=30.0,
            http_trace=self.metrics.trace_config(), **options,
        )
        self.config = config
        self.once = once
        self.clock = clock
        self.sink = DiscordSink(self)
        self.storage = open_storage(config.storage_url())
        webhook_channels: dict[str, int] = {}  # webhook variable -> the channel it posts into
        self.notifier = DiscordNotifier(self, config, self.storage, webhook_channels)
        self.herald = Herald(config, self.sink, storage=self.storage, clock=clock, metrics=self.metrics,
                             notifier=self.notifier)
        self.targets = TargetChecker(self, self.herald, self.sink, clock=clock, webhook_channels=webhook_channels)
        self.feeds = FeedService(self.herald)
        self.ops: OpsServer | None = None
        self._closed_all: asyncio.Event | None = None
        self.exit_code = 0

    @property
    def targets_checked(self) -> asyncio.Event:
        """Set once the startup check of every target is done."""
        return self.targets.checked

    async def setup_hook(self) -> None:
        await self.herald.open()
        if not self.once:
            self.ops = await start_ops(self.config, self.herald, bot=self)
        for ext in EXTENSIONS:
            await self.load_extension(ext)

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


def _has_websocket(client: discord.Client) -> bool:
    """Whether the client ever opened its gateway websocket (discord.py types ``ws`` as always set;
    it is None until the first connection)."""
    ws: object = client.ws
    return ws is not None


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

    def __init__(self, current: list[HeraldBot]) -> None:
        super().__init__()
        self.current = current

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info and record.msg == "Attempting a reconnect in %.2fs"):
            return True
        if any(not _has_websocket(bot) for bot in self.current):
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


async def _run_bot_until_stopped(config: Config, token: str, once: bool, current: list[HeraldBot]) -> int:
    stop = asyncio.Event()
    closing: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references

    def on_signal() -> None:
        stop.set()
        for bot in current:
            task = asyncio.ensure_future(bot.close())
            closing.add(task)
            task.add_done_callback(closing.discard)

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
            if _has_websocket(bot) or not isinstance(cause, _UNREACHABLE):
                raise
            if stop.is_set():
                return 0
            log.debug("connecting to Discord's gateway failed", exc_info=True)
            log.error("cannot reach Discord at %s: %s; retrying in %.0fs until stopped",
                      discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, unreachable_reason(cause), delay)
        except _UNREACHABLE as exc:
            if stop.is_set():
                return 0
            if _has_websocket(bot):  # it was connected: a new outage starts with the short pause again
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
