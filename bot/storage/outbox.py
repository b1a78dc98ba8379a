"""The delivery outbox in SQL: :class:`bot.storage.base.Outbox`, one implementation for both databases.

Rows are written with the entries they announce (:func:`bot.storage.polling.apply_poll`); here
they are claimed head first per target, under a lease, and marked sent, failed or retried.
"""

from __future__ import annotations

import json
import time

from bot.models import Delivery
from bot.storage.base import ClaimedDelivery
from bot.storage.db import Database
from bot.storage.rows import ENTRY_COLS, FEED_NAME, SUB_COLS, entry_from_row, subscription_from_row
from bot.storage.schema import Dialect


class SqlOutbox:
    """Implements :class:`bot.storage.base.Outbox`."""

    def __init__(self, db: Database, dialect: Dialect) -> None:
        self.db = db
        self.dialect = dialect

    async def due_targets(self, now: float) -> list[str]:
        """Targets whose oldest pending delivery may be sent now (in order: one head per target)."""
        rows = await self.db.fetchall(
            "SELECT d.target FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.state = 'pending' AND s.paused = 0 AND d.id = (SELECT MIN(x.id) FROM deliveries x"
            " JOIN subscriptions y ON y.id = x.subscription_id"
            " WHERE x.target = d.target AND x.state = 'pending' AND y.paused = 0)"
            " AND d.next_attempt <= ? AND d.lease_until <= ? ORDER BY d.id",
            (now, now),
        )
        return [r[0] for r in rows]

    async def claim_delivery(self, target: str, now: float, lease: float) -> ClaimedDelivery | None:
        # wait for (not skip) a head another process is claiming: skipping it would hand out the next one, out of order
        lock = self.dialect.head_lock
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT d.id, d.subscription_id, d.entry_id, d.kind, d.entry_ids, d.attempts,"  # nosec B608 # constant SQL; values are bound
                " d.next_attempt, d.lease_until"
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
            sub_row = await tx.fetchone(f"SELECT {SUB_COLS} FROM subscriptions s WHERE s.id = ?", (sub_id,))  # nosec B608 # constant SQL; values are bound
            assert sub_row is not None  # nosec B101 # narrows a type: RETURNING/foreign key guarantee the row
            sub = subscription_from_row(sub_row)
            ids = json.loads(entry_ids) if kind == "digest" else [entry_id]
            feed = await tx.fetchone(
                f"SELECT f.title, {FEED_NAME}, f.image FROM feeds f WHERE f.id = ?", (sub.feed_id,)  # nosec B608 # constant SQL; values are bound
            )
            feed_title = (feed[0] or feed[1]) if feed else None
            feed_name = feed[1] if feed else None
            feed_image = feed[2] if feed else None
            entry_rows = await tx.fetchall(
                f"SELECT {ENTRY_COLS} FROM entries e WHERE {self.dialect.in_list('e.id')}",  # nosec B608 # constant SQL; values are bound
                (self.dialect.list_param(ids),),
            )
        by_id = {r[0]: entry_from_row(r, feed_title, feed_name, feed_image) for r in entry_rows}
        entries = [by_id[i] for i in ids if i in by_id]
        delivery = Delivery(id=did, subscription_id=sub_id, entry_ids=tuple(ids), kind=kind, attempts=attempts + 1)
        return ClaimedDelivery(delivery, sub, entries, feed_title)

    async def mark_delivered(self, delivery_id: int, message_id: str | None, now: float) -> None:
        await self.db.execute(
            "UPDATE deliveries SET state = 'sent', message_id = ?, sent_at = ?, lease_until = 0, error = NULL"
            " WHERE id = ?",
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
        return self.dialect.exclusive

    async def release_all_leases(self) -> None:
        """Hands back every lease. Only for a database that one Herald process uses (SQLite):
        the leases of a killed process then do not hold its feeds and deliveries back."""
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE deliveries SET lease_until = 0 WHERE state = 'pending' AND lease_until > 0")
            await tx.execute("UPDATE feeds SET lease_until = 0 WHERE lease_until > 0")

    async def release(self, delivery_id: int) -> None:
        await self.db.execute(
            "UPDATE deliveries SET lease_until = 0, attempts = attempts - 1 WHERE id = ?", (delivery_id,)
        )

    async def next_delivery_time(self) -> float | None:
        # only each target's head counts: the rows behind it wait for it, whatever their own times
        row = await self.db.fetchone(
            "SELECT MIN(CASE WHEN d.lease_until > d.next_attempt THEN d.lease_until ELSE d.next_attempt END)"
            " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.state = 'pending' AND s.paused = 0"
            " AND d.id = (SELECT MIN(x.id) FROM deliveries x JOIN subscriptions y ON y.id = x.subscription_id"
            " WHERE x.target = d.target AND x.state = 'pending' AND y.paused = 0)"
        )
        return float(row[0]) if row and row[0] is not None else None

    async def delivery_counts(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
        out = {"pending": 0, "sent": 0, "failed": 0}
        out.update({r[0]: int(r[1]) for r in rows})
        row = await self.db.fetchone("SELECT MIN(created) FROM deliveries WHERE state = 'pending'")
        out["oldest_pending"] = int(time.time() - row[0]) if row and row[0] is not None else 0
        return out
