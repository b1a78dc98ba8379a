"""/feed …: server managers add, remove, pause, resume, inspect and test feeds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import escape, limits
from bot.errors import UserError
from bot.discord_targets import target_problem
from bot.manage import preview_entry
from bot.models import Subscription
from bot.render import EMBED_COLOR, render_entry, truncate
from bot.storage.base import FeedInfo
from bot.targets import ChannelTarget, format_target, parse_target
from cogs.common import feed_choices, feed_name, shown_url, when

STATE_CHARS = 200  # a feed's state (its pause reason or last error) in /feed list
ERROR_CHARS = 300  # its last error in /feed status

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot

# The channel option offers text, announcement, forum and media channels and threads only.
TargetChannel = discord.TextChannel | discord.ForumChannel | discord.Thread


def _targets(info: FeedInfo) -> str:
    out = []
    for text in info.targets:
        try:
            target = parse_target(text)
        except ValueError:
            out.append(escape.code_span(text))
            continue
        if isinstance(target, ChannelTarget):
            out.append(f"<#{target.channel_id}>")
        else:
            out.append(f"webhook {escape.code_span(target.env)}")
    return ", ".join(out) or "nowhere"


def _shown(text: str, limit: int) -> str:
    """Text a feed server or a member chose (an error's reason phrase, a user name), plain."""
    return escape.plain(truncate(" ".join(escape.clean(text).split()), limit), one_line=True)


def _state(info: FeedInfo) -> str:
    if info.paused:
        return f"⏸ paused — {_shown(info.pause_reason or 'by a manager', STATE_CHARS)}"
    if info.last_error:
        return f"⚠ failing ({info.error_count}×): {_shown(info.last_error, STATE_CHARS)}"
    return "✅ ok" if info.last_success else "⏳ not fetched yet"


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class FeedsCog(commands.GroupCog, group_name="feed", group_description="Manage this server's feeds"):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot
        self.feeds = bot.feeds
        super().__init__()

    def _preview_subscription(self) -> Subscription:
        """Previews render as a feed added from Discord will be announced: with the [defaults]."""
        return Subscription(0, 0, "preview").with_defaults(self.bot.config.defaults)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Checked at run time too: the default permission can be overridden per server.
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        perms = interaction.permissions
        if not (perms.manage_guild or perms.administrator):
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    @app_commands.command(name="add", description="Announce a feed in a channel")
    @app_commands.describe(url="The feed's URL, or a web page that advertises its feed",
                           channel="Where to announce new posts", backfill="Announce the newest N posts now (0-10)")
    async def add(self, interaction: discord.Interaction, url: str,
                  channel: TargetChannel,
                  backfill: app_commands.Range[int, 0, 10] = 0) -> None:
        assert interaction.guild_id is not None  # nosec B101 # guild-only command: narrows the type
        if channel.guild.id != interaction.guild_id:
            raise UserError("That channel belongs to another server.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        problem = await target_problem(self.bot, channel.id, False)
        if problem:
            raise UserError(f"Herald cannot post there: {problem}.")
        await self.feeds.check_quota(interaction.guild_id)
        checked = await self.feeds.validate(url)
        target = format_target(ChannelTarget(channel.id))
        existing = await self.feeds.already_there(interaction.guild_id, checked.url, target)
        if existing is not None:
            raise UserError(f"**{feed_name(existing.name)}** is already announced in <#{channel.id}>.")
        name = await self.feeds.add(interaction.guild_id, checked, target, backfill=backfill)
        found = f" (found on {shown_url(checked.discovered_from)})" if checked.discovered_from else ""
        text = (f"Added **{feed_name(name)}**{found}: {len(checked.feed.entries)} entries now, "
                f"new posts will be announced in <#{channel.id}>"
                + (f"; the newest {backfill} will be announced shortly." if backfill else "."))
        entry = preview_entry(checked.feed)
        embeds = []
        if entry is not None:
            payload = render_entry(entry, checked.feed.title, self._preview_subscription())
            embeds = [discord.Embed.from_dict(payload["embeds"][0])]
            text += "\nThe newest entry will look like this:"
        await interaction.followup.send(text, embeds=embeds, ephemeral=True)

    @app_commands.command(name="remove", description="Stop announcing a feed in this server")
    async def remove(self, interaction: discord.Interaction, feed: str) -> None:
        assert interaction.guild_id is not None  # nosec B101 # guild-only command: narrows the type
        info = await self.feeds.resolve(interaction.guild_id, feed)
        if info.source == "config":
            raise UserError(f"**{feed_name(info.name)}** comes from the config file; remove it there "
                            "(you can `/feed pause` it).")
        await self.feeds.remove(info, interaction.guild_id)
        await interaction.response.send_message(f"Removed **{feed_name(info.name)}**. Its past posts stay searchable.",
                                                ephemeral=True)

    @app_commands.command(name="list", description="List this server's feeds")
    async def list_feeds(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None  # nosec B101 # guild-only command: narrows the type
        feeds = await self.feeds.list_feeds(interaction.guild_id)
        embed = discord.Embed(title=f"Feeds ({len(feeds)})", color=EMBED_COLOR)
        if not feeds:
            embed.description = "No feeds yet. Add one with `/feed add`."
        lines = []
        for f in feeds:
            tag = " · from config" if f.source == "config" else ""
            lines.append(f"**{feed_name(f.name)}**{tag}\n{shown_url(f.url)} → {_targets(f)}\n{_state(f)}")
        if lines:
            embed.description = truncate("\n\n".join(lines), limits.EMBED_DESCRIPTION)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    async def _set_paused(self, interaction: discord.Interaction, feed: str, paused: bool) -> None:
        assert interaction.guild_id is not None  # nosec B101 # guild-only command: narrows the type
        info = await self.feeds.resolve(interaction.guild_id, feed)
        reason = f"paused by {interaction.user} with /feed pause" if paused else None
        await self.feeds.set_paused(info, interaction.guild_id, paused, reason)
        await interaction.response.send_message(
            f"**{feed_name(info.name)}** is {'paused' if paused else 'resumed'}.", ephemeral=True)

    @app_commands.command(name="pause", description="Stop announcing a feed for now")
    async def pause(self, interaction: discord.Interaction, feed: str) -> None:
        await self._set_paused(interaction, feed, True)

    @app_commands.command(name="resume", description="Announce a paused feed again")
    async def resume(self, interaction: discord.Interaction, feed: str) -> None:
        await self._set_paused(interaction, feed, False)

    @app_commands.command(name="status", description="How a feed is doing: fetches, errors, deliveries")
    async def status(self, interaction: discord.Interaction, feed: str | None = None) -> None:
        assert interaction.guild_id is not None  # nosec B101 # guild-only command: narrows the type
        if feed:
            feeds = [await self.feeds.resolve(interaction.guild_id, feed)]
        else:
            feeds = await self.feeds.list_feeds(interaction.guild_id)
        embed = discord.Embed(title="Feed status", color=EMBED_COLOR)
        if not feeds:
            embed.description = "No feeds yet."
        for f in feeds[: limits.EMBED_FIELDS]:
            fetched = f"Last fetch {when(f.last_fetch)}" if f.last_fetch else "Not fetched yet"
            success = f"last success {when(f.last_success)}" if f.last_success else "never succeeded"
            value = (f"{_state(f)}\n{fetched} · {success} · "
                     f"next {when(f.next_fetch) if not f.paused else '—'}\n"
                     f"{f.entries} entries stored · {f.pending} pending · {f.failed} failed deliveries")
            if f.last_error:
                value += f"\nLast error: {_shown(f.last_error, ERROR_CHARS)}"
            embed.add_field(name=truncate(feed_name(f.name), limits.EMBED_FIELD_NAME),
                            value=truncate(value, limits.EMBED_FIELD_VALUE), inline=False)
        if len(feeds) > limits.EMBED_FIELDS:
            embed.set_footer(text=f"and {len(feeds) - limits.EMBED_FIELDS} more; name a feed to see it")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="test", description="Preview a feed's newest announcement (only you see it)")
    async def test(self, interaction: discord.Interaction, feed: str) -> None:
        assert interaction.guild_id is not None  # nosec B101 # guild-only command: narrows the type
        info = await self.feeds.resolve(interaction.guild_id, feed)
        entries = await self.feeds.recent(interaction.guild_id, info.id, 1)
        if not entries:
            raise UserError(f"**{feed_name(info.name)}** has no stored entries yet; "
                            f"it is fetched {when(info.next_fetch)}.")
        payload = render_entry(entries[0], entries[0].feed_title or info.title, self._preview_subscription())
        await interaction.response.send_message(
            "Preview of the newest announcement:", embeds=[discord.Embed.from_dict(e) for e in payload["embeds"]],
            ephemeral=True)

    @remove.autocomplete("feed")
    @pause.autocomplete("feed")
    @resume.autocomplete("feed")
    @status.autocomplete("feed")
    @test.autocomplete("feed")
    async def feed_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await feed_choices(self.feeds, interaction, current)


async def setup_cog(bot: HeraldBot) -> None:
    await bot.add_cog(FeedsCog(bot))
