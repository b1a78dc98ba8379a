from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot


async def setup(bot: HeraldBot) -> None:
    from cogs.feeds.cog import setup_cog

    await setup_cog(bot)
