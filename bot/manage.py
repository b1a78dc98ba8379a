"""Managing feeds from Discord: validation, discovery, quotas. The cogs call these; no Discord here."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.discover import find_feed_links, looks_like_html
from bot.errors import FeedError, ParseError, UnsafeURL, UserError
from bot.escape import plain
from bot.fetch import Fetcher, FetchResult, RefusedURL
from bot.models import ParsedFeed, StoredEntry
from bot.netguard import check_url
from bot.pipeline import ParsePool
from bot.storage.base import FeedInfo, Storage


PUBLIC_ONLY = "Feeds added from Discord must be on the public internet, with the host written plainly."


@dataclass(slots=True)
class Validated:
    url: str  # the feed's URL (after discovery)
    feed: ParsedFeed
    discovered_from: str | None = None


async def validate_feed_url(url: str, fetcher: Fetcher, parser: ParsePool, *, allow_private: bool) -> Validated:
    """Fetches and parses a URL given in Discord; follows an HTML page's advertised feed.
    Raises UserError with a message fit for the person who typed the URL."""
    url = url.strip().strip("<>")
    try:
        check_url(url, allow_private=allow_private, allow_file=False)
    except UnsafeURL as exc:
        raise UserError(f"That URL is refused: {_shown(exc)}. {PUBLIC_ONLY}") from None
    result = await _fetch(url, fetcher)
    source = None
    if looks_like_html(result.body, result.headers.get("content-type")):
        links = find_feed_links(result.body.decode("utf-8", "replace"), result.url)
        if not links:
            raise UserError("That page is not a feed and does not advertise one "
                            "(no `<link rel=\"alternate\" type=\"application/rss+xml\">`). Give the feed's own URL.")
        source, url = url, links[0]
        try:
            check_url(url, allow_private=allow_private, allow_file=False)
        except UnsafeURL as exc:
            raise UserError(f"The page advertises a feed at a refused URL: {_shown(exc)}. {PUBLIC_ONLY}") from None
        result = await _fetch(url, fetcher)
    try:
        parsed = await parser.parse(result.body, result.headers, result.url)
    except ParseError as exc:
        raise UserError(f"That URL did not return a feed Herald can read: {_shown(exc)}.") from None
    return Validated(url=result.permanent_url or url, feed=parsed, discovered_from=source)


def _shown(exc: Exception) -> str:
    """An error's text (it may quote a feed server's reason phrase) as plain Discord text."""
    return plain(str(exc), one_line=True)


async def _fetch(url: str, fetcher: Fetcher) -> FetchResult:
    try:
        return await fetcher.fetch(url, guarded=True)
    except RefusedURL as exc:  # "refused: <why>", by the static check or the resolver
        raise UserError(f"That URL is {_shown(exc)}. {PUBLIC_ONLY}") from None
    except FeedError as exc:
        raise UserError(f"Could not fetch {plain(url, one_line=True)}: {_shown(exc)}.") from None


async def check_quota(storage: Storage, guild_id: int, quota: int) -> None:
    own = await storage.discord_feed_count(guild_id)
    if own >= quota:
        raise UserError(f"This server already has {own} feeds, its limit ({quota}). Remove one first.")


async def already_in_channel(storage: Storage, guild_id: int, url: str, target: str) -> FeedInfo | None:
    return await storage.feed_in_target(url, target, guild_id)


async def resolve_feed(storage: Storage, guild_id: int, name: str) -> FeedInfo:
    info = await storage.find_feed(name, guild_id)
    if info is None:
        raise UserError(f"No feed named **{plain(name[:100], one_line=True)}** in this server. `/feed list` shows them.")
    return info


def preview_entry(parsed: ParsedFeed) -> StoredEntry | None:
    from bot.decide import chronological

    if not parsed.entries:
        return None
    now = time.time()
    e = chronological(list(parsed.entries), now)[-1]
    return StoredEntry(id=0, feed_id=0, key=e.key, title=e.title, link=e.link, summary=e.summary, author=e.author,
                       published=e.published, image=e.image, first_seen=now, thumbnail=e.thumbnail,
                       feed_image=parsed.image)


def autocomplete_names(names: list[str], current: str, limit: int) -> list[str]:
    """Prefix matches first, then substring matches, case-insensitive, at most ``limit``."""
    cur = current.strip().lower()
    prefix = [n for n in names if n.lower().startswith(cur)]
    inner = [n for n in names if cur in n.lower() and not n.lower().startswith(cur)]
    return (prefix + inner)[:limit]
