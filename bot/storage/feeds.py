"""Feeds and subscriptions in SQL: :class:`bot.storage.base.FeedStore`, one implementation for both databases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.config import FeedConfig
from bot.models import Subscription
from bot.storage.base import FeedInfo
from bot.storage.db import Conn, Database
from bot.storage.normalise import MAX_TITLE_CHARS, clean_optional
from bot.storage.rows import FEED_NAME, SUB_COLS, options_json, subscription_from_row
from bot.storage.schema import Dialect

DEFAULT_INTERVAL_KEY = "polling_interval"  # the [polling] interval the feeds were last scheduled with


def _sub_filter(guild_id: int | None) -> tuple[str, tuple[Any, ...]]:
    """The condition on ``subscriptions s`` that makes a feed listed: active, in the server when set."""
    if guild_id is None:
        return "s.active = 1", ()
    return "s.active = 1 AND s.guild_id = ?", (guild_id,)


class SqlFeeds:
    """Implements :class:`bot.storage.base.FeedStore`."""

    def __init__(self, db: Database, dialect: Dialect) -> None:
        self.db = db
        self.dialect = dialect


    async def _upsert_feed(self, tx: Conn, url: str, now: float, **fields: Any) -> int:
        row = await tx.fetchone("SELECT id FROM feeds WHERE url = ?", (url,))
        if row:
            feed_id = int(row[0])
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                await tx.execute(f"UPDATE feeds SET {sets} WHERE id = ?", (*fields.values(), feed_id))  # nosec B608 # constant SQL; values are bound
            return feed_id
        cols = ["url", "created", *fields]
        row = await tx.fetchone(
            f"INSERT INTO feeds ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"  # nosec B608 # constant SQL; values are bound
            " ON CONFLICT (url) DO NOTHING RETURNING id",
            (url, now, *fields.values()),
        )
        if row is None:  # another process inserted it in between
            return await self._upsert_feed(tx, url, now, **fields)
        return int(row[0])

    async def _upsert_subscription(
        self, tx: Conn, feed_id: int, target: str, *, guild_id: int | None, name: str | None, source: str,
        options: str, now: float,
    ) -> tuple[int, bool]:
        row = await tx.fetchone(
            "SELECT id, active FROM subscriptions WHERE feed_id = ? AND target = ?", (feed_id, target)
        )
        if row:
            await tx.execute(
                "UPDATE subscriptions SET active = 1, source = ?, options = ?, name = ?,"
                " guild_id = COALESCE(?, guild_id) WHERE id = ?",
                (source, options, name, guild_id, row[0]),
            )
            return int(row[0]), not row[1]
        row = await tx.fetchone(
            "INSERT INTO subscriptions (feed_id, target, guild_id, name, source, options, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (feed_id, target, guild_id, name, source, options, now),
        )
        assert row is not None  # nosec B101 # narrows a type: RETURNING/foreign key guarantee the row
        return int(row[0]), True

    async def sync_config_feeds(self, feeds: Sequence[FeedConfig], now: float,
                                default_interval: float | None = None) -> None:
        """Makes the database's config feeds match the config file. Feeds dropped from the
        file stop being polled; their entries stay, so re-adding them repeats nothing.

        A feed whose poll interval changed (its own ``interval``, or ``default_interval`` — the
        ``[polling] interval`` — for feeds without one) is rescheduled one new interval after its
        last fetch, instead of waiting for the time the old interval gave it. Failing feeds keep
        their backoff."""
        async with self.db.transaction() as tx:
            wanted: set[int] = set()
            old_default: float | None = None
            if default_interval is not None:
                row = await tx.fetchone("SELECT value FROM kv WHERE key = ?", (DEFAULT_INTERVAL_KEY,))
                old_default = float(row[0]) if row else default_interval
                await tx.execute(
                    "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (DEFAULT_INTERVAL_KEY, repr(default_interval)),
                )
            await tx.execute("UPDATE subscriptions SET active = 0 WHERE source = 'config'")
            for fc in feeds:
                row = await tx.fetchone("SELECT interval FROM feeds WHERE url = ?", (fc.url,))
                feed_id = await self._upsert_feed(
                    tx, fc.url, now, name=fc.name, interval=fc.interval, backfill=fc.backfill,
                    max_per_poll=fc.max_per_poll, source="config",
                )
                wanted.add(feed_id)
                if row is not None and default_interval is not None:
                    before, after = row[0] or old_default, fc.interval or default_interval
                    if before != after:
                        await self._reschedule(tx, "id = ?", (feed_id,), after)
                targets = [f"channel:{c}" for c in fc.channels] + [f"webhook:{w}" for w in fc.webhooks]
                for target in targets:
                    await self._upsert_subscription(
                        tx, feed_id, target, guild_id=fc.guild_id, name=fc.name, source="config",
                        options=options_json(fc), now=now,
                    )
            if default_interval is not None and old_default != default_interval:  # feeds added from Discord
                await self._reschedule(tx, "interval IS NULL AND source <> 'config'", (), default_interval)
            # feeds that no longer have any active subscription are not polled
            await tx.execute(
                "UPDATE feeds SET source = 'discord' WHERE source = 'config' AND "
                "NOT EXISTS (SELECT 1 FROM subscriptions s"
                " WHERE s.feed_id = feeds.id AND s.source = 'config' AND s.active = 1)"
            )

    @staticmethod
    async def _reschedule(tx: Conn, where: str, args: Sequence[Any], interval: float) -> None:
        await tx.execute(
            f"UPDATE feeds SET next_fetch = last_fetch + ? WHERE {where}"  # nosec B608 # constant SQL; values are bound
            " AND last_fetch IS NOT NULL AND error_count = 0",
            (interval, *args),
        )

    async def add_feed(
        self, url: str, *, target: str, guild_id: int | None, name: str | None, backfill: int, now: float,
        title: str | None = None, source: str = "discord",
    ) -> int:
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT id, last_success FROM feeds WHERE url = ?", (url,))
            if row is None:
                feed_id = await self._upsert_feed(
                    tx, url, now, title=clean_optional(title, MAX_TITLE_CHARS), backfill=backfill,
                )
                fresh_feed = True
            else:
                feed_id, fresh_feed = int(row[0]), row[1] is None
            sub_id, created = await self._upsert_subscription(
                tx, feed_id, target, guild_id=guild_id, name=name, source=source, options=options_json(), now=now,
            )
            await tx.execute("UPDATE feeds SET next_fetch = ? WHERE id = ? AND paused = 0", (now, feed_id))
            if created and not fresh_feed and backfill > 0:
                # the feed is polled already: backfill this new subscription from what is stored
                rows = await tx.fetchall(
                    "SELECT id FROM entries WHERE feed_id = ? ORDER BY COALESCE(published, first_seen) DESC, id DESC"
                    " LIMIT ?",
                    (feed_id, backfill),
                )
                ids = [r[0] for r in reversed(rows)]
                await tx.executemany(
                    "INSERT INTO deliveries (subscription_id, target, entry_id, kind, created)"
                    " VALUES (?, ?, ?, 'entry', ?)"
                    " ON CONFLICT DO NOTHING",
                    [(sub_id, target, i, now) for i in ids],
                )
            elif created and fresh_feed:
                await tx.execute("UPDATE feeds SET backfill = ? WHERE id = ?", (backfill, feed_id))
            return feed_id

    async def remove_subscriptions(self, feed_id: int, guild_id: int) -> int:
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "DELETE FROM subscriptions WHERE feed_id = ? AND guild_id = ? AND source <> 'config'",
                (feed_id, guild_id),
            )
            return n

    async def set_paused(
        self, feed_id: int, paused: bool, reason: str | None = None, guild_id: int | None = None,
    ) -> int:
        async with self.db.transaction() as tx:
            if guild_id is None:
                n = await tx.execute(
                    "UPDATE feeds SET paused = ?, pause_reason = ?,"
                    " error_count = CASE WHEN ? = 0 THEN 0 ELSE error_count END,"
                    " first_error_at = CASE WHEN ? = 0 THEN NULL ELSE first_error_at END WHERE id = ?",
                    (int(paused), reason if paused else None, int(paused), int(paused), feed_id),
                )
                if not paused:
                    await tx.execute(
                        "UPDATE subscriptions SET paused = 0, pause_reason = NULL WHERE feed_id = ?", (feed_id,)
                    )
            else:
                n = await tx.execute(
                    "UPDATE subscriptions SET paused = ?, pause_reason = ? WHERE feed_id = ? AND guild_id = ?",
                    (int(paused), reason if paused else None, feed_id, guild_id),
                )
                if not paused:
                    await tx.execute(
                        "UPDATE feeds SET paused = 0, pause_reason = NULL, error_count = 0, first_error_at = NULL"
                        " WHERE id = ?",
                        (feed_id,),
                    )
            if not paused:
                await tx.execute("UPDATE feeds SET next_fetch = 0 WHERE id = ?", (feed_id,))
            return n

    async def _feed_infos(self, where: str, args: Sequence[Any], guild_id: int | None) -> list[FeedInfo]:
        sub_filter, sub_args = _sub_filter(guild_id)
        of_sub = f"FROM subscriptions s WHERE s.feed_id = f.id AND {sub_filter}"  # the feed's listed subscriptions
        rows = await self.db.fetchall(
            f"SELECT f.id, f.url, {FEED_NAME}, f.title, f.source, f.paused, f.pause_reason,"  # nosec B608 # constant SQL; values are bound
            " f.last_fetch, f.last_success, f.next_fetch, f.last_error, f.error_count,"
            " (SELECT COUNT(*) FROM entries e WHERE e.feed_id = f.id),"
            f" (SELECT MIN(s.name) {of_sub}), (SELECT MAX(s.paused) {of_sub}), (SELECT MAX(s.pause_reason) {of_sub}),"
            f" (SELECT MAX(CASE WHEN s.source = 'config' THEN 1 ELSE 0 END) {of_sub})"
            f" FROM feeds f WHERE EXISTS (SELECT 1 {of_sub}) {where}"
            f" ORDER BY LOWER({FEED_NAME}), f.id",
            (*sub_args, *sub_args, *sub_args, *sub_args, *sub_args, *args),
        )
        out = []
        for r in rows:
            (fid, url, name, title, _source, paused, reason, lf, ls, nf, le, ec, n_entries, sub_name, sub_paused,
             sub_reason, from_config) = r
            out.append(FeedInfo(
                id=fid, url=url, name=sub_name or name, title=title,
                source="config" if from_config else "discord",
                paused=bool(paused) or bool(sub_paused), pause_reason=reason or sub_reason,
                last_fetch=lf, last_success=ls, next_fetch=nf, last_error=le, error_count=ec, entries=n_entries,
            ))
        if out:
            ids = [f.id for f in out]
            tgt_rows = await self.db.fetchall(
                "SELECT s.feed_id, s.target FROM subscriptions s"  # nosec B608 # constant SQL; values are bound
                f" WHERE {self.dialect.in_list('s.feed_id')} AND {sub_filter} ORDER BY s.id",
                (self.dialect.list_param(ids), *sub_args),
            )
            counts = await self.db.fetchall(
                "SELECT s.feed_id, d.state, COUNT(*) FROM deliveries d"  # nosec B608 # constant SQL; values are bound
                " JOIN subscriptions s ON s.id = d.subscription_id"
                f" WHERE {self.dialect.in_list('s.feed_id')} AND {sub_filter} AND d.state <> 'sent'"
                " GROUP BY s.feed_id, d.state",
                (self.dialect.list_param(ids), *sub_args),
            )
            by_id = {f.id: f for f in out}
            for fid, target in tgt_rows:
                by_id[fid].targets.append(target)
            for fid, state, n in counts:
                if state == "pending":
                    by_id[fid].pending = n
                elif state == "failed":
                    by_id[fid].failed = n
        return out

    async def list_feeds(self, guild_id: int | None = None) -> list[FeedInfo]:
        return await self._feed_infos("", (), guild_id)

    async def find_feed(self, name_or_url: str, guild_id: int | None = None) -> FeedInfo | None:
        wanted = name_or_url.strip().lower()
        sub_filter, sub_args = _sub_filter(guild_id)
        lower = self.dialect.lower
        # the name as listed: the subscriptions' own name, else the feed's (see _feed_infos)
        listed_name = (
            "COALESCE(NULLIF((SELECT MIN(s.name) FROM subscriptions s WHERE s.feed_id = f.id"  # nosec B608 # constant SQL; values are bound
            f" AND {sub_filter}), ''), {FEED_NAME})"
        )
        found = await self._feed_infos(
            f" AND ({lower}({listed_name}) = ? OR {lower}(f.url) = ? OR CAST(f.id AS TEXT) = ?)",
            (*sub_args, wanted, wanted, wanted), guild_id,
        )
        return found[0] if found else None

    async def feed_in_target(self, url: str, target: str, guild_id: int | None = None) -> FeedInfo | None:
        sub_filter, sub_args = _sub_filter(guild_id)
        found = await self._feed_infos(
            " AND f.url = ? AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = f.id AND s.target = ? AND"  # nosec B608 # constant SQL; values are bound
            f" {sub_filter})",
            (url, target, *sub_args), guild_id,
        )
        return found[0] if found else None

    async def discord_feed_count(self, guild_id: int) -> int:
        # a feed is the server's own unless one of its subscriptions there comes from the config file
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM feeds f WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = f.id"
            " AND s.active = 1 AND s.guild_id = ?) AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = f.id"
            " AND s.active = 1 AND s.guild_id = ? AND s.source = 'config')",
            (guild_id, guild_id),
        )
        return int(row[0]) if row else 0

    async def set_subscription_guild(self, target: str, guild_id: int) -> None:
        await self.db.execute(
            "UPDATE subscriptions SET guild_id = ? WHERE target = ? AND guild_id IS NULL", (guild_id, target)
        )

    async def subscriptions(self, feed_id: int | None = None) -> list[Subscription]:
        where = "s.active = 1" + (" AND s.feed_id = ?" if feed_id is not None else "")
        rows = await self.db.fetchall(f"SELECT {SUB_COLS} FROM subscriptions s WHERE {where} ORDER BY s.id",  # nosec B608 # constant SQL; values are bound
                                      (feed_id,) if feed_id is not None else ())
        return [subscription_from_row(r) for r in rows]

    async def pause_target(self, target: str, reason: str, now: float) -> list[Subscription]:
        """A target Discord refuses (deleted channel, lost permission): pause its subscriptions
        and fail its pending deliveries with the reason. Returns the subscriptions newly paused."""
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {SUB_COLS} FROM subscriptions s"  # nosec B608 # constant SQL; values are bound
                " WHERE s.target = ? AND s.paused = 0 AND s.active = 1", (target,)
            )
            await tx.execute(
                "UPDATE subscriptions SET paused = 1, pause_reason = ? WHERE target = ? AND paused = 0",
                (reason, target),
            )
            await tx.execute(
                "UPDATE deliveries SET state = 'failed', error = ?, lease_until = 0"
                " WHERE target = ? AND state = 'pending'",
                (reason, target),
            )
            return [subscription_from_row(r) for r in rows]
