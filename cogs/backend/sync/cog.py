"""Syncs the slash commands with Discord only when their definitions changed since the last sync.

Discord rate-limits command syncs hard; a hash of the definitions (and the servers they are
synced to) is kept in the storage's meta table, so a restart with the same commands syncs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot

log = logging.getLogger("herald.discord")

COMMAND_HASH_KEY = "command_hash"


def command_hash(tree: app_commands.CommandTree[HeraldBot], guild_ids: list[int] | tuple[int, ...]) -> str:
    """A digest of every global command's definition and of the servers they go to."""
    payload = sorted((c.to_dict(tree) for c in tree.get_commands()), key=lambda c: c["name"])
    scope = sorted(guild_ids)
    return hashlib.sha256(json.dumps([payload, scope], sort_keys=True).encode()).hexdigest()


class CommandSync(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        await self.sync()

    async def sync(self) -> bool:
        """Syncs (to the configured servers only, when it names some); False when nothing changed."""
        bot = self.bot
        guild_ids = bot.config.discord.guild_ids
        digest = command_hash(bot.tree, guild_ids)
        if await bot.storage.get_meta(COMMAND_HASH_KEY) == digest:
            log.info("slash commands unchanged; not syncing")
            return False
        if guild_ids:
            for gid in guild_ids:
                guild = discord.Object(gid)
                bot.tree.copy_global_to(guild=guild)
                await bot.tree.sync(guild=guild)
            log.info("slash commands synced to %d guild(s)", len(guild_ids))
        else:
            await bot.tree.sync()
            log.info("slash commands synced globally")
        await bot.storage.set_meta(COMMAND_HASH_KEY, digest)
        return True
