"""Shared fixtures. Keep this small: helpers used by one test file live in that file."""

from __future__ import annotations

import gc
import logging
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
if str(ROOT) not in sys.path:  # `import bot` and `import tests.x` also under a bare `pytest`
    sys.path.insert(0, str(ROOT))

from tests.feedserver import FeedServer  # noqa: E402
from tests.support import TOKEN, TOKEN_ENV  # noqa: E402

# Fixtures that several modules use, offered to all of them from here (a module that imported one
# and named it as a parameter would shadow its own import): the misbehaving feed server, and the
# storage backend fixture that runs a test on SQLite and on PostgreSQL.
from tests.hostile import server  # noqa: E402, F401
from tests.test_storage_contract import backend  # noqa: E402, F401

pytest_plugins = ("pytester",)  # tests/test_first_hour.py runs the unclosed-session check on a leaking test

# What aiohttp logs (through asyncio's exception handler) for a session or connector that was
# garbage-collected without being closed. Subprocess tests check their stderr for the same.
UNCLOSED_MARKERS = ("Unclosed client session", "Unclosed connector")


def unclosed_resources(text: str) -> list[str]:
    """The lines of ``text`` (a log or a process's stderr) that report an unclosed aiohttp session."""
    return [line for line in text.splitlines() if any(m in line for m in UNCLOSED_MARKERS)]


class _UnclosedRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record with bad arguments is not this check's business
            return
        if unclosed_resources(text):
            self.found.append(text.splitlines()[0])


@pytest.fixture(autouse=True)
def no_unclosed_sessions(request: pytest.FixtureRequest):
    """Fails any test after which an aiohttp session or connector was left unclosed.

    Autouse fixtures are set up before the test's event loop and torn down after it, so the
    collection below also finds sessions that only the closed loop still referenced."""
    recorder = _UnclosedRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        yield recorder
        gc.collect()
    finally:
        root.removeHandler(recorder)
    if recorder.found and not request.node.get_closest_marker("allow_unclosed"):
        pytest.fail("an aiohttp session or connector was not closed: " + "; ".join(recorder.found), pytrace=False)


FEEDS_DIR = TESTS_DIR / "feeds"
SEED_FEED = FEEDS_DIR / "seed-vsoch.rss.xml"


@pytest.fixture(scope="session")
def seed_bytes() -> bytes:
    """The seed feed: vsoch.github.io's RSS, 10 posts (see tests/feeds/README.md)."""
    return SEED_FEED.read_bytes()


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    """A started :class:`tests.feedserver.FeedServer` on 127.0.0.1, closed after the test."""
    feeds = FeedServer()
    await feeds.start()
    try:
        yield feeds
    finally:
        await feeds.close()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Writes a config TOML (dedented) into tmp_path and returns its path."""

    def write(text: str, name: str = "herald.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


FAKE_MESSAGE_RATE = (5, 0.5)  # messages per channel per seconds: tight, so that tests meet 429s


@pytest.fixture
def fake_message_rate() -> tuple[int, float]:
    """The fake Discord's message rate limit; a module that needs another overrides this fixture."""
    return FAKE_MESSAGE_RATE


@pytest.fixture
async def fake(fake_message_rate: tuple[int, float]) -> AsyncIterator[Any]:
    """A started :class:`tests.fakediscord.FakeDiscord` that accepts ``tests.support.TOKEN``."""
    from tests.fakediscord import FakeDiscord

    async with FakeDiscord(token=TOKEN, message_rate=fake_message_rate) as f:
        yield f


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Puts the fake Discord's token in $HERALD_TEST_TOKEN, where a test config reads it."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return TOKEN
