"""Answers a slash command that failed: a user's mistake in words, Herald's own bug with an error
id that the server admin finds in the log (the traceback never reaches Discord)."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import HeraldError

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot

log = logging.getLogger("herald.discord")

ERROR_ID_BYTES = 4  # 8 hex digits: enough to find one line in a log


def error_id() -> str:
    return secrets.token_hex(ERROR_ID_BYTES)


def error_text(interaction: discord.Interaction, error: app_commands.AppCommandError) -> str:
    """The reply to a failed command; logs what is Herald's fault."""
    original = getattr(error, "original", error)
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the **Manage Server** permission to manage feeds."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You cannot use this command here."
    if isinstance(original, HeraldError):
        return str(original)
    eid = error_id()
    log.error("command %s failed (error id %s)", getattr(interaction.command, "qualified_name", "?"), eid,
              exc_info=original)
    return f"Something went wrong on Herald's side (error id `{eid}`). The server admin can find it in the log."


class ErrorHandler(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot
        self._previous = bot.tree.on_error

    async def cog_load(self) -> None:
        self.bot.tree.error(self.on_app_command_error)

    async def cog_unload(self) -> None:
        self.bot.tree.error(self._previous)

    async def on_app_command_error(self, interaction: discord.Interaction,
                                   error: app_commands.AppCommandError) -> None:
        text = error_text(interaction, error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not tell the user about an error: %s", text)
