"""Reading stored entries in SQL: :class:`bot.storage.base.Reader`, one implementation for both databases.

Full-text search is each backend's own :class:`bot.storage.base.SearchIndex`
(``Fts5Search`` in :mod:`bot.storage.sqlite`, ``PostgresSearch`` in :mod:`bot.storage.postgres`).
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import StoredEntry
from bot.storage.db import Database
from bot.storage.rows import ENTRY_COLS, ENTRY_COLUMNS, FEED_NAME, entry_from_row, entry_scope
from bot.storage.schema import Dialect


class SqlReader:
    """Implements :class:`bot.storage.base.Reader`."""

    def __init__(self, db: Database, dialect: Dialect) -> None:
        self.db = db
        self.dialect = dialect

    async def get_entries(self, entry_ids: Sequence[int]) -> list[StoredEntry]:
        rows = await self.db.fetchall(
            f"SELECT {ENTRY_COLS}, f.title, {FEED_NAME}, f.image FROM entries e JOIN feeds f ON f.id = e.feed_id"  # nosec B608 # constant SQL; values are bound
            f" WHERE {self.dialect.in_list('e.id')}",
            (self.dialect.list_param(list(entry_ids)),),
        )
        n = ENTRY_COLUMNS
        by_id = {r[0]: entry_from_row(r, r[n], r[n + 1], r[n + 2]) for r in rows}
        return [by_id[i] for i in entry_ids if i in by_id]

    async def recent(self, *, guild_id: int | None, feed_id: int | None, limit: int) -> list[StoredEntry]:
        where, args = entry_scope(guild_id, feed_id)
        rows = await self.db.fetchall(
            f"SELECT {ENTRY_COLS}, f.title, {FEED_NAME}, f.image FROM entries e JOIN feeds f ON f.id = e.feed_id"  # nosec B608 # constant SQL; values are bound
            f" WHERE {where} ORDER BY COALESCE(e.published, e.first_seen) DESC, e.id DESC LIMIT ?",
            (*args, limit),
        )
        n = ENTRY_COLUMNS
        return [entry_from_row(r, r[n], r[n + 1], r[n + 2]) for r in rows]
