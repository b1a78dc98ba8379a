"""Running the real HeraldBot (discord.py) against the fake Discord, in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import discord.gateway
import discord.http

from bot.config import Config
from bot.discord_bot import HeraldBot, apply_endpoints

SEED = Path(__file__).parent.parent / "examples" / "seed-vsoch.rss.xml"


def fake_discord_toml(fake: Any, db: Path, token_env: str = "HERALD_TEST_TOKEN") -> str:
    """The head of a herald.toml for a `herald` subprocess: Discord is the fake, storage a SQLite file."""
    return f"""
[discord]
token_env = "{token_env}"
api_base = "{fake.api_base}"
gateway_url = "{fake.gateway_url}"
[storage]
url = "sqlite:///{db}"
"""


@contextlib.asynccontextmanager
async def running_bot(config: Config, token: str, *, timeout: float = 15.0, **kwargs: Any) -> AsyncIterator[HeraldBot]:
    """Starts the bot, waits until its startup check ran, yields it, and closes it."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    apply_endpoints(config.discord)
    kwargs.setdefault("guild_ready_timeout", 0.1)  # the fake sends every GUILD_CREATE right after READY
    bot = HeraldBot(config, **kwargs)
    task = asyncio.create_task(bot.start(token))
    checked = asyncio.create_task(bot.targets_checked.wait())
    try:
        done, _ = await asyncio.wait({task, checked}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises the bot's error
            raise AssertionError("the bot stopped before it was ready")
        if checked not in done:
            raise AssertionError(f"the bot was not ready within {timeout}s")
        yield bot
    finally:
        checked.cancel()
        if not bot.is_closed():
            await bot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
