"""Feed management for the slash commands: the one object the cogs talk to.

Validate a URL, add a feed, remove, pause and resume it, find it by name, read its posts, and
wake the pipeline when something changed. It knows the core (bot.app.Herald) and nothing of
Discord: the cogs turn what it returns into replies, and what it raises (UserError) is the reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot import escape
from bot.manage import Validated, already_in_channel, check_quota, resolve_feed, validate_feed_url
from bot.models import StoredEntry
from bot.render import truncate
from bot.storage.base import FeedInfo, SearchPage, Storage

if TYPE_CHECKING:
    from bot.app import Herald

NAMES_TTL = 5.0  # seconds a server's feed names are reused for autocomplete (answers well within 3 s)
NAME_CHARS = 90  # a feed's name taken from its title when added


class FeedNames:
    """Per-server feed names for autocomplete, cached briefly."""

    def __init__(self, herald: Herald, *, ttl: float = NAMES_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._herald = herald
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[int, tuple[float, list[str]]] = {}

    def invalidate(self, guild_id: int | None) -> None:
        if guild_id is not None:
            self._cache.pop(guild_id, None)

    async def names(self, guild_id: int) -> list[str]:
        hit = self._cache.get(guild_id)
        now = self._clock()
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        names = [f.name for f in await self._herald.storage.list_feeds(guild_id)]
        self._cache[guild_id] = (now, names)
        return names


class FeedService:
    """What a server's managers and members may do with its feeds."""

    def __init__(self, herald: Herald) -> None:
        self._herald = herald
        self.names = FeedNames(herald)

    @property
    def _storage(self) -> Storage:  # the herald's, looked up each time
        return self._herald.storage

    # --- adding ---------------------------------------------------------------------------------

    async def check_quota(self, guild_id: int) -> None:
        """Raises UserError when the server may add no more feeds."""
        await check_quota(self._storage, guild_id, self._herald.config.discord.feed_quota)

    async def validate(self, url: str) -> Validated:
        """Fetches and parses ``url`` as the poller would (an HTML page's advertised feed is followed);
        raises UserError with a message for the person who typed it."""
        h = self._herald
        return await validate_feed_url(url, h.fetcher, h.parser, allow_private=h.config.polling.allow_private)

    async def already_there(self, guild_id: int, url: str, target: str) -> FeedInfo | None:
        return await already_in_channel(self._storage, guild_id, url, target)

    async def add(self, guild_id: int, checked: Validated, target: str, *, backfill: int) -> str:
        """Adds the validated feed for ``target`` under a name no other feed of the server has (its
        title, numbered when taken); wakes the poller. Returns the name."""
        name = truncate(" ".join(escape.clean(checked.feed.title or "").split()) or checked.url, NAME_CHARS)
        taken = {n.lower() for n in await self.names.names(guild_id)}
        base, n = name, 2
        while name.lower() in taken:
            name = f"{base} ({n})"
            n += 1
        await self._storage.add_feed(checked.url, target=target, guild_id=guild_id, name=name, backfill=backfill,
                                     now=time.time(), title=checked.feed.title)
        self.names.invalidate(guild_id)
        self._herald.poller.wake()
        return name

    # --- managing -------------------------------------------------------------------------------

    async def resolve(self, guild_id: int, name: str) -> FeedInfo:
        """The server's feed called ``name``; raises UserError when there is none."""
        return await resolve_feed(self._storage, guild_id, name)

    async def remove(self, info: FeedInfo, guild_id: int) -> None:
        await self._storage.remove_subscriptions(info.id, guild_id)
        self.names.invalidate(guild_id)

    async def set_paused(self, info: FeedInfo, guild_id: int, paused: bool, reason: str | None) -> None:
        """Pauses or resumes the feed in this server; resuming wakes the poller and the delivery."""
        await self._storage.set_paused(info.id, paused, reason, guild_id=guild_id)
        if not paused:
            self._herald.poller.wake()
            self._herald.worker.wake()

    # --- reading --------------------------------------------------------------------------------

    async def list_feeds(self, guild_id: int) -> list[FeedInfo]:
        return await self._storage.list_feeds(guild_id)

    async def recent(self, guild_id: int, feed_id: int | None, limit: int) -> list[StoredEntry]:
        return await self._storage.recent(guild_id=guild_id, feed_id=feed_id, limit=limit)

    async def search(self, query: str, *, limit: int, offset: int, guild_id: int, feed_id: int | None = None,
                     since: float | None = None) -> SearchPage:
        return await self._storage.search(query, limit=limit, offset=offset, guild_id=guild_id, feed_id=feed_id,
                                          since=since)
