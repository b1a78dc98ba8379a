"""PostgreSQL storage: for several Herald processes sharing one database.

The storage logic is :class:`bot.storage.sql.SqlStorage`, shared with SQLite, and the tables
are :mod:`bot.storage.schema`'s; this module adds the asyncpg adapter, the migration runner
and full-text search.

Search uses a text search configuration ``herald_english``: a copy of
``english`` (Snowball stemming, so "orchestrating" finds "orchestration") that
first runs words through the ``unaccent`` dictionary when the ``unaccent``
extension exists or can be created (so "resume" finds "résumé"). Without the
extension, the immutable function ``herald_fold`` strips combining marks after
Unicode NFD normalisation instead (UTF-8 databases), applied alike to the
indexed text and to the query; which one a database uses is recorded in ``kv``
under ``search_fold`` when its schema is created.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bot.errors import StorageError
from bot.storage.base import DataRejected, SearchHit, SearchPage
from bot.storage.db import Conn, Row
from bot.storage.rows import ENTRY_COLS, ENTRY_COLUMNS, FEED_NAME, entry_from_row, entry_scope
from bot.storage.schema import POSTGRES
from bot.storage.search import query_terms
from bot.storage.sql import SqlStorage

T = TypeVar("T")
PgConnection = asyncpg.Connection | PoolConnectionProxy  # a connection of its own, or one lent by the pool

TS_CONFIG = "herald_english"
# ts_rank_cd weights for {D, C, B, A}: the title (A) counts eight times the summary (B).
RANK_WEIGHTS = "{0, 0, 0.125, 1}"
# a short snippet of the summary: up to two fragments around the matches, or its first words
HEADLINE_OPTIONS = ('StartSel=**, StopSel=**, MaxWords=14, MinWords=6, ShortWord=2, MaxFragments=2,'
                    ' FragmentDelimiter=" … "')
# one lock for every Herald process migrating any schema of the database (extensions are database-wide)
_MIGRATION_LOCK = 0x4865_7261_6C64  # "Herald"

# --- placeholders -------------------------------------------------------------------------------

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?", re.S)


@functools.lru_cache(maxsize=1024)
def number_placeholders(sql: str) -> str:
    """``?`` placeholders to ``$1, $2, ...``, leaving string literals and quoted names alone."""
    n = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal n
        if m.group(0) != "?":
            return m.group(0)
        n += 1
        return f"${n}"

    return _TOKEN.sub(sub, sql)


def _rowcount(status: str | None) -> int:
    """The row count of a command status such as ``UPDATE 3`` or ``INSERT 0 1``."""
    if not status:
        return 0
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


# --- errors and secrets -------------------------------------------------------------------------


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in ("password", "passfile") for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password(dsn: str) -> str | None:
    try:
        parts = urlsplit(dsn)
        pwd = parts.password
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k.lower() == "password":
                pwd = v
        return pwd or None
    except ValueError:
        return None


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- the adapter --------------------------------------------------------------------------------

# errors about a value, not the database: SQLSTATE classes 22 (data exception: NUL, encoding, ...),
# 23 (integrity constraint) and 54 (program limit: index row size, tsvector size); asyncpg also
# raises DataError itself for an argument it cannot encode (a lone surrogate)
_REJECTED_DATA = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError)


class PostgresConn:
    """The adapter's statements, bound to one pool or to one connection inside a transaction."""

    dialect = "postgres"

    def __init__(self, db: PostgresDB, conn: PgConnection | None = None) -> None:
        self._db = db
        self._conn = conn

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PgConnection]:
        if self._conn is not None:
            yield self._conn
        else:
            async with self._db._acquire() as conn:
                yield conn

    async def _call(self, fn: Callable[[PgConnection], Awaitable[T]]) -> T:
        async with self._db._errors(), self._connection() as conn:
            return await fn(conn)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        q = number_placeholders(sql)
        rows = await self._call(lambda c: c.fetch(q, *args))
        return [tuple(r) for r in rows]

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        q = number_placeholders(sql)
        row = await self._call(lambda c: c.fetchrow(q, *args))
        return tuple(row) if row is not None else None

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        q = number_placeholders(sql)
        return _rowcount(await self._call(lambda c: c.execute(q, *args)))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            q = number_placeholders(sql)
            await self._call(lambda c: c.executemany(q, rows))

    async def insert_many_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Any]:
        if not rows:
            return []
        q = number_placeholders(sql)

        async def run(conn: PgConnection) -> list[Any]:
            stmt = await conn.prepare(q)
            out = []
            for r in rows:
                got = await stmt.fetchrow(*r)
                out.append(got[0] if got is not None else None)
            return out

        return await self._call(run)


class PostgresDB(PostgresConn):
    """An asyncpg pool behind the :class:`bot.storage.db.Database` protocol.

    ``schema`` (created when missing) becomes the connections' ``search_path``;
    ``server_settings`` are passed to every connection as they are.
    """

    def __init__(
        self, dsn: str, *, schema: str | None = None, server_settings: Mapping[str, str] | None = None,
        min_size: int = 1, max_size: int = 10, timeout: float = 10.0, unaccent: bool = True,
    ) -> None:
        super().__init__(self)
        if dsn.startswith("postgres://"):
            dsn = "postgresql://" + dsn[len("postgres://"):]
        self.dsn = dsn
        self.schema = schema
        self.server_settings = dict(server_settings or {})
        self.server_settings.setdefault("application_name", "herald")
        if schema is not None:
            self.server_settings["search_path"] = _quote_ident(schema)
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self.try_unaccent = unaccent
        self.search_fold: str | None = None  # "unaccent", "nfd" or "none", read when opened
        self._pool: asyncpg.Pool | None = None

    # --- errors ---

    def _describe(self, exc: BaseException) -> str:
        msg = str(exc) or type(exc).__name__
        pwd = _password(self.dsn)
        if pwd:
            msg = msg.replace(pwd, "***")
        return msg

    @asynccontextmanager
    async def _errors(self, what: str = "database error") -> AsyncIterator[None]:
        """asyncpg's and the network's errors as :class:`StorageError`, without the password."""
        try:
            yield
        except StorageError:
            raise
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {redact_dsn(self.dsn)}: authentication failed ({self._describe(exc)})"
            ) from None
        except _REJECTED_DATA as exc:
            raise DataRejected(f"{what}: {self._describe(exc)}") from exc
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"{what}: {self._describe(exc)}") from exc

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[PgConnection]:
        if self._pool is None:
            raise StorageError("database is closed")
        async with self._pool.acquire() as conn:
            yield conn

    # --- lifecycle ---

    async def open(self) -> None:
        if self._pool is not None:
            return
        where = redact_dsn(self.dsn)
        try:
            async with self._errors(f"cannot connect to PostgreSQL at {where}"):
                pool = await asyncpg.create_pool(
                    self.dsn, min_size=self.min_size, max_size=self.max_size, timeout=self.timeout,
                    command_timeout=60.0, server_settings=self.server_settings,
                )
        except ValueError as exc:  # a malformed DSN
            raise StorageError(f"invalid PostgreSQL URL {where}: {self._describe(exc)}") from None
        assert pool is not None  # nosec B101 # narrows a type: create_pool returned
        self._pool = pool
        try:
            async with self._errors(f"cannot migrate PostgreSQL database {where}"), pool.acquire() as conn:
                self.search_fold = await _migrate(conn, self)
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10.0)
            except (asyncio.TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConn]:
        async with self._errors(), self._acquire() as conn, conn.transaction():
            yield PostgresConn(self, conn)

    async def run_transaction(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        """``body(conn)`` as one transaction (see :meth:`bot.storage.db.Database.run_transaction`)."""
        async with self.transaction() as tx:
            return await body(tx)


# --- the schema ---------------------------------------------------------------------------------

# herald_fold without the unaccent extension: decompose, then drop the combining marks
_FOLD_NFD = ("SELECT regexp_replace(normalize($1, NFD),"
             " '[\\u0300-\\u036f\\u1ab0-\\u1aff\\u1dc0-\\u1dff\\u20d0-\\u20ff\\ufe20-\\ufe2f]', '', 'g')")


async def _unaccent_schema(conn: PgConnection) -> str | None:
    name = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'unaccent'"
    )
    return None if name is None else str(name)


async def _try(conn: PgConnection, sql: str) -> bool:
    """Runs ``sql`` in a savepoint: False (and nothing changed) when the server refuses it."""
    try:
        async with conn.transaction():
            await conn.execute(sql)
        return True
    except asyncpg.PostgresError:
        return False


async def _text_search(conn: PgConnection, try_unaccent: bool) -> str:
    """Creates ``herald_fold`` and the ``herald_english`` configuration; returns how accents are folded."""
    ext_schema = None
    if try_unaccent:
        ext_schema = await _unaccent_schema(conn)
        if ext_schema is None:
            # in public so that every schema sees it; else wherever the search_path says
            for sql in ("CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public",
                        "CREATE EXTENSION IF NOT EXISTS unaccent"):
                if await _try(conn, sql):
                    break
            ext_schema = await _unaccent_schema(conn)
    await conn.execute("CREATE TEXT SEARCH CONFIGURATION herald_english (COPY = pg_catalog.english)")
    fold = "none"
    body = "SELECT $1"
    if ext_schema is not None:
        await conn.execute(
            "ALTER TEXT SEARCH CONFIGURATION herald_english ALTER MAPPING FOR hword, hword_part, word"
            f" WITH {_quote_ident(ext_schema)}.unaccent, pg_catalog.english_stem"
        )
        fold = "unaccent"
    elif await _try(conn, _FOLD_NFD.replace("$1", "'é'")):
        body, fold = _FOLD_NFD, "nfd"
    await conn.execute(
        "CREATE FUNCTION herald_fold(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE"
        f" AS $herald$ {body} $herald$"
    )
    return fold


_SCHEMA = POSTGRES.migrations()  # the schema (bot.storage.schema) in PostgreSQL's spelling


async def _migration_1(conn: PgConnection, db: PostgresDB) -> None:
    fold = await _text_search(conn, db.try_unaccent)  # the search vector's functions, before the tables
    await conn.execute(_SCHEMA[0])
    await conn.execute("INSERT INTO kv (key, value) VALUES ('search_fold', $1)", fold)


def _plain(i: int) -> Callable[[PgConnection, PostgresDB], Awaitable[None]]:
    async def migrate(conn: PgConnection, db: PostgresDB) -> None:
        await conn.execute(_SCHEMA[i])

    return migrate


# one step per migration of bot.storage.schema; only the first needs more than its SQL
MIGRATIONS: list[Callable[[PgConnection, PostgresDB], Awaitable[None]]] = [
    _migration_1, *(_plain(i) for i in range(1, len(_SCHEMA))),
]


async def _migrate(conn: PgConnection, db: PostgresDB) -> str | None:
    """Brings the schema up to date in one transaction, under an advisory lock so that
    several Herald processes starting at once migrate it once. Returns the accent folding."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        missing = db.schema is not None and not await conn.fetchval(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1", db.schema
        )
        if missing and db.schema is not None:
            await conn.execute(f"CREATE SCHEMA {_quote_ident(db.schema)}")
        schema = await conn.fetchval("SELECT current_schema()")
        if schema is None:
            path = await conn.fetchval("SHOW search_path")
            raise StorageError(f"no schema to create Herald's tables in: search_path is {path!r}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS herald_schema (version INTEGER NOT NULL, applied DOUBLE PRECISION NOT NULL)"
        )
        version = await conn.fetchval("SELECT MAX(version) FROM herald_schema") or 0
        if version > len(MIGRATIONS):
            raise StorageError(
                f"PostgreSQL schema {schema!r} has version {version}, newer than this Herald knows ({len(MIGRATIONS)});"
                " upgrade Herald"
            )
        for i in range(version, len(MIGRATIONS)):
            await MIGRATIONS[i](conn, db)
            await conn.execute("INSERT INTO herald_schema (version, applied) VALUES ($1, $2)", i + 1, time.time())
        fold = await conn.fetchval("SELECT value FROM kv WHERE key = 'search_fold'")
        return None if fold is None else str(fold)


# --- the storage --------------------------------------------------------------------------------


class PostgresSearch:
    """PostgreSQL's :class:`bot.storage.base.SearchIndex`: the generated ``search_vector``, ranked by ts_rank_cd."""

    def __init__(self, db: PostgresDB) -> None:
        self.db = db

    async def search(
        self, query: str, *, guild_id: int | None = None, feed_id: int | None = None, since: float | None = None,
        limit: int = 5, offset: int = 0,
    ) -> SearchPage:
        terms = query_terms(query)
        if not terms:
            return SearchPage(0, [])
        # every term is text for plainto_tsquery / phraseto_tsquery: nothing typed becomes syntax
        tsquery = " && ".join(
            f"{'phraseto_tsquery' if ' ' in t else 'plainto_tsquery'}('{TS_CONFIG}'::regconfig, herald_fold(?))"
            for t in terms
        )
        where, args = entry_scope(guild_id, feed_id)
        if since is not None:
            where += " AND COALESCE(e.published, e.first_seen) >= ?"
            args.append(since)
        base = f"FROM entries e, (SELECT {tsquery} AS query) q WHERE e.search_vector @@ q.query AND {where}"
        total_row = await self.db.fetchone(f"SELECT COUNT(*) {base}", (*terms, *args))
        total = int(total_row[0]) if total_row else 0
        if total == 0:
            return SearchPage(0, [])
        rows = await self.db.fetchall(
            "WITH hits AS ("  # nosec B608 # constant SQL; values are bound
            f" SELECT e.id, ts_rank_cd('{RANK_WEIGHTS}'::float4[], e.search_vector, q.query) AS rank, q.query {base}"
            " ORDER BY rank DESC, COALESCE(e.published, e.first_seen) DESC, e.id DESC LIMIT ? OFFSET ?)"
            f" SELECT {ENTRY_COLS}, f.title, {FEED_NAME}, h.rank,"
            f" ts_headline('{TS_CONFIG}'::regconfig, herald_fold(e.summary), h.query, '{HEADLINE_OPTIONS}')"
            " FROM hits h JOIN entries e ON e.id = h.id JOIN feeds f ON f.id = e.feed_id"
            " ORDER BY h.rank DESC, COALESCE(e.published, e.first_seen) DESC, e.id DESC",
            (*terms, *args, limit, offset),
        )
        n = ENTRY_COLUMNS
        hits = [SearchHit(entry=entry_from_row(r, r[n], r[n + 1]), feed_name=r[n + 1], snippet=r[n + 3] or "",
                          rank=float(r[n + 2]))
                for r in rows]
        return SearchPage(total, hits)


class PostgresStorage(SqlStorage):
    """``PostgresStorage("postgresql://user:pass@host/db")``; ``schema`` isolates one Herald's tables."""

    db: PostgresDB

    def __init__(
        self, dsn: str, *, schema: str | None = None, server_settings: Mapping[str, str] | None = None,
        min_size: int = 1, max_size: int = 10, unaccent: bool = True,
    ) -> None:
        db = PostgresDB(dsn, schema=schema, server_settings=server_settings, min_size=min_size, max_size=max_size,
                        unaccent=unaccent)
        super().__init__(db, POSTGRES, PostgresSearch(db))
