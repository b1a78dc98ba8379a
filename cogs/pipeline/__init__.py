from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot


async def setup(bot: HeraldBot) -> None:
    from cogs.pipeline.cog import PipelineCog

    await bot.add_cog(PipelineCog(bot))
