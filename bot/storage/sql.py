"""The storage, written once in SQL that both SQLite and PostgreSQL accept."""

from __future__ import annotations

import json
import time
from typing import Any, Sequence, get_args

from bot.config import FeedConfig
from bot.models import Delivery, DeliveryState, FeedState, StoredEntry, Subscription
from bot.storage.base import ClaimedDelivery, FeedInfo, PollOutcome, PollResult, SearchPage
from bot.storage.db import Conn, Database
from bot.storage.normalise import MAX_TITLE_CHARS, clean_optional, lookup_keys, normalise_outcome
from bot.targets import ChannelTarget, WebhookTarget, format_target

_ENTRY_COLS = ("e.id, e.feed_id, e.key, e.title, e.link, e.summary, e.author, e.published, e.image, e.first_seen,"
               " e.thumbnail")
ENTRY_COLUMNS = 11  # columns in _ENTRY_COLS; what a query selects after them starts at this index
_FEED_NAME = "COALESCE(f.name, f.title, f.url)"
DEFAULT_INTERVAL_KEY = "polling_interval"  # the [polling] interval the feeds were last scheduled with


def _entry(row: Sequence[Any], feed_title: str | None = None, feed_name: str | None = None,
           feed_image: str | None = None) -> StoredEntry:
    return StoredEntry(*row[:10], feed_title=feed_title, feed_name=feed_name, thumbnail=row[10], feed_image=feed_image)


def _options(sub_cfg: FeedConfig | None = None, **kw: Any) -> str:
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
    # message options keep an explicit false or 0 (it overrides [defaults]); for the others it is the default
    return json.dumps({k: v for k, v in opts.items()
                       if v is not None and v != [] and (v is not False or k in _MESSAGE_OPTIONS)}, sort_keys=True)


_MESSAGE_OPTIONS = frozenset({"summary_length", "feed_image"})


def _subscription(row: Sequence[Any]) -> Subscription:
    sid, feed_id, target, guild_id, options, paused, reason, source = row
    opts = json.loads(options or "{}")
    return Subscription(
        id=sid, feed_id=feed_id, target=target, guild_id=guild_id,
        mention_roles=tuple(opts.get("mention_roles", ())), create_thread=bool(opts.get("create_thread")),
        username=opts.get("username"), avatar_url=opts.get("avatar_url"),
        paused=bool(paused), pause_reason=reason, source=source, alerts_channel=opts.get("alerts_channel"),
        summary_length=opts.get("summary_length"), feed_image=opts.get("feed_image"),
    )


_SUB_COLS = "s.id, s.feed_id, s.target, s.guild_id, s.options, s.paused, s.pause_reason, s.source"


class SqlStorage:
    """Implements :class:`bot.storage.base.Storage` over a :class:`Database` adapter."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.fetchone("SELECT 1")

    # --- dialect hooks --------------------------------------------------------------------

    def _in_list(self, column: str) -> str:
        """A condition ``column IN <one list parameter>``."""
        if self.db.dialect == "postgres":
            return f"{column} = ANY(?)"
        return f"{column} IN (SELECT value FROM json_each(?))"  # nosec B608 # constant SQL fragments; values are bound

    def _list_param(self, values: Sequence[Any]) -> Any:
        return list(values) if self.db.dialect == "postgres" else json.dumps(list(values))

    # --- feeds and subscriptions ------------------------------------------------------------

    async def _upsert_feed(self, tx: Conn, url: str, now: float, **fields: Any) -> int:
        row = await tx.fetchone("SELECT id FROM feeds WHERE url = ?", (url,))
        if row:
            feed_id = int(row[0])
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                await tx.execute(f"UPDATE feeds SET {sets} WHERE id = ?", (*fields.values(), feed_id))  # nosec B608 # constant SQL fragments; values are bound
            return feed_id
        cols = ["url", "created", *fields]
        row = await tx.fetchone(
            f"INSERT INTO feeds ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"  # nosec B608 # constant SQL fragments; values are bound
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
        row = await tx.fetchone("SELECT id, active FROM subscriptions WHERE feed_id = ? AND target = ?", (feed_id, target))
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
                targets = [format_target(ChannelTarget(c)) for c in fc.channels] + \
                    [format_target(WebhookTarget(w)) for w in fc.webhooks]
                for target in targets:
                    await self._upsert_subscription(
                        tx, feed_id, target, guild_id=fc.guild_id, name=fc.name, source="config",
                        options=_options(fc), now=now,
                    )
            if default_interval is not None and old_default != default_interval:  # feeds added from Discord
                await self._reschedule(tx, "interval IS NULL AND source <> 'config'", (), default_interval)
            # feeds that no longer have any active subscription are not polled
            await tx.execute(
                "UPDATE feeds SET source = 'discord' WHERE source = 'config' AND "
                "NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = feeds.id AND s.source = 'config' AND s.active = 1)"
            )

    @staticmethod
    async def _reschedule(tx: Conn, where: str, args: Sequence[Any], interval: float) -> None:
        await tx.execute(
            f"UPDATE feeds SET next_fetch = last_fetch + ? WHERE {where}"  # nosec B608 # constant SQL fragments; values are bound
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
                tx, feed_id, target, guild_id=guild_id, name=name, source=source, options=_options(), now=now,
            )
            await tx.execute("UPDATE feeds SET next_fetch = ? WHERE id = ? AND paused = 0", (now, feed_id))
            if created and not fresh_feed and backfill > 0:
                # the feed is polled already: backfill this new subscription from what is stored
                rows = await tx.fetchall(
                    "SELECT id FROM entries WHERE feed_id = ? ORDER BY COALESCE(published, first_seen) DESC, id DESC LIMIT ?",
                    (feed_id, backfill),
                )
                ids = [r[0] for r in reversed(rows)]
                await tx.executemany(
                    "INSERT INTO deliveries (subscription_id, target, entry_id, kind, created) VALUES (?, ?, ?, 'entry', ?)"
                    " ON CONFLICT DO NOTHING",
                    [(sub_id, target, i, now) for i in ids],
                )
            elif created and fresh_feed:
                await tx.execute("UPDATE feeds SET backfill = ? WHERE id = ?", (backfill, feed_id))
            return feed_id

    async def remove_subscriptions(self, feed_id: int, guild_id: int) -> int:
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "DELETE FROM subscriptions WHERE feed_id = ? AND guild_id = ? AND source <> 'config'", (feed_id, guild_id)
            )
            return n

    async def set_paused(self, feed_id: int, paused: bool, reason: str | None = None, guild_id: int | None = None) -> int:
        async with self.db.transaction() as tx:
            if guild_id is None:
                n = await tx.execute(
                    "UPDATE feeds SET paused = ?, pause_reason = ?, error_count = CASE WHEN ? = 0 THEN 0 ELSE error_count END,"
                    " first_error_at = CASE WHEN ? = 0 THEN NULL ELSE first_error_at END WHERE id = ?",
                    (int(paused), reason if paused else None, int(paused), int(paused), feed_id),
                )
                if not paused:
                    await tx.execute("UPDATE subscriptions SET paused = 0, pause_reason = NULL WHERE feed_id = ?", (feed_id,))
            else:
                n = await tx.execute(
                    "UPDATE subscriptions SET paused = ?, pause_reason = ? WHERE feed_id = ? AND guild_id = ?",
                    (int(paused), reason if paused else None, feed_id, guild_id),
                )
                if not paused:
                    await tx.execute(
                        "UPDATE feeds SET paused = 0, pause_reason = NULL, error_count = 0, first_error_at = NULL WHERE id = ?",
                        (feed_id,),
                    )
            if not paused:
                await tx.execute("UPDATE feeds SET next_fetch = 0 WHERE id = ?", (feed_id,))
            return n

    async def _feed_infos(self, where: str, args: Sequence[Any], guild_id: int | None) -> list[FeedInfo]:
        sub_filter = "s.active = 1" + (" AND s.guild_id = ?" if guild_id is not None else "")
        sub_args: tuple[Any, ...] = (guild_id,) if guild_id is not None else ()
        rows = await self.db.fetchall(
            f"SELECT f.id, f.url, {_FEED_NAME}, f.title, f.source, f.paused, f.pause_reason, f.last_fetch, f.last_success,"  # nosec B608 # constant SQL fragments; values are bound
            " f.next_fetch, f.last_error, f.error_count,"
            " (SELECT COUNT(*) FROM entries e WHERE e.feed_id = f.id),"
            " (SELECT MIN(s.name) FROM subscriptions s WHERE s.feed_id = f.id AND " + sub_filter + "),"  # nosec B608 # constant SQL fragments; values are bound
            " (SELECT MAX(s.paused) FROM subscriptions s WHERE s.feed_id = f.id AND " + sub_filter + "),"  # nosec B608 # constant SQL fragments; values are bound
            " (SELECT MAX(s.pause_reason) FROM subscriptions s WHERE s.feed_id = f.id AND " + sub_filter + "),"  # nosec B608 # constant SQL fragments; values are bound
            " (SELECT MAX(CASE WHEN s.source = 'config' THEN 1 ELSE 0 END) FROM subscriptions s WHERE s.feed_id = f.id AND "
            + sub_filter + ")"  # nosec B608 # constant SQL fragments; values are bound
            f" FROM feeds f WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = f.id AND {sub_filter}) {where}"
            " ORDER BY LOWER(" + _FEED_NAME + "), f.id",
            (*sub_args, *sub_args, *sub_args, *sub_args, *sub_args, *args),
        )
        out = []
        for r in rows:
            (fid, url, name, title, source, paused, reason, lf, ls, nf, le, ec, n_entries, sub_name, sub_paused,
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
                f"SELECT s.feed_id, s.target FROM subscriptions s WHERE {self._in_list('s.feed_id')} AND {sub_filter}"  # nosec B608 # constant SQL fragments; values are bound
                " ORDER BY s.id",
                (self._list_param(ids), *sub_args),
            )
            counts = await self.db.fetchall(
                "SELECT s.feed_id, d.state, COUNT(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"  # nosec B608 # constant SQL fragments; values are bound
                f" WHERE {self._in_list('s.feed_id')} AND {sub_filter} AND d.state <> 'sent' GROUP BY s.feed_id, d.state",
                (self._list_param(ids), *sub_args),
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
        feeds = await self.list_feeds(guild_id)
        for f in feeds:
            if f.name.lower() == wanted or f.url.lower() == wanted or str(f.id) == wanted:
                return f
        return None

    async def set_subscription_guild(self, target: str, guild_id: int) -> None:
        await self.db.execute("UPDATE subscriptions SET guild_id = ? WHERE target = ? AND guild_id IS NULL", (guild_id, target))

    async def subscriptions(self, feed_id: int | None = None) -> list[Subscription]:
        where = "s.active = 1" + (" AND s.feed_id = ?" if feed_id is not None else "")
        rows = await self.db.fetchall(f"SELECT {_SUB_COLS} FROM subscriptions s WHERE {where} ORDER BY s.id",  # nosec B608 # constant SQL fragments; values are bound
                                      (feed_id,) if feed_id is not None else ())
        return [_subscription(r) for r in rows]

    async def pause_target(self, target: str, reason: str, now: float) -> list[Subscription]:
        """A target Discord refuses (deleted channel, lost permission): pause its subscriptions
        and fail its pending deliveries with the reason. Returns the subscriptions newly paused."""
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {_SUB_COLS} FROM subscriptions s WHERE s.target = ? AND s.paused = 0 AND s.active = 1", (target,)  # nosec B608 # constant SQL fragments; values are bound
            )
            await tx.execute(
                "UPDATE subscriptions SET paused = 1, pause_reason = ? WHERE target = ? AND paused = 0", (reason, target)
            )
            await tx.execute(
                "UPDATE deliveries SET state = 'failed', error = ?, lease_until = 0 WHERE target = ? AND state = 'pending'",
                (reason, target),
            )
            return [_subscription(r) for r in rows]

    # --- polling ----------------------------------------------------------------------------

    async def claim_due_feeds(self, now: float, limit: int, lease: float, due_by: float | None = None) -> list[FeedState]:
        """Leases up to ``limit`` unpaused feeds whose next fetch is at or before ``due_by`` (default: now)."""
        lock = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT f.id, f.url, f.name, f.title, f.etag, f.last_modified, f.body_hash, f.error_count, f.first_error_at,"  # nosec B608 # constant SQL fragments; values are bound
                " f.last_success, f.next_fetch, f.interval, f.backfill, f.max_per_poll FROM feeds f"
                " WHERE f.paused = 0 AND f.next_fetch <= ? AND f.lease_until <= ?"
                " AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = f.id AND s.active = 1 AND s.paused = 0)"
                f" ORDER BY f.next_fetch, f.id LIMIT ?{lock}",
                (now if due_by is None else min(due_by, 1e300), now, limit),
            )
            if not rows:
                return []
            ids = [r[0] for r in rows]
            await tx.execute(
                f"UPDATE feeds SET lease_until = ? WHERE {self._in_list('id')}", (now + lease, self._list_param(ids))  # nosec B608 # constant SQL fragments; values are bound
            )
        return [
            FeedState(
                id=r[0], url=r[1], name=r[2], title=r[3], etag=r[4], last_modified=r[5], body_hash=r[6],
                error_count=r[7], first_error_at=r[8], last_success=r[9], next_fetch=r[10], interval=r[11],
                backfill=r[12], max_per_poll=r[13], has_entries=r[9] is not None,
            )
            for r in rows
        ]

    async def next_due_time(self) -> float | None:
        row = await self.db.fetchone(
            "SELECT MIN(GREATEST_NF) FROM (SELECT CASE WHEN f.lease_until > f.next_fetch THEN f.lease_until ELSE f.next_fetch END"
            " AS GREATEST_NF FROM feeds f WHERE f.paused = 0 AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = f.id"
            " AND s.active = 1 AND s.paused = 0)) t"
        )
        return float(row[0]) if row and row[0] is not None else None

    async def known(self, feed_id: int, keys: Sequence[str], link_keys: Sequence[str]) -> tuple[set[str], set[str]]:
        """The keys and link keys of the feed's stored entries that have one of ``keys`` or
        ``link_keys`` (as parsed: they are looked up as :mod:`bot.storage.normalise` stores them)."""
        if not keys:
            return set(), set()
        key_forms = lookup_keys(keys)
        link_forms = lookup_keys(k for k in link_keys if k)
        rows = await self.db.fetchall(
            f"SELECT key, link_key FROM entries WHERE feed_id = ? AND ({self._in_list('key')} OR {self._in_list('link_key')})",  # nosec B608 # constant SQL fragments; values are bound
            (feed_id, self._list_param(list(key_forms)), self._list_param(list(link_forms))),
        )
        # the stored keys and link keys of every matching row, as the caller spelled those it asked for
        found_keys = {k for r in rows for k in key_forms.get(r[0], (r[0],))}
        found_links = {k for r in rows if r[1] for k in link_forms.get(r[1], (r[1],))}
        return found_keys, found_links

    async def apply_polls(self, outcomes: Sequence[PollOutcome]) -> list[PollResult]:
        """Writes a batch of polls in one transaction: feed state, new entries, and the
        pending deliveries of announced entries (the outbox), all or nothing."""
        results: list[PollResult] = []
        if not outcomes:
            return results
        async with self.db.transaction() as tx:
            for o in outcomes:
                results.append(await self._apply_poll(tx, o))
        return results

    async def _apply_poll(self, tx: Conn, o: PollOutcome) -> PollResult:
        o = normalise_outcome(o)  # nothing a feed sent can fail the statements below (or the batch)
        res = PollResult(o.feed_id)
        if o.status == "error":
            await tx.execute(
                "UPDATE feeds SET last_fetch = ?, last_error = ?, last_status = ?, error_count = error_count + 1,"
                " first_error_at = COALESCE(first_error_at, ?), next_fetch = ?, lease_until = 0,"
                " paused = CASE WHEN ? = 1 THEN 1 ELSE paused END,"
                " pause_reason = COALESCE(?, pause_reason) WHERE id = ?",
                (o.now, o.error, o.http_status, o.now, o.next_fetch, int(o.pause_reason is not None),
                 o.pause_reason, o.feed_id),
            )
            res.paused = o.pause_reason is not None
            return res
        await tx.execute(
            "UPDATE feeds SET last_fetch = ?, last_success = ?, last_error = NULL, last_status = ?, error_count = 0,"
            " first_error_at = NULL, next_fetch = ?, lease_until = 0, etag = COALESCE(?, etag),"
            " last_modified = COALESCE(?, last_modified), body_hash = COALESCE(?, body_hash),"
            " title = COALESCE(?, title), link = COALESCE(?, link), image = COALESCE(?, image) WHERE id = ?",
            (o.now, o.now, o.http_status, o.next_fetch, o.etag, o.last_modified, o.body_hash, o.title, o.link, o.image,
             o.feed_id),
        )
        if o.new_url:
            taken = await tx.fetchone("SELECT id FROM feeds WHERE url = ?", (o.new_url,))
            if taken is None:
                await tx.execute("UPDATE feeds SET url = ? WHERE id = ?", (o.new_url, o.feed_id))
        d = o.decision
        if d is None:
            return res
        for link_key, key in d.rekey:
            await tx.execute(
                "UPDATE entries SET key = ? WHERE feed_id = ? AND link_key = ? AND NOT EXISTS"
                " (SELECT 1 FROM entries x WHERE x.feed_id = ? AND x.key = ?)",
                (key, o.feed_id, link_key, o.feed_id, key),
            )
        if not d.new:
            return res
        ids = await tx.insert_many_returning(
            "INSERT INTO entries (feed_id, key, link_key, title, link, summary, author, published, updated, image,"
            " thumbnail, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (feed_id, key) DO NOTHING"
            " RETURNING id",
            [(o.feed_id, e.key, e.link_key, e.title, e.link, e.summary, e.author, e.published, e.updated, e.image,
              e.thumbnail, o.now)
             for e in d.new],
        )
        id_by_key = {e.key: i for e, i in zip(d.new, ids, strict=True) if i is not None}
        res.stored = len(id_by_key)
        announce = [id_by_key[e.key] for e in d.announce if e.key in id_by_key]
        digest = [id_by_key[e.key] for e in d.digest if e.key in id_by_key]
        if not announce and not digest:
            return res
        subs = await tx.fetchall(
            "SELECT id, target FROM subscriptions WHERE feed_id = ? AND active = 1 ORDER BY id", (o.feed_id,)
        )
        rows: list[tuple[Any, ...]] = []
        for sub_id, target in subs:
            if digest:
                rows.append((sub_id, target, None, "digest", json.dumps(digest), o.now))
            rows.extend((sub_id, target, eid, "entry", None, o.now) for eid in announce)
        await tx.executemany(
            "INSERT INTO deliveries (subscription_id, target, entry_id, kind, entry_ids, created) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            rows,
        )
        res.announced = len(rows)
        return res

    # --- the outbox ---------------------------------------------------------------------------

    async def due_targets(self, now: float) -> list[str]:
        """Targets whose oldest pending delivery may be sent now (in order: one head per target)."""
        rows = await self.db.fetchall(
            "SELECT d.target FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.state = 'pending' AND s.paused = 0 AND d.id = (SELECT MIN(x.id) FROM deliveries x"
            " JOIN subscriptions y ON y.id = x.subscription_id WHERE x.target = d.target AND x.state = 'pending' AND y.paused = 0)"
            " AND d.next_attempt <= ? AND d.lease_until <= ? ORDER BY d.id",
            (now, now),
        )
        return [r[0] for r in rows]

    async def claim_delivery(self, target: str, now: float, lease: float) -> ClaimedDelivery | None:
        # wait for (not skip) a head another process is claiming: skipping it would hand out the next one, out of order
        lock = " FOR UPDATE OF d" if self.db.dialect == "postgres" else ""
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT d.id, d.subscription_id, d.entry_id, d.kind, d.entry_ids, d.attempts, d.next_attempt, d.lease_until"  # nosec B608 # constant SQL fragments; values are bound
                " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
                " WHERE d.target = ? AND d.state = 'pending' AND s.paused = 0 ORDER BY d.id LIMIT 1" + lock,
                (target,),
            )
            if row is None or row[6] > now or row[7] > now:
                return None
            did, sub_id, entry_id, kind, entry_ids, attempts = row[:6]
            await tx.execute(
                "UPDATE deliveries SET lease_until = ?, attempts = attempts + 1 WHERE id = ?", (now + lease, did)
            )
            sub_row = await tx.fetchone(f"SELECT {_SUB_COLS} FROM subscriptions s WHERE s.id = ?", (sub_id,))  # nosec B608 # constant SQL fragments; values are bound
            assert sub_row is not None  # nosec B101 # narrows a type: RETURNING/foreign key guarantee the row
            sub = _subscription(sub_row)
            ids = json.loads(entry_ids) if kind == "digest" else [entry_id]
            feed = await tx.fetchone(f"SELECT f.title, {_FEED_NAME}, f.image FROM feeds f WHERE f.id = ?", (sub.feed_id,))  # nosec B608 # constant SQL fragments; values are bound
            feed_title = (feed[0] or feed[1]) if feed else None
            feed_name = feed[1] if feed else None
            feed_image = feed[2] if feed else None
            entry_rows = await tx.fetchall(
                f"SELECT {_ENTRY_COLS} FROM entries e WHERE {self._in_list('e.id')}", (self._list_param(ids),)  # nosec B608 # constant SQL fragments; values are bound
            )
        by_id = {r[0]: _entry(r, feed_title, feed_name, feed_image) for r in entry_rows}
        entries = [by_id[i] for i in ids if i in by_id]
        delivery = Delivery(id=did, subscription_id=sub_id, entry_ids=tuple(ids), kind=kind, attempts=attempts + 1)
        return ClaimedDelivery(delivery, sub, entries, feed_title)

    async def mark_delivered(self, delivery_id: int, message_id: str | None, now: float) -> None:
        await self.db.execute(
            "UPDATE deliveries SET state = 'sent', message_id = ?, sent_at = ?, lease_until = 0, error = NULL WHERE id = ?",
            (message_id, now, delivery_id),
        )

    async def mark_failed(self, delivery_id: int, error: str, now: float) -> None:
        await self.db.execute(
            "UPDATE deliveries SET state = 'failed', error = ?, sent_at = ?, lease_until = 0 WHERE id = ?",
            (error, now, delivery_id),
        )

    async def retry_later(self, delivery_id: int, at: float, error: str) -> None:
        await self.db.execute(
            "UPDATE deliveries SET next_attempt = ?, error = ?, lease_until = 0 WHERE id = ?", (at, error, delivery_id)
        )

    @property
    def exclusive(self) -> bool:
        """True when one Herald process owns the database (SQLite, embedded)."""
        return self.db.dialect == "sqlite"

    async def release_all_leases(self) -> None:
        """Hands back every lease. Only for a database that one Herald process uses (SQLite):
        the leases of a killed process then do not hold its feeds and deliveries back."""
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE deliveries SET lease_until = 0 WHERE state = 'pending' AND lease_until > 0")
            await tx.execute("UPDATE feeds SET lease_until = 0 WHERE lease_until > 0")

    async def release(self, delivery_id: int) -> None:
        await self.db.execute("UPDATE deliveries SET lease_until = 0, attempts = attempts - 1 WHERE id = ?", (delivery_id,))

    async def next_delivery_time(self) -> float | None:
        # only each target's head counts: the rows behind it wait for it, whatever their own times
        row = await self.db.fetchone(
            "SELECT MIN(CASE WHEN d.lease_until > d.next_attempt THEN d.lease_until ELSE d.next_attempt END)"
            " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE d.state = 'pending' AND s.paused = 0"
            " AND d.id = (SELECT MIN(x.id) FROM deliveries x JOIN subscriptions y ON y.id = x.subscription_id"
            " WHERE x.target = d.target AND x.state = 'pending' AND y.paused = 0)"
        )
        return float(row[0]) if row and row[0] is not None else None

    async def delivery_counts(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
        out = dict.fromkeys(get_args(DeliveryState), 0)
        out.update({r[0]: int(r[1]) for r in rows})
        row = await self.db.fetchone("SELECT MIN(created) FROM deliveries WHERE state = 'pending'")
        out["oldest_pending"] = int(time.time() - row[0]) if row and row[0] is not None else 0
        return out

    # --- small settings (command hash, ...) ------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return row[0] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)
        )

    # --- reading ------------------------------------------------------------------------------

    def _guild_scope(self, guild_id: int | None, feed_id: int | None) -> tuple[str, list[Any]]:
        conds, args = [], []
        if guild_id is not None:
            conds.append("e.feed_id IN (SELECT s.feed_id FROM subscriptions s WHERE s.guild_id = ? AND s.active = 1)")
            args.append(guild_id)
        if feed_id is not None:
            conds.append("e.feed_id = ?")
            args.append(feed_id)
        return (" AND ".join(conds) or "1 = 1"), args

    async def get_entries(self, entry_ids: Sequence[int]) -> list[StoredEntry]:
        rows = await self.db.fetchall(
            f"SELECT {_ENTRY_COLS}, f.title, {_FEED_NAME}, f.image FROM entries e JOIN feeds f ON f.id = e.feed_id"  # nosec B608 # constant SQL fragments; values are bound
            f" WHERE {self._in_list('e.id')}",
            (self._list_param(list(entry_ids)),),
        )
        n = ENTRY_COLUMNS
        by_id = {r[0]: _entry(r, r[n], r[n + 1], r[n + 2]) for r in rows}
        return [by_id[i] for i in entry_ids if i in by_id]

    async def recent(self, *, guild_id: int | None, feed_id: int | None, limit: int) -> list[StoredEntry]:
        where, args = self._guild_scope(guild_id, feed_id)
        rows = await self.db.fetchall(
            f"SELECT {_ENTRY_COLS}, f.title, {_FEED_NAME}, f.image FROM entries e JOIN feeds f ON f.id = e.feed_id"  # nosec B608 # constant SQL fragments; values are bound
            f" WHERE {where} ORDER BY COALESCE(e.published, e.first_seen) DESC, e.id DESC LIMIT ?",
            (*args, limit),
        )
        n = ENTRY_COLUMNS
        return [_entry(r, r[n], r[n + 1], r[n + 2]) for r in rows]

    async def search(
        self, query: str, *, guild_id: int | None = None, feed_id: int | None = None, since: float | None = None,
        limit: int = 5, offset: int = 0,
    ) -> SearchPage:
        raise NotImplementedError  # each dialect implements full-text search its own way
