"""Storage backends behind one interface (:class:`bot.storage.base.Storage`)."""

from __future__ import annotations

from bot.errors import StorageError
from bot.storage.base import Storage


def open_storage(url: str) -> Storage:
    """``sqlite:///path/to/herald.db``, ``sqlite:///:memory:`` or ``postgresql://...``.

    The returned storage still needs ``await storage.open()``.
    """
    if url.startswith("sqlite:///"):
        from bot.storage.sqlite import SQLiteStorage

        return SQLiteStorage(url[len("sqlite:///"):] or ":memory:")
    if url.startswith(("postgres://", "postgresql://")):
        try:
            from bot.storage.postgres import PostgresStorage
        except ImportError as exc:
            raise StorageError(
                f"PostgreSQL storage needs the asyncpg package: pip install 'herald-bot[postgres]' ({exc})"
            ) from None
        return PostgresStorage(url)
    raise StorageError(f"storage.url {url!r}: expected sqlite:///PATH or postgresql://...")
