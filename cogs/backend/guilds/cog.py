"""A channel became visible (created, permissions changed, server joined): the subscriptions
into it that have no server yet get its server, so that server's /feed commands and /search see
them (bot.discord_targets.TargetChecker.learn_guild)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discord.ext import commands

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot


class GuildWatch(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_guild_channel_create(self, channel: Any) -> None:
        await self.bot.targets.learn_guild([channel])

    @commands.Cog.listener()
    async def on_guild_channel_update(self, _before: Any, after: Any) -> None:
        await self.bot.targets.learn_guild([after])

    @commands.Cog.listener()
    async def on_thread_create(self, thread: Any) -> None:
        await self.bot.targets.learn_guild([thread])

    @commands.Cog.listener()
    async def on_thread_update(self, _before: Any, after: Any) -> None:
        await self.bot.targets.learn_guild([after])

    @commands.Cog.listener()
    async def on_guild_join(self, guild: Any) -> None:
        await self.bot.targets.learn_guild([*guild.channels, *guild.threads])

    @commands.Cog.listener()
    async def on_guild_available(self, guild: Any) -> None:
        await self.bot.targets.learn_guild([*guild.channels, *guild.threads])
