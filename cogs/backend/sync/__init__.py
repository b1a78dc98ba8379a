"""Slash-command sync, loaded after every cog that defines commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot


async def setup(bot: HeraldBot) -> None:
    from cogs.backend.sync.cog import CommandSync

    await bot.add_cog(CommandSync(bot))
