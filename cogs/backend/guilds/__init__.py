"""Learns the server of a subscription whose channel becomes visible."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot


async def setup(bot: HeraldBot) -> None:
    from cogs.backend.guilds.cog import GuildWatch

    await bot.add_cog(GuildWatch(bot))
