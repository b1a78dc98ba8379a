"""The storage contract, run against every backend: SQLite always, PostgreSQL when
``HERALD_TEST_PG_DSN`` names a server (each test in its own fresh schema)."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import pytest

from bot.config import FeedConfig
from bot.decide import decide
from bot.errors import StorageError
from bot.models import Known, ParsedEntry, Policy
from bot.storage import open_storage
from bot.storage.base import PollOutcome, PollResult
from bot.storage.sql import SqlStorage
from bot.storage.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from bot.storage.sqlite import SQLiteStorage

PG_DSN = os.environ.get("HERALD_TEST_PG_DSN")
NO_PG = "HERALD_TEST_PG_DSN is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)"
NOW = 1_700_000_000.0
G1, G2 = 111_111_111_111_111_111, 222_222_222_222_222_222  # guild snowflakes, beyond 32 bits
C1, C2, C3 = 900_000_000_000_000_001, 900_000_000_000_000_002, 900_000_000_000_000_003

requires_pg = pytest.mark.skipif(not PG_DSN, reason=NO_PG)


# --- backends -------------------------------------------------------------------------------------


async def _pg_admin() -> Any:
    import asyncpg

    return await asyncpg.connect(PG_DSN)


@dataclass
class Backend:
    kind: str
    storage: SqlStorage
    make: Callable[[], SqlStorage]  # another storage on the same database, as a second process would have
    extra: list[SqlStorage] = field(default_factory=list)
    schema: str | None = None

    async def another(self, open_it: bool = True) -> SqlStorage:
        st = self.make()
        self.extra.append(st)
        if open_it:
            await st.open()
        return st


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, requires_pg])])
async def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    schema = None
    if request.param == "sqlite":
        path = str(tmp_path / "herald.db")

        def make() -> SqlStorage:
            return SQLiteStorage(path)
    else:
        from bot.storage.postgres import PostgresStorage

        schema = f"herald_test_{secrets.token_hex(6)}"
        admin = await _pg_admin()
        try:
            await admin.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await admin.close()

        def make() -> SqlStorage:
            return PostgresStorage(PG_DSN, schema=schema, max_size=4)  # type: ignore[arg-type]

    b = Backend(request.param, make(), make, schema=schema)
    await b.storage.open()
    try:
        yield b
    finally:
        for st in [b.storage, *b.extra]:
            await st.close()
        if schema is not None:
            admin = await _pg_admin()
            try:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await admin.close()


@pytest.fixture
async def pg_schema() -> Any:
    """A fresh, empty schema name (dropped afterwards) for PostgreSQL-only tests."""
    if not PG_DSN:
        pytest.skip(NO_PG)
    schema = f"herald_test_{secrets.token_hex(6)}"
    yield schema
    admin = await _pg_admin()
    try:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await admin.close()


# --- helpers --------------------------------------------------------------------------------------


def entry(n: int | str, title: str | None = None, summary: str | None = None, published: float | None = None,
          link: str | None = None, key: str | None = None) -> ParsedEntry:
    link = link or f"https://example.com/posts/{n}"
    return ParsedEntry(
        key=key or f"id:{n}", link_key=link, title=title if title is not None else f"Post {n}",
        link=link, summary=summary if summary is not None else f"Body of post {n}.",
        published=published if published is not None else NOW - 10_000 + (int(n) if str(n).isdigit() else 0),
    )


async def poll(st: SqlStorage, feed_id: int, entries: list[ParsedEntry], now: float = NOW, *, first: bool = False,
               backfill: int = 0, max_per_poll: int = 10, next_fetch: float | None = None) -> PollResult:
    """One successful poll: look up what is known, decide, apply."""
    keys, links = await st.known(feed_id, [e.key for e in entries], [e.link_key for e in entries if e.link_key])
    d = decide(Known(first, frozenset(keys), frozenset(links)), entries, Policy(backfill, max_per_poll), now)
    out = PollOutcome(feed_id=feed_id, now=now, next_fetch=now + 600 if next_fetch is None else next_fetch,
                      status="new", http_status=200, title="Feed title", decision=d)
    [res] = await st.apply_polls([out])
    return res


async def channel_feed(st: SqlStorage, url: str = "https://example.com/feed.xml", *, channel: int = C1,
                       guild: int | None = G1, name: str | None = "example", backfill: int = 0) -> int:
    return await st.add_feed(url, target=f"channel:{channel}", guild_id=guild, name=name, backfill=backfill, now=NOW)


async def count(st: SqlStorage, sql: str, args: tuple[Any, ...] = ()) -> int:
    row = await st.db.fetchone(sql, args)
    assert row is not None
    return int(row[0])


async def drain_ids(st: SqlStorage, target: str, now: float = NOW) -> list[tuple[int, ...]]:
    """Claims and marks delivered every delivery of ``target``, returning their entry ids in order."""
    got = []
    while (c := await st.claim_delivery(target, now, 60)) is not None:
        got.append(c.delivery.entry_ids)
        await st.mark_delivered(c.delivery.id, "m", now)
    return got


# --- schema ---------------------------------------------------------------------------------------


async def test_migrations_are_idempotent(backend: Backend) -> None:
    feed_id = await channel_feed(backend.storage)
    await poll(backend.storage, feed_id, [entry(1), entry(2)], first=True)
    await backend.storage.close()
    await backend.storage.open()  # the same instance again
    second = await backend.another()  # and another process on the same database
    for st in (backend.storage, second):
        feeds = await st.list_feeds(G1)
        assert [f.id for f in feeds] == [feed_id]
        assert feeds[0].entries == 2
    if backend.kind == "sqlite":
        assert await count(second, "PRAGMA user_version") == len(SQLITE_MIGRATIONS)
    else:
        from bot.storage.postgres import MIGRATIONS

        rows = await second.db.fetchall("SELECT version FROM herald_schema ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


async def test_an_old_database_gains_the_thumbnail_and_feed_image_columns(backend: Backend) -> None:
    """A database at schema 1 (before thumbnails): opening it adds the columns, keeps every row."""
    st = backend.storage
    feed_id = await channel_feed(st)
    await poll(st, feed_id, [entry(1)], first=True, backfill=1)
    await st.db.execute("ALTER TABLE entries DROP COLUMN thumbnail")
    await st.db.execute("ALTER TABLE feeds DROP COLUMN image")
    if backend.kind == "sqlite":
        await st.db.execute("PRAGMA user_version = 1")
    else:
        await st.db.execute("DELETE FROM herald_schema WHERE version > 1")
    await st.close()
    again = await backend.another()
    [old] = await again.recent(guild_id=None, feed_id=feed_id, limit=5)
    assert old.title == "Post 1" and old.thumbnail is None and old.feed_image is None
    await poll(again, feed_id, [entry(2)], NOW + 1)
    assert await count(again, "SELECT COUNT(*) FROM entries WHERE thumbnail IS NULL") == 2


async def test_thumbnail_and_feed_image_reach_the_delivery(backend: Backend) -> None:
    st = backend.storage
    feed_id = await channel_feed(st)
    e = ParsedEntry(key="id:t", link_key="https://example.com/t", title="T", link="https://example.com/t", summary="S",
                    published=NOW - 5, thumbnail="https://cdn.example/avatar.png")
    keys, links = await st.known(feed_id, [e.key], [e.link_key])
    d = decide(Known(True, frozenset(keys), frozenset(links)), [e], Policy(1, 10), NOW)
    await st.apply_polls([PollOutcome(feed_id=feed_id, now=NOW, next_fetch=NOW + 600, status="new", http_status=200,
                                      title="Feed", image="https://cdn.example/logo.png", decision=d)])
    claimed = await st.claim_delivery(f"channel:{C1}", NOW, 60)
    assert claimed is not None
    [got] = claimed.entries
    assert got.thumbnail == "https://cdn.example/avatar.png" and got.image is None
    assert got.feed_image == "https://cdn.example/logo.png"
    [again] = await st.get_entries([got.id])
    assert again.thumbnail == got.thumbnail and again.feed_image == got.feed_image
    # a later poll without a feed image keeps the one known
    await st.apply_polls([PollOutcome(feed_id=feed_id, now=NOW + 1, next_fetch=NOW + 600, status="new",
                                      http_status=200)])
    [kept] = await st.get_entries([got.id])
    assert kept.feed_image == "https://cdn.example/logo.png"


async def test_message_options_keep_an_explicit_zero_and_false(backend: Backend) -> None:
    st = backend.storage
    feeds = [FeedConfig(url="https://example.com/a.xml", name="a", channels=(C1,), summary_length=0, feed_image=False),
             FeedConfig(url="https://example.com/b.xml", name="b", channels=(C2,), summary_length=120, feed_image=True),
             FeedConfig(url="https://example.com/c.xml", name="c", channels=(C3,))]
    await st.sync_config_feeds(feeds, NOW)
    subs = {s.target: s for s in await st.subscriptions()}
    assert (subs[f"channel:{C1}"].summary_length, subs[f"channel:{C1}"].feed_image) == (0, False)
    assert (subs[f"channel:{C2}"].summary_length, subs[f"channel:{C2}"].feed_image) == (120, True)
    assert (subs[f"channel:{C3}"].summary_length, subs[f"channel:{C3}"].feed_image) == (None, None)  # [defaults] decide


@requires_pg
async def test_postgres_concurrent_first_open_migrates_once(pg_schema: str) -> None:
    from bot.storage.postgres import MIGRATIONS, PostgresStorage

    stores = [PostgresStorage(PG_DSN, schema=pg_schema, max_size=2) for _ in range(4)]  # type: ignore[arg-type]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        rows = await stores[0].db.fetchall("SELECT version FROM herald_schema ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
        assert stores[0].db.search_fold in ("unaccent", "nfd")
        feed_id = await channel_feed(stores[1])
        assert [f.id for f in await stores[3].list_feeds()] == [feed_id]
    finally:
        for s in stores:
            await s.close()


@requires_pg
async def test_postgres_url_options_select_the_schema(pg_schema: str) -> None:
    """open_storage() with ``?options=-csearch_path%3D...`` in the URL, no keyword needed."""
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE SCHEMA "{pg_schema}"')
    finally:
        await admin.close()
    sep = "&" if "?" in PG_DSN else "?"  # type: ignore[operator]
    st = open_storage(f"{PG_DSN}{sep}options=-csearch_path%3D{pg_schema}")
    await st.open()
    try:
        await channel_feed(st)  # type: ignore[arg-type]
    finally:
        await st.close()
    admin = await _pg_admin()
    try:
        n = await admin.fetchval(f'SELECT COUNT(*) FROM "{pg_schema}".feeds')
    finally:
        await admin.close()
    assert n == 1


@requires_pg
async def test_postgres_unreachable_server_is_a_clear_error_without_the_password() -> None:
    from bot.storage.postgres import PostgresStorage

    st = PostgresStorage("postgresql://herald:hunter2secret@127.0.0.1:1/herald")
    with pytest.raises(StorageError) as info:
        await st.open()
    msg = str(info.value)
    assert "hunter2secret" not in msg
    assert "cannot connect" in msg and "127.0.0.1:1" in msg and "***" in msg


@requires_pg
async def test_postgres_refused_login_is_a_clear_error_without_the_password() -> None:
    from bot.storage.postgres import PostgresStorage

    rest = PG_DSN.split("@", 1)[1]  # type: ignore[union-attr]
    st = PostgresStorage(f"postgresql://herald_no_such_role:hunter2secret@{rest}")
    with pytest.raises(StorageError) as info:
        await st.open()
    msg = str(info.value)
    assert "hunter2secret" not in msg
    assert "authentication failed" in msg and "herald_no_such_role" in msg


@requires_pg
async def test_postgres_missing_database_is_a_storage_error() -> None:
    from bot.storage.postgres import PostgresStorage

    base = PG_DSN.rsplit("/", 1)[0]  # type: ignore[union-attr]
    st = PostgresStorage(f"{base}/herald_no_such_db_{secrets.token_hex(3)}")
    with pytest.raises(StorageError, match="does not exist"):
        await st.open()


def test_placeholders_are_numbered_outside_literals() -> None:
    pytest.importorskip("asyncpg")
    from bot.storage.postgres import number_placeholders, redact_dsn

    assert number_placeholders("SELECT ?, '?', 'it''s ?', \"a?\", ? WHERE x = ANY(?)") == (
        "SELECT $1, '?', 'it''s ?', \"a?\", $2 WHERE x = ANY($3)"
    )
    assert redact_dsn("postgresql://u:pw@h:5432/db?password=pw2") == "postgresql://u:***@h:5432/db?password=***"


# --- feeds and subscriptions ------------------------------------------------------------------------


async def test_sync_config_feeds_creates_and_retires(backend: Backend) -> None:
    st = backend.storage
    a = FeedConfig(url="https://a.example/feed", name="alpha", channels=(C1, C2), backfill=3, guild_id=G1,
                   mention_roles=(5,))
    b = FeedConfig(url="https://b.example/feed", name="beta", webhooks=("HOOK_B",), guild_id=G1)
    await st.sync_config_feeds([a, b], NOW)
    await st.sync_config_feeds([a, b], NOW)  # twice changes nothing
    subs = await st.subscriptions()
    assert sorted(s.target for s in subs) == [f"channel:{C1}", f"channel:{C2}", "webhook:HOOK_B"]
    assert {s.source for s in subs} == {"config"}
    assert all(s.guild_id == G1 for s in subs)
    assert [s.mention_roles for s in subs if s.target == f"channel:{C1}"] == [(5,)]
    feeds = await st.list_feeds(G1)
    assert [(f.name, f.source) for f in feeds] == [("alpha", "config"), ("beta", "config")]
    assert sorted(feeds[0].targets) == sorted([f"channel:{C1}", f"channel:{C2}"])
    claimed = await st.claim_due_feeds(NOW, 10, 60)
    assert sorted(f.url for f in claimed) == [a.url, b.url]
    assert {f.url: f.backfill for f in claimed}[a.url] == 3

    await st.sync_config_feeds([a], NOW + 100)  # b is gone from the file
    assert sorted(s.target for s in await st.subscriptions()) == [f"channel:{C1}", f"channel:{C2}"]
    claimed = await st.claim_due_feeds(NOW + 1000, 10, 60)  # after the lease
    assert [f.url for f in claimed] == [a.url]
    assert [f.name for f in await st.list_feeds(G1)] == ["alpha"]

    await st.sync_config_feeds([a, b], NOW + 2000)  # back again: claimable again
    claimed = await st.claim_due_feeds(NOW + 3000, 10, 60)
    assert sorted(f.url for f in claimed) == [a.url, b.url]


async def _next_fetch(st: SqlStorage, url: str) -> float:
    row = await st.db.fetchone("SELECT next_fetch FROM feeds WHERE url = ?", (url,))
    assert row is not None
    return float(row[0])


async def test_a_changed_interval_reschedules_at_the_next_start(backend: Backend) -> None:
    st = backend.storage
    own = FeedConfig(url="https://own.example/feed", name="own", channels=(C1,), interval=3600.0)
    default = FeedConfig(url="https://default.example/feed", name="default", channels=(C2,))
    await st.sync_config_feeds([own, default], NOW, 3600.0)
    discord_id = await channel_feed(st, "https://discord.example/feed", channel=C3, name="added")
    for f in await st.claim_due_feeds(NOW, 10, 60):  # each polled once, next fetch in an hour
        await poll(st, f.id, [entry(1)], NOW, first=True, next_fetch=NOW + 3600)
    await st.sync_config_feeds([own, default], NOW + 10, 3600.0)  # nothing changed: nothing moves
    assert await _next_fetch(st, own.url) == NOW + 3600

    shorter = FeedConfig(url=own.url, name="own", channels=(C1,), interval=300.0)
    await st.sync_config_feeds([shorter, default], NOW + 20, 3600.0)
    assert await _next_fetch(st, own.url) == NOW + 300  # one new interval after the last fetch
    assert await _next_fetch(st, default.url) == NOW + 3600

    await st.sync_config_feeds([shorter, default], NOW + 30, 600.0)  # [polling] interval 1h -> 10m
    assert await _next_fetch(st, default.url) == NOW + 600
    row = await st.db.fetchone("SELECT next_fetch FROM feeds WHERE id = ?", (discord_id,))
    assert row is not None and row[0] == NOW + 600  # a feed added from Discord uses the default too
    assert await _next_fetch(st, own.url) == NOW + 300  # its own interval did not change


async def test_a_failing_feed_keeps_its_backoff_when_the_interval_changes(backend: Backend) -> None:
    st = backend.storage
    fc = FeedConfig(url="https://failing.example/feed", name="failing", channels=(C1,), interval=3600.0)
    await st.sync_config_feeds([fc], NOW, 3600.0)
    [f] = await st.claim_due_feeds(NOW, 10, 60)
    await st.apply_polls([PollOutcome(feed_id=f.id, now=NOW, next_fetch=NOW + 7200, status="error", error="HTTP 500")])
    await st.sync_config_feeds([FeedConfig(url=fc.url, name="failing", channels=(C1,), interval=60.0)], NOW + 5, 3600.0)
    assert await _next_fetch(st, fc.url) == NOW + 7200


async def test_set_subscription_guild_fills_only_a_missing_server(backend: Backend) -> None:
    st = backend.storage
    hook = FeedConfig(url="https://hook.example/feed", name="locked", webhooks=("HOOK",))
    pinned = FeedConfig(url="https://pinned.example/feed", name="pinned", webhooks=("PINNED",), guild_id=G2)
    await st.sync_config_feeds([hook, pinned], NOW)
    assert await st.list_feeds(G1) == [] and await st.find_feed("locked", G1) is None
    await st.set_subscription_guild("webhook:HOOK", G1)
    await st.set_subscription_guild("webhook:PINNED", G1)  # a guild_id from the config file stays
    assert [f.name for f in await st.list_feeds(G1)] == ["locked"]
    assert [f.name for f in await st.list_feeds(G2)] == ["pinned"]
    info = await st.find_feed("locked", G1)
    assert info is not None and await st.set_paused(info.id, True, "manual", guild_id=G1) == 1
    await st.sync_config_feeds([hook, pinned], NOW + 1)  # a restart keeps the learned server
    assert [f.name for f in await st.list_feeds(G1)] == ["locked"]


async def test_claim_due_feeds_honours_next_fetch_pause_and_lease(backend: Backend) -> None:
    st = backend.storage
    f1 = await channel_feed(st, "https://one.example/feed", name="one")
    f2 = await channel_feed(st, "https://two.example/feed", name="two")
    f3 = await channel_feed(st, "https://three.example/feed", name="three")
    await st.set_paused(f3, True, "manual")
    claimed = await st.claim_due_feeds(NOW, 10, 60)
    assert sorted(f.id for f in claimed) == [f1, f2]
    assert await st.claim_due_feeds(NOW + 30, 10, 60) == []  # leased
    assert await st.next_due_time() == NOW + 60
    # f1 is polled: due again in 600 s; f2's lease runs out at NOW + 60
    await poll(st, f1, [entry(1)], NOW + 10, first=True, next_fetch=NOW + 610)
    assert [f.id for f in await st.claim_due_feeds(NOW + 60, 10, 60)] == [f2]
    assert await st.claim_due_feeds(NOW + 100, 10, 60) == []
    got = await st.claim_due_feeds(NOW + 610, 10, 60)  # f2's second lease is over too; earliest due first
    assert [f.id for f in got] == [f2, f1]
    assert got[1].last_success is not None and got[1].title == "Feed title" and got[0].last_success is None
    # limit: one at a time, the earliest due first
    await st.set_paused(f3, False)
    assert [f.id for f in await st.claim_due_feeds(NOW + 5000, 1, 60)] == [f3]


async def test_two_processes_never_claim_the_same_feed(backend: Backend) -> None:
    a = backend.storage
    b = await backend.another()
    ids = [await channel_feed(a, f"https://f{i}.example/feed", name=f"f{i}") for i in range(24)]
    claimed: list[int] = []
    for _ in range(6):
        batches = await asyncio.gather(*(st.claim_due_feeds(NOW, 3, 300) for st in (a, b, a, b)))
        claimed.extend(f.id for batch in batches for f in batch)
    assert len(claimed) == len(set(claimed)), "a feed was handed out twice"
    assert sorted(claimed) == sorted(ids)


async def test_two_processes_never_claim_the_same_delivery(backend: Backend) -> None:
    a = backend.storage
    b = await backend.another()
    targets = []
    for i in range(6):
        fid = await channel_feed(a, f"https://d{i}.example/feed", channel=C1 + i, name=f"d{i}")
        await poll(a, fid, [entry(n) for n in range(3)])
        targets.append(f"channel:{C1 + i}")
    seen: list[int] = []
    for _ in range(4):
        due = await a.due_targets(NOW)
        got = await asyncio.gather(*(st.claim_delivery(t, NOW, 300) for t in due for st in (a, b)))
        claimed = [c for c in got if c is not None]
        # one head per target at a time
        assert len({c.subscription.target for c in claimed}) == len(claimed)
        seen.extend(c.delivery.id for c in claimed)
        await asyncio.gather(*(a.mark_delivered(c.delivery.id, "m", NOW) for c in claimed))
    assert len(seen) == len(set(seen)) == 18
    assert (await a.delivery_counts())["sent"] == 18


LOCK_WAIT_TIMEOUT = 10.0  # seconds a claim may take to start waiting on a row lock


async def _wait_blocked_by(holder: int, task: asyncio.Task[Any]) -> bool:
    """Waits until a backend is waiting on a lock that the backend ``holder`` holds (True), or
    until ``task`` is done without having had to (False). ``pg_stat_activity`` has no
    notification, so it is asked again after each short wait; ``pg_blocking_pids`` names only
    this test's holder, whatever other tests do on the server."""
    import asyncpg

    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCK_WAIT_TIMEOUT
    watcher = await asyncpg.connect(PG_DSN)
    try:
        while not task.done():
            if await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND $1::int = ANY(pg_blocking_pids(pid))", holder
            ):
                return True
            if loop.time() > deadline:
                raise TimeoutError(f"the claim neither finished nor waited on the lock in {LOCK_WAIT_TIMEOUT}s")
            await asyncio.wait({task}, timeout=0.01)  # done early means it did not wait
        return False
    finally:
        await watcher.close()


@requires_pg
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_claim_waits_for_a_head_being_claimed(backend: Backend) -> None:
    """While another process is inside its claim of a target's head, a claim must not
    skip ahead to the next delivery of that target (which would send out of order)."""
    st = backend.storage
    fid = await channel_feed(st)
    await poll(st, fid, [entry(1), entry(2)])
    import asyncpg

    other = await asyncpg.connect(PG_DSN, server_settings={"search_path": f'"{backend.schema}"'})
    try:
        tx = other.transaction()
        await tx.start()
        head = await other.fetchval("SELECT MIN(id) FROM deliveries")
        await other.execute("SELECT id FROM deliveries WHERE id = $1 FOR UPDATE", head)  # mid-claim
        holder = await other.fetchval("SELECT pg_backend_pid()")
        task = asyncio.create_task(st.claim_delivery(f"channel:{C1}", NOW, 60))
        # the claim must now be blocked on that row lock (a claim that skipped it would be done instead)
        blocked = await _wait_blocked_by(holder, task)
        assert blocked, f"the claim did not wait for the head's lock; it returned {task.result()!r}"
        await other.execute("UPDATE deliveries SET lease_until = $1 WHERE id = $2", NOW + 60, head)
        await tx.commit()
        assert await asyncio.wait_for(task, 10) is None  # the head is leased: nothing to send yet
    finally:
        await other.close()


async def test_known_finds_keys_and_link_keys(backend: Backend) -> None:
    st = backend.storage
    f1 = await channel_feed(st)
    f2 = await channel_feed(st, "https://other.example/feed", name="other")
    await poll(st, f1, [entry(1), entry(2)], first=True)
    await poll(st, f2, [entry(3)], first=True)
    keys, links = await st.known(f1, ["id:1", "id:9", "id:3"], ["https://example.com/posts/2", "https://x/none"])
    assert keys == {"id:1", "id:2"}  # id:2 through its link
    assert links == {"https://example.com/posts/1", "https://example.com/posts/2"}
    assert await st.known(f1, [], []) == (set(), set())
    assert await st.known(f2, ["id:1"], []) == (set(), set())  # another feed's keys


async def test_apply_polls_stores_once_and_announces_per_subscription(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    await st.add_feed("https://example.com/feed.xml", target=f"channel:{C2}", guild_id=G2, name="ex2", backfill=0,
                      now=NOW)
    entries = [entry(3), entry(1), entry(2)]
    keys, links = await st.known(fid, [e.key for e in entries], [e.link_key for e in entries])  # type: ignore[misc]
    d = decide(Known(False, frozenset(keys), frozenset(links)), entries, Policy(0, 10), NOW)
    outcome = PollOutcome(feed_id=fid, now=NOW, next_fetch=NOW + 600, status="new", decision=d)
    [res] = await st.apply_polls([outcome])
    assert (res.stored, res.announced) == (3, 6)
    [res2] = await st.apply_polls([outcome])  # the same decision again
    assert (res2.stored, res2.announced) == (0, 0)
    assert await count(st, "SELECT COUNT(*) FROM entries") == 3
    assert await count(st, "SELECT COUNT(*) FROM deliveries") == 6
    assert (await st.delivery_counts())["pending"] == 6
    # a fresh decision over the same document finds nothing new
    again = await poll(st, fid, entries)
    assert (again.stored, again.announced) == (0, 0)
    for target in (f"channel:{C1}", f"channel:{C2}"):
        ids = await drain_ids(st, target)
        titles = [e.title for e in await st.get_entries([i for t in ids for i in t])]
        assert titles == ["Post 1", "Post 2", "Post 3"]  # oldest first


async def test_digest_rows_and_first_fetch_backfill(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st, backfill=0)
    res = await poll(st, fid, [entry(n) for n in range(1, 4)], first=True, backfill=1)
    assert (res.stored, res.announced) == (3, 1)  # the first fetch announces only the backfill
    assert await drain_ids(st, f"channel:{C1}") != []
    res = await poll(st, fid, [entry(n) for n in range(1, 10)], max_per_poll=2)
    assert (res.stored, res.announced) == (6, 3)  # one digest + two entries
    claimed = await st.claim_delivery(f"channel:{C1}", NOW, 60)
    assert claimed is not None and claimed.delivery.kind == "digest"
    assert [e.title for e in claimed.entries] == ["Post 4", "Post 5", "Post 6", "Post 7"]
    assert claimed.feed_title == "Feed title"
    await st.mark_delivered(claimed.delivery.id, "m", NOW)
    rest = await drain_ids(st, f"channel:{C1}")
    assert [e.title for e in await st.get_entries([i for t in rest for i in t])] == ["Post 8", "Post 9"]


async def test_rekey_keeps_a_single_row(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    await poll(st, fid, [entry(1, key="id:old-guid")], first=True)
    res = await poll(st, fid, [entry(1, key="id:new-guid")])  # same link, new GUID
    assert (res.stored, res.announced) == (0, 0)
    assert await count(st, "SELECT COUNT(*) FROM entries") == 1
    keys, _ = await st.known(fid, ["id:new-guid", "id:old-guid"], [])
    assert keys == {"id:new-guid"}


async def test_error_outcome_counts_and_gone_pauses(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    for i in (1, 2):
        [res] = await st.apply_polls([PollOutcome(feed_id=fid, now=NOW + i, next_fetch=NOW + 100 * i, status="error",
                                                  http_status=500, error=f"HTTP 500 #{i}")])
        assert not res.paused
    [info] = await st.list_feeds(G1)
    assert (info.error_count, info.last_error, info.next_fetch, info.paused) == (2, "HTTP 500 #2", NOW + 200, False)
    await poll(st, fid, [entry(1)], NOW + 300, first=True)
    [info] = await st.list_feeds(G1)
    assert (info.error_count, info.last_error) == (0, None)

    [res] = await st.apply_polls([PollOutcome(feed_id=fid, now=NOW + 400, next_fetch=NOW + 500, status="error",
                                              http_status=410, error="HTTP 410", pause_reason="gone: HTTP 410")])
    assert res.paused
    [info] = await st.list_feeds(G1)
    assert info.paused and info.pause_reason == "gone: HTTP 410" and info.error_count == 1
    assert await st.claim_due_feeds(NOW + 10_000, 10, 60) == []


# --- the outbox -----------------------------------------------------------------------------------


async def test_outbox_head_of_line(backend: Backend) -> None:
    st = backend.storage
    f1 = await channel_feed(st)
    f2 = await channel_feed(st, "https://two.example/feed", channel=C2, name="two")
    await poll(st, f1, [entry(1), entry(2)])
    await poll(st, f2, [entry(3)])
    t1, t2 = f"channel:{C1}", f"channel:{C2}"
    assert await st.due_targets(NOW) == [t1, t2]
    head = await st.claim_delivery(t1, NOW, 60)
    assert head is not None and head.delivery.attempts == 1
    assert [e.title for e in head.entries] == ["Post 1"]
    assert head.subscription.target == t1 and head.subscription.guild_id == G1
    # leased: neither the head nor the next one
    assert await st.claim_delivery(t1, NOW + 10, 60) is None
    assert await st.due_targets(NOW + 10) == [t2]
    await st.release(head.delivery.id)
    again = await st.claim_delivery(t1, NOW + 10, 60)
    assert again is not None and again.delivery.id == head.delivery.id and again.delivery.attempts == 1
    # waiting for a retry: still the head, and not before its time
    await st.retry_later(head.delivery.id, NOW + 500, "429")
    assert await st.claim_delivery(t1, NOW + 20, 60) is None
    assert t1 not in await st.due_targets(NOW + 20)
    assert (await st.next_delivery_time() or 0) <= NOW  # t2's head is due now
    retried = await st.claim_delivery(t1, NOW + 500, 60)
    assert retried is not None and retried.delivery.id == head.delivery.id and retried.delivery.attempts == 2
    await st.mark_delivered(head.delivery.id, "msg-1", NOW + 500)
    nxt = await st.claim_delivery(t1, NOW + 500, 60)
    assert nxt is not None and [e.title for e in nxt.entries] == ["Post 2"]
    await st.mark_failed(nxt.delivery.id, "too long", NOW + 501)
    assert await st.claim_delivery(t1, NOW + 600, 60) is None
    counts = await st.delivery_counts()
    assert (counts["sent"], counts["failed"], counts["pending"]) == (1, 1, 1)
    assert [f.failed for f in await st.list_feeds(G1) if f.id == f1] == [1]


async def test_pause_target_fails_pending_and_pauses(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    await st.add_feed("https://example.com/feed.xml", target=f"channel:{C2}", guild_id=G1, name="ex", backfill=0,
                      now=NOW)
    await poll(st, fid, [entry(1), entry(2)])
    paused = await st.pause_target(f"channel:{C1}", "Missing Access", NOW)
    assert [s.target for s in paused] == [f"channel:{C1}"]
    assert await st.pause_target(f"channel:{C1}", "Missing Access", NOW) == []  # already paused
    rows = await st.db.fetchall("SELECT state, error FROM deliveries WHERE target = ? ORDER BY id", (f"channel:{C1}",))
    assert rows == [("failed", "Missing Access"), ("failed", "Missing Access")]
    assert await st.due_targets(NOW) == [f"channel:{C2}"]
    subs = {s.target: s for s in await st.subscriptions(fid)}
    assert subs[f"channel:{C1}"].paused and subs[f"channel:{C1}"].pause_reason == "Missing Access"
    assert not subs[f"channel:{C2}"].paused
    # the feed is still polled for the other target
    assert [f.id for f in await st.claim_due_feeds(NOW + 1000, 10, 60)] == [fid]


async def test_set_paused_for_a_feed_and_for_a_guild(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    await st.add_feed("https://example.com/feed.xml", target=f"channel:{C2}", guild_id=G2, name="ex", backfill=0,
                      now=NOW)
    assert await st.set_paused(fid, True, "maintenance") == 1
    assert await st.claim_due_feeds(NOW, 10, 60) == []
    views = [await st.list_feeds(G1), await st.list_feeds(G2)]
    assert [[(f.paused, f.pause_reason) for f in v] for v in views] == [[(True, "maintenance")]] * 2
    await st.set_paused(fid, False)
    assert [f.id for f in await st.claim_due_feeds(NOW, 10, 60)] == [fid]
    assert not any(f.paused for f in await st.list_feeds())

    # one guild pauses its subscription: only its view and its deliveries are affected
    assert await st.set_paused(fid, True, "guild says so", guild_id=G1) == 1
    [g1] = await st.list_feeds(G1)
    [g2] = await st.list_feeds(G2)
    assert (g1.paused, g1.pause_reason) == (True, "guild says so")
    assert not g2.paused
    await poll(st, fid, [entry(1)], NOW + 100)
    assert await st.due_targets(NOW + 100) == [f"channel:{C2}"]
    assert [f.id for f in await st.claim_due_feeds(NOW + 1000, 10, 60)] == [fid]  # G2 still wants it
    await st.set_paused(fid, False, guild_id=G1)
    assert sorted(await st.due_targets(NOW + 100)) == [f"channel:{C1}", f"channel:{C2}"]


async def test_list_and_find_feeds_per_guild(backend: Backend) -> None:
    st = backend.storage
    f1 = await channel_feed(st, "https://one.example/feed", name="Alpha")
    f2 = await channel_feed(st, "https://two.example/feed", channel=C2, guild=G2, name="Beta")
    await poll(st, f1, [entry(1), entry(2)], first=True)
    assert [f.id for f in await st.list_feeds(G1)] == [f1]
    assert [f.id for f in await st.list_feeds(G2)] == [f2]
    assert sorted(f.id for f in await st.list_feeds()) == sorted([f1, f2])
    [info] = await st.list_feeds(G1)
    assert (info.name, info.url, info.entries, info.targets) == ("Alpha", "https://one.example/feed", 2,
                                                                 [f"channel:{C1}"])
    assert info.title == "Feed title"
    for key in ("alpha", "https://one.example/feed", str(f1)):
        found = await st.find_feed(key, G1)
        assert found is not None and found.id == f1
    assert await st.find_feed("beta", G1) is None  # another guild's feed is invisible
    assert await st.find_feed(str(f2), G1) is None
    assert (await st.find_feed("beta", G2)).id == f2  # type: ignore[union-attr]
    assert await st.remove_subscriptions(f2, G1) == 0
    assert await st.remove_subscriptions(f2, G2) == 1
    assert await st.list_feeds(G2) == []


async def test_add_feed_backfills_a_new_subscription_from_stored_entries(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    await poll(st, fid, [entry(n) for n in range(1, 6)], first=True)
    again = await st.add_feed("https://example.com/feed.xml", target=f"channel:{C2}", guild_id=G2, name="mine",
                              backfill=2, now=NOW + 5)
    assert again == fid
    ids = await drain_ids(st, f"channel:{C2}")
    assert [e.title for e in await st.get_entries([i for t in ids for i in t])] == ["Post 4", "Post 5"]
    # adding it again creates nothing new
    await st.add_feed("https://example.com/feed.xml", target=f"channel:{C2}", guild_id=G2, name="mine", backfill=2,
                      now=NOW + 6)
    assert await st.claim_delivery(f"channel:{C2}", NOW + 6, 60) is None
    # a feed never polled: nothing to backfill yet, the first poll will do it
    new = await st.add_feed("https://new.example/feed", target=f"channel:{C3}", guild_id=G1, name="new", backfill=3,
                            now=NOW)
    assert await st.claim_delivery(f"channel:{C3}", NOW, 60) is None
    [state] = [f for f in await st.claim_due_feeds(NOW, 10, 60) if f.id == new]
    assert state.backfill == 3 and state.last_success is None


async def test_recent_newest_first_with_guild_scope(backend: Backend) -> None:
    st = backend.storage
    f1 = await channel_feed(st)
    f2 = await channel_feed(st, "https://two.example/feed", channel=C2, guild=G2, name="two")
    await poll(st, f1, [entry(1), entry(3), entry(2)], first=True)
    await poll(st, f2, [entry(10, link="https://two.example/10")], first=True)
    assert [e.title for e in await st.recent(guild_id=G1, feed_id=None, limit=10)] == ["Post 3", "Post 2", "Post 1"]
    assert [e.title for e in await st.recent(guild_id=G1, feed_id=None, limit=2)] == ["Post 3", "Post 2"]
    assert [e.title for e in await st.recent(guild_id=None, feed_id=None, limit=1)] == ["Post 10"]
    assert [e.title for e in await st.recent(guild_id=G2, feed_id=None, limit=10)] == ["Post 10"]
    assert await st.recent(guild_id=G2, feed_id=f1, limit=10) == []
    latest = (await st.recent(guild_id=G1, feed_id=f1, limit=1))[0]
    assert latest.feed_name == "Feed title" and latest.feed_title == "Feed title"  # feeds.name is set by config only


async def test_meta_settings(backend: Backend) -> None:
    st = backend.storage
    assert await st.get_meta("command_hash") is None
    await st.set_meta("command_hash", "abc")
    await st.set_meta("command_hash", "def")
    assert await st.get_meta("command_hash") == "def"
    assert await (await backend.another()).get_meta("command_hash") == "def"


# --- search ---------------------------------------------------------------------------------------


async def _search_corpus(st: SqlStorage) -> tuple[int, int]:
    f1 = await channel_feed(st)
    f2 = await channel_feed(st, "https://two.example/feed", channel=C2, guild=G2, name="two")
    await poll(st, f1, [
        entry(1, "Kubernetes in production", "Notes from running clusters at scale."),
        entry(2, "Weekly notes", "This week we upgraded kubernetes and the ingress controller."),
        entry(3, "Container orchestration explained", "Schedulers, pods and services."),
        entry(4, "My résumé, updated", "Looking for a new role in platform engineering."),
        entry(5, "The quick fox", "A quick fox jumps over the lazy dog."),
        entry(6, "A different animal", "The quick brown fox sleeps."),
    ], first=True)
    await poll(st, f2, [entry(7, "Kubernetes secrets in guild two", "Only guild two sees this.",
                              link="https://two.example/7")], first=True)
    return f1, f2


async def test_search_title_outranks_body_and_ties_go_to_the_newer(backend: Backend) -> None:
    st = backend.storage
    await _search_corpus(st)
    page = await st.search("kubernetes", guild_id=G1)
    assert page.total == 2
    assert [h.entry.title for h in page.hits] == ["Kubernetes in production", "Weekly notes"]  # body match is newer
    assert page.hits[0].feed_name == "Feed title"
    # two title matches of equal weight: the newer first
    f3 = await channel_feed(st, "https://three.example/feed", channel=C3, name="three")
    await poll(st, f3, [entry(20, "Rust tips", "x", link="https://three.example/20", published=NOW - 50),
                        entry(21, "Rust tips", "x", link="https://three.example/21", published=NOW - 40)], first=True)
    page = await st.search("rust tips", guild_id=G1)
    assert [h.entry.link for h in page.hits] == ["https://three.example/21", "https://three.example/20"]


async def test_search_stems_and_ignores_diacritics(backend: Backend) -> None:
    st = backend.storage
    await _search_corpus(st)
    assert [h.entry.title for h in (await st.search("orchestrating", guild_id=G1)).hits] == [
        "Container orchestration explained"]
    for q in ("resume", "Résumé", "RESUME updated"):
        assert [h.entry.title for h in (await st.search(q, guild_id=G1)).hits] == ["My résumé, updated"], q


async def test_search_phrases_match_only_as_phrases(backend: Backend) -> None:
    st = backend.storage
    await _search_corpus(st)
    assert {h.entry.title for h in (await st.search("quick fox", guild_id=G1)).hits} == {
        "The quick fox", "A different animal"}
    assert [h.entry.title for h in (await st.search('"quick fox"', guild_id=G1)).hits] == ["The quick fox"]
    assert [h.entry.title for h in (await st.search('"brown fox" quick', guild_id=G1)).hits] == ["A different animal"]
    assert (await st.search('"fox quick"', guild_id=G1)).total == 0


@pytest.mark.parametrize("query", [
    '"', '"""', "'", "kubernetes'", "*", "kube*", "-kubernetes", "kubernetes NEAR production", "NEAR(a b)",
    "kubernetes AND production", "kubernetes OR foo", "NOT kubernetes", "(kubernetes", "kubernetes)", "a & b | !c",
    "<->", "fox:*", "title:kubernetes", "🚀 kubernetes 🎉", "🚀", "\\", "%_", "x" * 1000, ("kubernetes " * 200),
    "\x00", "'; DROP TABLE entries; --", "?", "$1",
])
async def test_search_hostile_inputs_never_raise(backend: Backend, query: str) -> None:
    st = backend.storage
    await _search_corpus(st)
    page = await st.search(query, guild_id=G1)
    assert page.total >= 0 and len(page.hits) <= 5
    assert await count(st, "SELECT COUNT(*) FROM entries") == 7  # still there
    if query.strip(" *-()\\%_\"'?$1🚀") == "":
        assert page.total == 0


@pytest.mark.parametrize("query", ["", "   ", '""', "***", "()", "-", "🚀🎉"])
async def test_search_empty_queries_find_nothing(backend: Backend, query: str) -> None:
    st = backend.storage
    await _search_corpus(st)
    page = await st.search(query, guild_id=G1)
    assert (page.total, page.hits) == (0, [])


async def test_search_quoting_operators_are_text(backend: Backend) -> None:
    st = backend.storage
    await _search_corpus(st)
    # operators are words here: "kubernetes OR foo" needs "foo" too, so it finds nothing
    assert (await st.search("kubernetes OR foo", guild_id=G1)).total == 0
    assert (await st.search("-kubernetes", guild_id=G1)).total == 2  # not a negation
    assert (await st.search("kube*", guild_id=G1)).total == 0  # not a prefix query
    assert (await st.search("🚀 kubernetes production", guild_id=G1)).total == 1


async def test_search_guild_feed_and_since_scopes(backend: Backend) -> None:
    st = backend.storage
    _f1, f2 = await _search_corpus(st)
    assert (await st.search("kubernetes", guild_id=G1)).total == 2
    assert [h.entry.feed_id for h in (await st.search("kubernetes", guild_id=G2)).hits] == [f2]
    assert (await st.search("kubernetes")).total == 3
    assert (await st.search("kubernetes", feed_id=f2)).total == 1
    assert (await st.search("kubernetes", guild_id=G1, feed_id=f2)).total == 0
    assert (await st.search("secrets", guild_id=G1)).total == 0
    # since: entry 1 was published at NOW - 9999, entry 2 at NOW - 9998
    page = await st.search("kubernetes", guild_id=G1, since=NOW - 9998)
    assert [h.entry.title for h in page.hits] == ["Weekly notes"] and page.total == 1
    assert (await st.search("kubernetes", guild_id=G1, since=int(NOW))).total == 0  # an int is a time too


async def test_search_paging(backend: Backend) -> None:
    st = backend.storage
    fid = await channel_feed(st)
    await poll(st, fid, [entry(n, f"Gardening log {n}", "Tomatoes again.") for n in range(1, 8)], first=True)
    pages = [await st.search("gardening", guild_id=G1, limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [p.total for p in pages] == [7, 7, 7, 7]
    assert [len(p.hits) for p in pages] == [3, 3, 1, 0]
    titles = [h.entry.title for p in pages for h in p.hits]
    assert titles == [f"Gardening log {n}" for n in range(7, 0, -1)]  # equal rank: newest first


async def test_search_snippet_highlights_terms(backend: Backend) -> None:
    st = backend.storage
    await _search_corpus(st)
    [hit] = (await st.search("ingress", guild_id=G1)).hits
    assert "**ingress**" in hit.snippet
    assert len(hit.snippet) < 400
    [hit] = (await st.search("upgraded controller", guild_id=G1)).hits
    assert "**upgraded**" in hit.snippet and "**controller**" in hit.snippet
    assert isinstance(hit.rank, float)


@requires_pg
async def test_postgres_search_without_unaccent_still_folds_accents(pg_schema: str) -> None:
    from bot.storage.postgres import PostgresStorage

    st = PostgresStorage(PG_DSN, schema=pg_schema, unaccent=False)  # type: ignore[arg-type]
    await st.open()
    try:
        assert st.db.search_fold == "nfd"
        fid = await channel_feed(st)
        await poll(st, fid, [entry(1, "Crème brûlée", "Mon résumé. Orchestration."), entry(2, "Plain", "Nothing.")],
                   first=True)
        for q in ("creme brulee", "resume", "orchestrating", '"creme brulee"'):
            assert [h.entry.title for h in (await st.search(q, guild_id=G1)).hits] == ["Crème brûlée"], q
    finally:
        await st.close()


# --- storage by domain: lookups are queries, one schema, the poll writer's rule --------------------


def _scan_find(feeds: list[Any], name_or_url: str) -> Any:
    """find_feed as a scan of list_feeds: the meaning the query must keep."""
    wanted = name_or_url.strip().lower()
    return next((f for f in feeds if f.name.lower() == wanted or f.url.lower() == wanted or str(f.id) == wanted), None)


class _RowCounter:
    """Counts the rows the database hands back while installed on ``db``."""

    def __init__(self, db: Any) -> None:
        self.db, self.rows = db, 0
        self._fetchall, self._fetchone = db.fetchall, db.fetchone

    async def fetchall(self, sql: str, args: Any = ()) -> list[Any]:
        got = await self._fetchall(sql, args)
        self.rows += len(got)
        return got

    async def fetchone(self, sql: str, args: Any = ()) -> Any:
        got = await self._fetchone(sql, args)
        self.rows += got is not None
        return got

    def __enter__(self) -> _RowCounter:
        self.db.fetchall, self.db.fetchone = self.fetchall, self.fetchone
        return self

    def __exit__(self, *exc: object) -> None:
        del self.db.fetchall, self.db.fetchone


async def _many_feeds(st: SqlStorage, n: int = 30) -> list[int]:
    return [await channel_feed(st, f"https://many.example/{i}", name=f"feed {i:02d}") for i in range(n)]


async def test_find_feed_means_what_the_list_shows(backend: Backend) -> None:
    st = backend.storage
    cafe = await channel_feed(st, "https://Cafe.Example/Feed", name="Café Müller")
    titled = await channel_feed(st, "https://titled.example/feed", name=None)
    await poll(st, titled, [entry(1)], first=True)  # no name: listed by its title, "Feed title"
    config = FeedConfig(url="https://config.example/feed", name="Ünïcode Config", channels=(C2,), guild_id=G1)
    await st.sync_config_feeds([config], NOW)
    # the subscription's own name wins over the feed's: another server calls the same feed "Café"
    await st.add_feed("https://Cafe.Example/Feed", target=f"channel:{C3}", guild_id=G2, name="Mon café", backfill=0,
                      now=NOW)
    for guild in (G1, G2, None):
        feeds = await st.list_feeds(guild)
        keys = ["CAFÉ MÜLLER", "  café müller ", "mon CAFÉ", "https://cafe.example/feed", "HTTPS://CAFE.EXAMPLE/FEED",
                "feed title", "ünïcode config", "ÜNÏCODE CONFIG", str(cafe), str(titled), "nothing", "", "caf"]
        for key in keys:
            want, got = _scan_find(feeds, key), await st.find_feed(key, guild)
            assert (got.id if got else None) == (want.id if want else None), (guild, key)
            assert got == want, (guild, key)  # the same FeedInfo, targets and counts included
    found = await st.find_feed("café müller", G1)
    assert found is not None and found.id == cafe  # non-ASCII letters fold as Python folds them


async def test_feed_lookups_read_one_feed_not_every_feed(backend: Backend) -> None:
    st = backend.storage
    ids = await _many_feeds(st)
    with _RowCounter(st.db) as counter:
        found = await st.find_feed("FEED 17", G1)
        assert found is not None and found.id == ids[17]
        assert await st.feed_in_target("https://many.example/17", f"channel:{C1}", G1) is not None
        assert await st.discord_feed_count(G1) == len(ids)
    assert counter.rows <= 6  # a row or two per lookup; a scan of list_feeds reads 30 at least


async def test_feed_in_target_is_the_feed_that_channel_already_has(backend: Backend) -> None:
    st = backend.storage
    url = "https://example.com/feed.xml"
    fid = await channel_feed(st, url)
    await channel_feed(st, "https://other.example/feed", channel=C2)
    got = await st.feed_in_target(url, f"channel:{C1}", G1)
    assert got is not None and got.id == fid and got.targets == [f"channel:{C1}"]
    assert got == next(f for f in await st.list_feeds(G1) if f.id == fid)
    assert await st.feed_in_target(url, f"channel:{C2}", G1) is None  # that channel has another feed
    assert await st.feed_in_target(url, f"channel:{C1}", G2) is None  # not in that server
    assert await st.feed_in_target("https://example.com/FEED.xml", f"channel:{C1}", G1) is None  # URLs are exact
    assert (await st.feed_in_target(url, f"channel:{C1}")) is not None  # every server
    assert await st.remove_subscriptions(fid, G1) == 1
    assert await st.feed_in_target(url, f"channel:{C1}", G1) is None


async def test_discord_feed_count_counts_what_the_quota_counts(backend: Backend) -> None:
    st = backend.storage
    a = await channel_feed(st, "https://a.example/feed")
    await channel_feed(st, "https://b.example/feed", channel=C2)
    await channel_feed(st, "https://c.example/feed", guild=G2)  # another server's
    # a config feed in the server is not the server's own, even with a Discord subscription beside it
    await st.sync_config_feeds([FeedConfig(url="https://a.example/feed", name="cfg", channels=(C3,), guild_id=G1),
                                FeedConfig(url="https://d.example/feed", name="d", channels=(C3,), guild_id=G1)], NOW)
    for guild in (G1, G2):
        scanned = len([f for f in await st.list_feeds(guild) if f.source != "config"])
        assert await st.discord_feed_count(guild) == scanned
    assert await st.discord_feed_count(G1) == 1  # b only: a is also in the config file
    await st.sync_config_feeds([], NOW + 1)  # the file drops them: a is the server's own again
    assert await st.discord_feed_count(G1) == 2
    assert await st.remove_subscriptions(a, G1) == 1
    assert await st.discord_feed_count(G1) == 1
    assert await st.discord_feed_count(333) == 0


async def _columns(backend: Backend) -> dict[str, list[str]]:
    st = backend.storage
    if backend.kind == "sqlite":
        tables = [r[0] for r in await st.db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'entries_fts%'"
            " AND name NOT LIKE 'sqlite_%'")]
        return {t: sorted(r[1] for r in await st.db.fetchall(f"PRAGMA table_info({t})")) for t in tables}
    rows = await st.db.fetchall(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name <> 'herald_schema' AND column_name <> 'search_vector'"
    )
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return {t: sorted(c) for t, c in out.items()}


# the tables as bot/storage/schema.py defines them (search structures aside): both databases have exactly these
_TABLES = {
    "feeds": ["backfill", "body_hash", "created", "error_count", "etag", "first_error_at", "id", "image", "interval",
              "last_error", "last_fetch", "last_modified", "last_status", "last_success", "lease_until", "link",
              "max_per_poll", "name", "next_fetch", "pause_reason", "paused", "source", "title", "url"],
    "subscriptions": ["active", "created", "feed_id", "guild_id", "id", "name", "options", "pause_reason", "paused",
                      "source", "target"],
    "entries": ["author", "feed_id", "first_seen", "id", "image", "key", "link", "link_key", "published", "summary",
                "thumbnail", "title", "updated"],
    "deliveries": ["attempts", "created", "entry_id", "entry_ids", "error", "id", "kind", "lease_until", "message_id",
                   "next_attempt", "sent_at", "state", "subscription_id", "target"],
    "kv": ["key", "value"],
}


async def test_both_databases_build_the_one_schema(backend: Backend) -> None:
    assert await _columns(backend) == _TABLES


def test_the_schema_is_written_once_and_spelled_per_database() -> None:
    from bot.storage.schema import MIGRATIONS, POSTGRES, SQLITE

    sqlite_sql, pg_sql = SQLITE.migrations(), POSTGRES.migrations()
    assert len(sqlite_sql) == len(pg_sql) == len(MIGRATIONS) == len(SQLITE_MIGRATIONS)
    assert "$" not in "".join(sqlite_sql) + "".join(pg_sql)  # every ${name} substituted
    assert "GENERATED BY DEFAULT AS IDENTITY" in pg_sql[0] and "DOUBLE PRECISION" in pg_sql[0]
    assert "fts5" in sqlite_sql[0] and "tsvector" not in sqlite_sql[0] and "fts5" not in pg_sql[0]
    # one definition: what is not a substitution is the same text on both
    import re

    strip = re.compile(r"\$\{\w+\}")
    for template in MIGRATIONS:
        for part in strip.split(template):
            assert part in sqlite_sql[MIGRATIONS.index(template)] and part in pg_sql[MIGRATIONS.index(template)]


def test_apply_poll_awaits_only_the_connection() -> None:
    """The rule stated at :func:`bot.storage.polling.apply_poll`: on SQLite it runs on the database
    thread with no event loop, so an await of anything but ``tx`` would fail there (not on PostgreSQL)."""
    import ast
    import inspect
    import textwrap

    from bot.storage import polling

    tree = ast.parse(textwrap.dedent(inspect.getsource(polling.apply_poll)))
    awaits = [n for n in ast.walk(tree) if isinstance(n, ast.Await)]
    assert awaits  # the function writes through tx
    for node in awaits:
        call = node.value
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), ast.unparse(node)
        assert isinstance(call.func.value, ast.Name) and call.func.value.id == "tx", ast.unparse(node)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.AsyncFor, ast.AsyncWith))]
    # and the batch is written through run_transaction on both backends
    source = inspect.getsource(polling.SqlPolling.apply_polls)
    assert "run_transaction" in source and ".transaction()" not in source


async def test_sqlite_refuses_a_poll_write_that_awaits_something_else(tmp_path: Any) -> None:
    st = SQLiteStorage(str(tmp_path / "h.db"))
    await st.open()
    try:
        async def body(tx: Any) -> None:
            await tx.execute("INSERT INTO kv (key, value) VALUES ('a', 'b')")
            await asyncio.sleep(0)  # anything but the connection

        with pytest.raises(RuntimeError, match="tried to wait for something else"):
            await st.db.run_transaction(body)
        assert await st.get_meta("a") is None  # rolled back
    finally:
        await st.close()


async def test_search_is_the_backend_component(backend: Backend) -> None:
    from bot.storage.base import SearchPage

    st = backend.storage
    expected = "Fts5Search" if backend.kind == "sqlite" else "PostgresSearch"
    assert type(st.search_index).__name__ == expected

    class Fixed:
        async def search(self, query: str, **kw: Any) -> SearchPage:
            return SearchPage(42, [])

    composed = SqlStorage(st.db, st.dialect, Fixed())  # type: ignore[arg-type]
    assert (await composed.search("anything", guild_id=G1)).total == 42
