"""The one handler for every slash command's errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot


async def setup(bot: HeraldBot) -> None:
    from cogs.backend.errors.cog import ErrorHandler

    await bot.add_cog(ErrorHandler(bot))
