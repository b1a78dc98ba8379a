"""/search and /recent: members find past posts of this server's feeds."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import escape, limits
from bot.config import parse_since
from bot.errors import UserError
from bot.render import EMBED_COLOR, truncate
from bot.storage.base import SearchPage
from cogs.common import clean_snippet, feed_choices, feed_name, link_line, when

if TYPE_CHECKING:
    from bot.discord_bot import HeraldBot

PAGE_SIZE = 5
VIEW_TIMEOUT = 600.0


def search_embed(query: str, page: SearchPage, offset: int) -> discord.Embed:
    shown_query = escape.plain(" ".join(escape.clean(query).split()), one_line=True)
    embed = discord.Embed(title=truncate(f"Search: {shown_query}", limits.EMBED_TITLE), color=EMBED_COLOR)
    if not page.total:
        embed.description = "No results. Try other words, or fewer of them."
        return embed
    lines = []
    for i, hit in enumerate(page.hits, start=offset + 1):
        e = hit.entry
        head = (f"**{i}. {link_line(e.title, e.link)}**\n"
                f"{feed_name(hit.feed_name)} · {when(e.published or e.first_seen)}")
        snippet = clean_snippet(hit.snippet, 300)
        lines.append(head + (f"\n{snippet}" if snippet else ""))
    embed.description = truncate("\n\n".join(lines), limits.EMBED_DESCRIPTION)
    last = offset + len(page.hits)
    embed.set_footer(text=f"Results {offset + 1}–{last} of {page.total}")
    return embed


class SearchPager(discord.ui.View):
    """Previous/Next buttons that only the member who searched can press."""

    def __init__(self, cog: SearchCog, owner_id: int, query: str, scope: dict[str, Any], total: int) -> None:
        super().__init__(timeout=VIEW_TIMEOUT)
        self.cog = cog
        self.owner_id = owner_id
        self.query = query
        self.scope = scope
        self.total = total
        self.offset = 0
        self._update()

    def _update(self) -> None:
        self.previous.disabled = self.offset <= 0
        self.next.disabled = self.offset + PAGE_SIZE >= self.total

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message("Only the member who searched can turn these pages. "
                                                    "Run `/search` yourself.", ephemeral=True)
            return False
        return True

    async def _show(self, interaction: discord.Interaction, offset: int) -> None:
        self.offset = max(0, offset)
        page = await self.cog.bot.feeds.search(self.query, limit=PAGE_SIZE, offset=self.offset, **self.scope)
        self.total = page.total
        self._update()
        await interaction.response.edit_message(embed=search_embed(self.query, page, self.offset), view=self)

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary, custom_id="herald:search:prev")
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button[SearchPager]) -> None:
        await self._show(interaction, self.offset - PAGE_SIZE)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.primary, custom_id="herald:search:next")
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button[SearchPager]) -> None:
        await self._show(interaction, self.offset + PAGE_SIZE)


class SearchCog(commands.Cog):
    def __init__(self, bot: HeraldBot) -> None:
        self.bot = bot
        self.feeds = bot.feeds

    async def _scope(self, interaction: discord.Interaction, feed: str | None, since: str | None) -> dict[str, Any]:
        assert interaction.guild_id is not None  # nosec B101 # guild-only command: narrows the type
        scope: dict[str, Any] = {"guild_id": interaction.guild_id}
        if feed:
            scope["feed_id"] = (await self.feeds.resolve(interaction.guild_id, feed)).id
        if since:
            try:
                scope["since"] = parse_since(since, time.time())
            except ValueError as exc:
                raise UserError(f"`since`: {exc}.") from None
        return scope

    @app_commands.command(name="search", description="Search past posts of this server's feeds")
    @app_commands.describe(query="Words to find; \"quotes\" for a phrase", feed="Only this feed",
                           since="Only posts since a date (2026-01-31) or an age (7d)",
                           public="Show the results to everyone")
    @app_commands.guild_only()
    async def search(self, interaction: discord.Interaction, query: str, feed: str | None = None,
                     since: str | None = None, public: bool = False) -> None:
        scope = await self._scope(interaction, feed, since)
        page = await self.feeds.search(query, limit=PAGE_SIZE, offset=0, **scope)
        embed = search_embed(query, page, 0)
        if page.total > PAGE_SIZE:
            view = SearchPager(self, interaction.user.id, query, scope, page.total)
            await interaction.response.send_message(embed=embed, view=view, ephemeral=not public)
        else:
            await interaction.response.send_message(embed=embed, ephemeral=not public)

    @app_commands.command(name="recent", description="The newest posts of this server's feeds")
    @app_commands.describe(feed="Only this feed", count="How many (1-10)")
    @app_commands.guild_only()
    async def recent(self, interaction: discord.Interaction, feed: str | None = None,
                     count: app_commands.Range[int, 1, 10] = 5) -> None:
        scope = await self._scope(interaction, feed, None)
        entries = await self.feeds.recent(scope["guild_id"], scope.get("feed_id"), count)
        embed = discord.Embed(title="Recent posts", color=EMBED_COLOR)
        if not entries:
            embed.description = "No posts stored yet."
        else:
            lines = [f"**{link_line(e.title, e.link)}**\n{feed_name(e.feed_name)} · {when(e.published or e.first_seen)}"
                     for e in entries]
            embed.description = truncate("\n\n".join(lines), limits.EMBED_DESCRIPTION)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @search.autocomplete("feed")
    @recent.autocomplete("feed")
    async def feed_autocomplete(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await feed_choices(self.feeds, interaction, current)


async def setup_cog(bot: HeraldBot) -> None:
    await bot.add_cog(SearchCog(bot))
