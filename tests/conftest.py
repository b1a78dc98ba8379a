"""Shared fixtures. Keep this small: helpers used by one test file live in that file."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
if str(ROOT) not in sys.path:  # `import bot` and `import tests.x` also under a bare `pytest`
    sys.path.insert(0, str(ROOT))

from tests.feedserver import FeedServer  # noqa: E402

FEEDS_DIR = TESTS_DIR / "feeds"
SEED_FEED = FEEDS_DIR / "seed-vsoch.rss.xml"


@pytest.fixture(scope="session")
def seed_bytes() -> bytes:
    """The seed feed: vsoch.github.io's RSS, 10 posts (see tests/feeds/README.md)."""
    return SEED_FEED.read_bytes()


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    """A started :class:`tests.feedserver.FeedServer` on 127.0.0.1, closed after the test."""
    server = FeedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Writes a config TOML (dedented) into tmp_path and returns its path."""

    def write(text: str, name: str = "herald.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
