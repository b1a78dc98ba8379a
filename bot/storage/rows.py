"""Rows to models and models to rows: the column lists and conversions every storage domain shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.config import FeedConfig
from bot.models import StoredEntry, Subscription

ENTRY_COLS = ("e.id, e.feed_id, e.key, e.title, e.link, e.summary, e.author, e.published, e.image, e.first_seen,"
              " e.thumbnail")
ENTRY_COLUMNS = 11  # columns in ENTRY_COLS; what a query selects after them starts at this index
FEED_NAME = "COALESCE(f.name, f.title, f.url)"
SUB_COLS = "s.id, s.feed_id, s.target, s.guild_id, s.options, s.paused, s.pause_reason, s.source"

# message options keep an explicit false or 0 (it overrides [defaults]); for the others it is the default
_MESSAGE_OPTIONS = frozenset({"summary_length", "feed_image"})


def entry_from_row(row: Sequence[Any], feed_title: str | None = None, feed_name: str | None = None,
          feed_image: str | None = None) -> StoredEntry:
    """A :class:`StoredEntry` from a row that starts with :data:`ENTRY_COLS`."""
    eid, feed_id, key, title, link, summary, author, published, image, first_seen, thumbnail = row[:ENTRY_COLUMNS]
    return StoredEntry(eid, feed_id, key, title, link, summary, author, published, image, first_seen,
                       feed_title=feed_title, feed_name=feed_name, thumbnail=thumbnail, feed_image=feed_image)


def options_json(sub_cfg: FeedConfig | None = None, **kw: Any) -> str:
    """A subscription's ``options`` column: its message options, as JSON."""
    opts: dict[str, Any] = {}
    if sub_cfg is not None:
        opts = {
            "mention_roles": list(sub_cfg.mention_roles),
            "create_thread": sub_cfg.create_thread,
            "username": sub_cfg.username,
            "avatar_url": sub_cfg.avatar_url,
            "alerts_channel": sub_cfg.alerts_channel,
            "summary_length": sub_cfg.summary_length,  # None: [defaults] decides, when delivering
            "feed_image": sub_cfg.feed_image,
        }
    opts.update(kw)
    return json.dumps({k: v for k, v in opts.items()
                       if v is not None and v != [] and (v is not False or k in _MESSAGE_OPTIONS)}, sort_keys=True)


def subscription_from_row(row: Sequence[Any]) -> Subscription:
    """A :class:`Subscription` from a row of :data:`SUB_COLS`."""
    sid, feed_id, target, guild_id, opts_json, paused, reason, source = row
    opts = json.loads(opts_json or "{}")
    return Subscription(
        id=sid, feed_id=feed_id, target=target, guild_id=guild_id,
        mention_roles=tuple(opts.get("mention_roles", ())), create_thread=bool(opts.get("create_thread")),
        username=opts.get("username"), avatar_url=opts.get("avatar_url"),
        paused=bool(paused), pause_reason=reason, source=source, alerts_channel=opts.get("alerts_channel"),
        summary_length=opts.get("summary_length"), feed_image=opts.get("feed_image"),
    )


def entry_scope(guild_id: int | None, feed_id: int | None) -> tuple[str, list[Any]]:
    """A condition on ``entries e``: the entries of one server's feeds, of one feed, or all."""
    conds, args = [], []
    if guild_id is not None:
        conds.append("e.feed_id IN (SELECT s.feed_id FROM subscriptions s WHERE s.guild_id = ? AND s.active = 1)")
        args.append(guild_id)
    if feed_id is not None:
        conds.append("e.feed_id = ?")
        args.append(feed_id)
    return (" AND ".join(conds) or "1 = 1"), args
