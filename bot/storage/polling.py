"""Polling in SQL: :class:`bot.storage.base.PollStore`, one implementation for both databases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.models import FeedState, PollOutcome, PollResult
from bot.storage.db import Conn, Database
from bot.storage.normalise import lookup_keys, normalise_outcome
from bot.storage.schema import Dialect


class SqlPolling:
    """Implements :class:`bot.storage.base.PollStore`."""

    def __init__(self, db: Database, dialect: Dialect) -> None:
        self.db = db
        self.dialect = dialect

    async def claim_due_feeds(
        self, now: float, limit: int, lease: float, due_by: float | None = None,
    ) -> list[FeedState]:
        """Leases up to ``limit`` unpaused feeds whose next fetch is at or before ``due_by`` (default: now)."""
        lock = self.dialect.claim_lock
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT f.id, f.url, f.name, f.title, f.etag, f.last_modified, f.body_hash,"  # nosec B608 # constant SQL; values are bound
                " f.error_count, f.first_error_at,"
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
                f"UPDATE feeds SET lease_until = ? WHERE {self.dialect.in_list('id')}",  # nosec B608 # constant SQL; values are bound
                (now + lease, self.dialect.list_param(ids)),
            )
        return [
            FeedState(
                id=r[0], url=r[1], name=r[2], title=r[3], etag=r[4], last_modified=r[5], body_hash=r[6],
                error_count=r[7], first_error_at=r[8], last_success=r[9], next_fetch=r[10], interval=r[11],
                backfill=r[12], max_per_poll=r[13],
            )
            for r in rows
        ]

    async def next_due_time(self) -> float | None:
        row = await self.db.fetchone(
            "SELECT MIN(GREATEST_NF) FROM (SELECT"
            " CASE WHEN f.lease_until > f.next_fetch THEN f.lease_until ELSE f.next_fetch END AS GREATEST_NF"
            " FROM feeds f WHERE f.paused = 0 AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.feed_id = f.id"
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
            "SELECT key, link_key FROM entries WHERE feed_id = ?"  # nosec B608 # constant SQL; values are bound
            f" AND ({self.dialect.in_list('key')} OR {self.dialect.in_list('link_key')})",
            (feed_id, self.dialect.list_param(list(key_forms)), self.dialect.list_param(list(link_forms))),
        )
        # the stored keys and link keys of every matching row, as the caller spelled those it asked for
        found_keys = {k for r in rows for k in key_forms.get(r[0], (r[0],))}
        found_links = {k for r in rows if r[1] for k in link_forms.get(r[1], (r[1],))}
        return found_keys, found_links

    async def apply_polls(self, outcomes: Sequence[PollOutcome]) -> list[PollResult]:
        """Writes a batch of polls in one transaction: feed state, new entries, and the
        pending deliveries of announced entries (the outbox), all or nothing."""
        if not outcomes:
            return []

        async def body(tx: Conn) -> list[PollResult]:
            return [await apply_poll(tx, o) for o in outcomes]

        # one trip to SQLite's database thread for the whole batch: body awaits only tx
        return await self.db.run_transaction(body)


async def apply_poll(tx: Conn, o: PollOutcome) -> PollResult:
    """Writes one poll's outcome inside the batch's transaction.

    **Await nothing here but ``tx``'s methods** — no other coroutine, lock, sleep or I/O.
    On SQLite this runs inside :meth:`Database.run_transaction`, driven to its end on the
    database thread without an event loop, where any other await raises ``RuntimeError``
    (PostgreSQL would not notice). ``tests/test_storage_contract.py`` checks the rule
    (``test_apply_poll_awaits_only_the_connection``).
    """
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
