"""A small async database adapter, so one SQL storage serves SQLite and PostgreSQL.

SQL is written with ``?`` placeholders; the PostgreSQL adapter numbers them.
"""

from __future__ import annotations

from typing import Any, AsyncContextManager, Protocol, Sequence

Row = tuple[Any, ...]


class Conn(Protocol):
    dialect: str  # "sqlite" or "postgres"

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...
    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None: ...
    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def insert_many_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Runs an ``INSERT ... RETURNING x`` per row; a row that inserted nothing gives None."""
        ...


class Database(Conn, Protocol):
    def transaction(self) -> AsyncContextManager[Conn]: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...
