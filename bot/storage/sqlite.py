"""SQLite storage: the embedded default. One connection, in WAL mode, on its own thread."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from bot.errors import StorageError
from bot.storage.base import DataRejected, SearchHit, SearchPage
from bot.storage.db import Conn, Row
from bot.storage.reading import SqlReader
from bot.storage.rows import entry_scope
from bot.storage.schema import SQLITE, SQLITE_LOWER
from bot.storage.search import fts5_query
from bot.storage.sql import SqlStorage

T = TypeVar("T")

MIGRATIONS: list[str] = SQLITE.migrations()  # the schema (bot.storage.schema) in SQLite's spelling

_TITLE_WEIGHT = 8.0
# errors about a value, not the database (as PostgreSQL's DataError and friends): a constraint,
# a string or blob too big, text the driver cannot encode (a lone surrogate)
_REJECTED_DATA = (sqlite3.IntegrityError, sqlite3.DataError, UnicodeEncodeError)


class SQLiteDB:
    """The async adapter: every call runs on one dedicated thread that owns the connection."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._tx_owner: asyncio.Task[Any] | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None, "database is closed"  # nosec B101 # narrows a type: internal invariant
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.exists():
                raise StorageError(f"cannot open database {self.path}: folder {parent} does not exist")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            try:
                # checked before anything is written: switching a damaged file to WAL would change it first
                integrity = conn.execute("PRAGMA quick_check").fetchone()
                if integrity and integrity[0] != "ok":
                    raise StorageError(
                        f"database {self.path} is corrupted ({integrity[0]}); restore a backup or move it away"
                    )
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA busy_timeout = 30000")
                conn.execute("PRAGMA cache_size = -32000")
                conn.create_function(SQLITE_LOWER, 1, _lower, deterministic=True)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open database {self.path}: {exc}") from None

    def _migrate(self) -> None:
        assert self._conn is not None  # nosec B101 # narrows a type: internal invariant
        if self._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return
        # the version is read again under the write lock: two processes starting on a new file do not race
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StorageError(
                    f"database {self.path} has schema version {version}, newer than this Herald knows "
                    f"({len(MIGRATIONS)}); upgrade Herald"
                )
            for i in range(version, len(MIGRATIONS)):
                for stmt in _split_sql(MIGRATIONS[i]):
                    self._conn.execute(stmt)
                self._conn.execute(f"PRAGMA user_version = {i + 1}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="herald-sqlite")
            try:
                await self._run(self._connect)
            except BaseException:
                self._executor.shutdown(wait=False)
                self._executor = None
                raise

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._conn is not None:
            conn = self._conn
            self._conn = None

            def _close() -> None:
                try:
                    conn.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                conn.close()

            await self._run(_close)
        self._executor.shutdown(wait=True)
        self._executor = None

    # --- statement helpers (run on the database thread) ---

    def _wrap(self, fn: Callable[[], T]) -> T:
        if self._conn is None:
            raise StorageError("database is closed")
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            raise StorageError(f"database error: {exc}") from exc
        except _REJECTED_DATA as exc:
            raise DataRejected(f"database error: {type(exc).__name__}: {exc}") from exc

    async def _guarded(self, fn: Callable[[], T]) -> T:
        if self._tx_owner is not None and self._tx_owner is asyncio.current_task():
            return await self._run(self._wrap, fn)
        async with self._lock:
            return await self._run(self._wrap, fn)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await self._guarded(lambda: self._conn.execute(sql, args).fetchall())  # type: ignore[union-attr]

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        return await self._guarded(lambda: self._conn.execute(sql, args).fetchone())  # type: ignore[union-attr]

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self._guarded(lambda: self._conn.execute(sql, args).rowcount)  # type: ignore[union-attr]

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._guarded(lambda: self._conn.executemany(sql, rows))  # type: ignore[union-attr]

    async def insert_many_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Any]:
        def run() -> list[Any]:
            out = []
            for r in rows:
                got = self._conn.execute(sql, r).fetchone()  # type: ignore[union-attr]
                out.append(got[0] if got else None)
            return out

        return await self._guarded(run)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteDB]:
        async with self._lock:
            self._tx_owner = asyncio.current_task()
            try:
                await self._run(self._wrap, lambda: self._conn.execute("BEGIN IMMEDIATE"))  # type: ignore[union-attr]
                try:
                    yield self
                except BaseException:
                    await asyncio.shield(self._run(self._rollback))
                    raise
                else:
                    await self._run(self._wrap, lambda: self._conn.execute("COMMIT"))  # type: ignore[union-attr]
            finally:
                self._tx_owner = None

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    async def run_transaction(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        """Runs ``body(conn)`` as one transaction in a single trip to the database thread.

        ``body`` is written against the ordinary async :class:`Conn` interface, but the
        connection it receives executes each statement at once and never suspends, so
        the coroutine is driven to its end on the database thread. A batch of many
        small statements (one poll outcome each) then costs one thread hop instead of
        one per statement. All or nothing, like :meth:`transaction`.
        """
        async with self._lock:
            return await self._run(self._wrap, lambda: self._transaction_on_thread(body))

    def _transaction_on_thread(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        conn = self._conn
        assert conn is not None  # nosec B101 # narrows a type: internal invariant
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = _drive(body(_ThreadConn(conn)))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result


class _ThreadConn:
    """A :class:`Conn` for code already on the database thread: each call runs at once."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, args).fetchone()
        return row

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, args).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.executemany(sql, rows)

    async def insert_many_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Any]:
        out = []
        for r in rows:
            got = self._conn.execute(sql, r).fetchone()
            out.append(got[0] if got else None)
        return out


def _drive(coro: Awaitable[T]) -> T:
    """Runs a coroutine that never suspends to its end, synchronously."""
    it = coro.__await__()
    try:
        it.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    it.close()
    raise RuntimeError("a database-thread transaction tried to wait for something else")


def _split_sql(script: str) -> list[str]:
    """Splits a migration into statements, keeping trigger bodies whole."""
    out, buf, depth = [], [], 0
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        buf.append(line)
        if re.search(r"\bBEGIN\s*$", stripped, re.I):
            depth += 1
        if re.match(r"^END\s*;\s*$", stripped, re.I):
            depth -= 1
        if stripped.endswith(";") and depth == 0:
            out.append("\n".join(buf).rstrip().rstrip(";"))
            buf = []
    if buf and "".join(buf).strip():
        out.append("\n".join(buf))
    return out


def _lower(text: str | None) -> str | None:
    """Lower-cases text as Python does (SQLite's LOWER folds ASCII only); anything else as it is."""
    return text.lower() if isinstance(text, str) else text  # NULL stays NULL


class Fts5Search:
    """SQLite's :class:`bot.storage.base.SearchIndex`: FTS5, ranked by bm25, the title weighing more."""

    def __init__(self, db: SQLiteDB, reader: SqlReader) -> None:
        self.db = db
        self.reader = reader

    async def search(
        self, query: str, *, guild_id: int | None = None, feed_id: int | None = None, since: float | None = None,
        limit: int = 5, offset: int = 0,
    ) -> SearchPage:
        match = fts5_query(query)
        if match is None:
            return SearchPage(0, [])
        where, args = entry_scope(guild_id, feed_id)
        if since is not None:
            where += " AND COALESCE(e.published, e.first_seen) >= ?"
            args.append(since)
        # One pass ranks every match and counts them (bm25 cannot sit in a window query, hence the CTE);
        # snippets are made afterwards for the page's rows only.
        rows = await self.db.fetchall(
            f"WITH m AS MATERIALIZED (SELECT rowid AS id, bm25(entries_fts, {_TITLE_WEIGHT}, 1.0) AS r"  # nosec B608 # constant SQL; values are bound
            " FROM entries_fts WHERE entries_fts MATCH ?)"
            f" SELECT e.id, m.r, COUNT(*) OVER () FROM m JOIN entries e ON e.id = m.id WHERE {where}"
            " ORDER BY m.r, COALESCE(e.published, e.first_seen) DESC, e.id DESC LIMIT ? OFFSET ?",
            (match, *args, limit, offset),
        )
        if not rows:
            if offset <= 0:
                return SearchPage(0, [])
            count = await self.db.fetchone(
                "SELECT COUNT(*) FROM entries_fts JOIN entries e ON e.id = entries_fts.rowid"  # nosec B608 # constant SQL; values are bound
                f" WHERE entries_fts MATCH ? AND {where}", (match, *args),
            )
            return SearchPage(int(count[0]) if count else 0, [])
        total = int(rows[0][2])
        ids = [r[0] for r in rows]
        snippets = {
            r[0]: r[1] for r in await self.db.fetchall(
                "SELECT rowid, snippet(entries_fts, 1, '**', '**', '…', 24) FROM entries_fts"  # nosec B608 # constant SQL; values are bound
                f" WHERE entries_fts MATCH ? AND {SQLITE.in_list('rowid')}", (match, SQLITE.list_param(ids)),
            )
        }
        entries = {e.id: e for e in await self.reader.get_entries(ids)}
        hits = [SearchHit(entry=entries[i], feed_name=entries[i].feed_name or "", snippet=snippets.get(i) or "",
                          rank=float(r)) for i, r, _ in rows if i in entries]
        return SearchPage(total, hits)


class SQLiteStorage(SqlStorage):
    """``SQLiteStorage("path/to/herald.db")`` or ``":memory:"``."""

    db: SQLiteDB

    def __init__(self, path: str) -> None:
        db = SQLiteDB(path)
        super().__init__(db, SQLITE, Fts5Search(db, SqlReader(db, SQLITE)))
