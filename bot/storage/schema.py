"""Herald's tables, written once, and what differs between SQLite and PostgreSQL.

Each migration below is one SQL template. ``${name}`` marks the few places where the two
databases spell a type (or a search structure) differently; :class:`Dialect` holds the
spellings. The backends apply the migrations in order and record how many they applied
(SQLite in ``PRAGMA user_version``, PostgreSQL in ``herald_schema``), so a migration once
released never changes: a new column or table is a new migration, appended.

Full-text search is the one part that is the backend's own (FTS5 on SQLite, a generated
``tsvector`` column on PostgreSQL); its statements are substitutions too, so the tables
themselves are still written once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any

# SQLite: a full-text index over entries' title and summary, kept in step by triggers
_SQLITE_SEARCH = """
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    title, summary, content = 'entries', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, title, summary) VALUES (new.id, new.title, new.summary);
END;
CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary) VALUES ('delete', old.id, old.title, old.summary);
END;
CREATE TRIGGER entries_fts_update AFTER UPDATE OF title, summary ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary) VALUES ('delete', old.id, old.title, old.summary);
    INSERT INTO entries_fts (rowid, title, summary) VALUES (new.id, new.title, new.summary);
END;"""

# PostgreSQL: a generated search vector (herald_fold and herald_english exist before the
# tables: see bot.storage.postgres), indexed with GIN
_POSTGRES_SEARCH_COLUMN = """
    search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('herald_english'::regconfig, herald_fold(COALESCE(title, ''))), 'A')
        || setweight(to_tsvector('herald_english'::regconfig, herald_fold(COALESCE(summary, ''))), 'B')
    ) STORED,"""
_POSTGRES_SEARCH_INDEX = "\nCREATE INDEX entries_search ON entries USING GIN (search_vector);"

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
CREATE TABLE feeds (
    id ${id},
    url TEXT NOT NULL UNIQUE,
    name TEXT,
    title TEXT,
    link TEXT,
    source TEXT NOT NULL DEFAULT 'discord',
    paused INTEGER NOT NULL DEFAULT 0,
    pause_reason TEXT,
    interval ${real},
    backfill INTEGER NOT NULL DEFAULT 0,
    max_per_poll INTEGER,
    etag TEXT,
    last_modified TEXT,
    body_hash TEXT,
    last_fetch ${real},
    last_success ${real},
    last_error TEXT,
    last_status INTEGER,
    error_count INTEGER NOT NULL DEFAULT 0,
    first_error_at ${real},
    next_fetch ${real} NOT NULL DEFAULT 0,
    lease_until ${real} NOT NULL DEFAULT 0,
    created ${real} NOT NULL
);
CREATE INDEX feeds_due ON feeds (paused, next_fetch);
CREATE TABLE subscriptions (
    id ${id},
    feed_id ${bigint} NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    guild_id ${bigint},
    name TEXT,
    source TEXT NOT NULL DEFAULT 'discord',
    active INTEGER NOT NULL DEFAULT 1,
    paused INTEGER NOT NULL DEFAULT 0,
    pause_reason TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    created ${real} NOT NULL,
    UNIQUE (feed_id, target)
);
CREATE INDEX subscriptions_guild ON subscriptions (guild_id, feed_id);
CREATE INDEX subscriptions_target ON subscriptions (target);
CREATE TABLE entries (
    id ${id},
    feed_id ${bigint} NOT NULL REFERENCES feeds (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    link_key TEXT,
    title TEXT NOT NULL,
    link TEXT,
    summary TEXT NOT NULL,
    author TEXT,
    published ${real},
    updated ${real},
    image TEXT,
    first_seen ${real} NOT NULL,${search_column}
    UNIQUE (feed_id, key)
);
CREATE INDEX entries_link ON entries (feed_id, link_key);
CREATE INDEX entries_recent ON entries (feed_id, published);${search_index}
CREATE TABLE deliveries (
    id ${id},
    subscription_id ${bigint} NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    entry_id ${bigint} REFERENCES entries (id) ON DELETE CASCADE,
    kind TEXT NOT NULL DEFAULT 'entry',
    entry_ids TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt ${real} NOT NULL DEFAULT 0,
    lease_until ${real} NOT NULL DEFAULT 0,
    message_id TEXT,
    error TEXT,
    created ${real} NOT NULL,
    sent_at ${real},
    UNIQUE (subscription_id, entry_id)
);
CREATE INDEX deliveries_outbox ON deliveries (target, state, id);
CREATE INDEX deliveries_state ON deliveries (state);${search_table}
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""",
    # 2: an entry's thumbnail (an image too narrow for the large image) and the feed's own image
    """
ALTER TABLE entries ADD COLUMN thumbnail TEXT;
ALTER TABLE feeds ADD COLUMN image TEXT;
""",
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells what the shared SQL leaves open: column types in the schema,
    a list parameter, row locks. Everything else is the same SQL on both."""

    name: str  # "sqlite" or "postgres"
    types: dict[str, str] = field(default_factory=dict)  # the schema's ${name} substitutions
    claim_lock: str = ""  # appended to the SELECT that leases due feeds: skip rows another process holds
    head_lock: str = ""  # appended to the SELECT of a target's head delivery: wait for a head being claimed
    lower: str = "LOWER"  # a function that lower-cases text as Python's str.lower does
    exclusive: bool = False  # one Herald process owns the database

    def migrations(self) -> list[str]:
        """The schema's migrations, in order, in this database's spelling."""
        return [Template(m).substitute(self.types) for m in MIGRATIONS]

    def in_list(self, column: str) -> str:
        """A condition ``column IN <one list parameter>`` (bind :meth:`list_param`)."""
        if self.name == "postgres":
            return f"{column} = ANY(?)"
        return f"{column} IN (SELECT value FROM json_each(?))"  # nosec B608 # constant SQL; values are bound

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values) if self.name == "postgres" else json.dumps(list(values))


SQLITE_LOWER = "herald_lower"  # registered on each connection by bot.storage.sqlite

SQLITE = Dialect(
    "sqlite",
    types={"id": "INTEGER PRIMARY KEY", "bigint": "INTEGER", "real": "REAL",
           "search_column": "", "search_index": "", "search_table": _SQLITE_SEARCH},
    lower=SQLITE_LOWER,  # SQLite's own LOWER folds ASCII only
    exclusive=True,
)

POSTGRES = Dialect(
    "postgres",
    types={"id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "bigint": "BIGINT", "real": "DOUBLE PRECISION",
           "search_column": _POSTGRES_SEARCH_COLUMN, "search_index": _POSTGRES_SEARCH_INDEX, "search_table": ""},
    claim_lock=" FOR UPDATE SKIP LOCKED",
    # FOR UPDATE, never SKIP LOCKED: skipping a head being claimed would hand out the next delivery, out of order
    head_lock=" FOR UPDATE OF d",
)

DIALECTS = {d.name: d for d in (SQLITE, POSTGRES)}
