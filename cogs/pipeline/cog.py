"""Runs the feed pipeline for the bot's lifetime: started in cog_load, stopped in cog_unload."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from discord.ext import commands

from bot.errors import HeraldError

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot

log = logging.getLogger("herald.pipeline")

STOP_TIMEOUT = 8.0


class PipelineCog(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.started = False  # past wait_until_ready: from here on, stopping waits for in-flight work

    async def cog_load(self) -> None:
        self.task = asyncio.create_task(self._main(), name="herald-pipeline")

    async def _main(self) -> None:
        try:
            await self.bot.wait_until_ready()
            self.started = True
            await self.bot.targets.check()
            if self.bot.once:
                stats, sent = await self.bot.herald.run_once()
                log.info("one cycle done: %d feeds polled, %d entries stored, %d announcements sent",
                         stats.polled, stats.stored, sent)
                await self.bot.close()
                return
            log.info("pipeline running")
            await self.bot.herald.run(self.stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # without its pipeline the bot is useless: say why and stop, non-zero
            if isinstance(exc, HeraldError):
                log.error("the pipeline stopped: %s", exc)
            else:
                log.exception("the pipeline stopped with an unexpected error")
            self.bot.exit_code = 1
            await self.bot.close()

    async def cog_unload(self) -> None:
        self.stop.set()
        task = self.task
        if task is None or task is asyncio.current_task() or task.done():
            return
        if not self.started:  # never connected (Discord unreachable): nothing is in flight
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("pipeline did not stop within %.0fs; cancelling", STOP_TIMEOUT)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        except Exception:
            log.exception("pipeline stopped with an error")
