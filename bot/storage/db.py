"""A small async database adapter, so one SQL storage serves SQLite and PostgreSQL.

SQL is written with ``?`` placeholders; the PostgreSQL adapter numbers them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

Row = tuple[Any, ...]
T = TypeVar("T")


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
    def transaction(self) -> AbstractAsyncContextManager[Conn]: ...

    async def run_transaction(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        """Runs ``body(conn)`` as one transaction, all or nothing.

        **``body`` awaits nothing but ``conn``'s methods** (no lock, no sleep, no other I/O):
        SQLite drives it to its end on the database thread in one trip, where any other
        await raises ``RuntimeError``; PostgreSQL would accept it, so only this rule keeps
        the two alike.
        """
        ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
