"""Test doubles and builders shared by the test modules: a clock, a recording sink, a config.

Each is written once here; a test module that needs other defaults passes them (a wrapper in
that module may add its own sections, e.g. the fault tests' short timeouts), rather than
writing its own copy. The fake Discord fixture (``fake``) lives in conftest.py.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from bot.config import Config, config_from_dict
from bot.storage.base import ClaimedDelivery

__all__ = ["START", "TOKEN", "TOKEN_ENV", "Clock", "RecordingSink", "Sent", "make_config", "time_bound"]

START = 1_800_000_000.0  # the injected "now" of the clock, after every generated item's date
TOKEN = "fake.bot-token.for-tests-only-0123456789"  # the bot token the fake Discord accepts
TOKEN_ENV = "HERALD_TEST_TOKEN"  # the environment variable a test config reads the token from
TRACED_SLOWDOWN = 3.0  # how much slower Python code runs under a tracer (coverage), at most


def time_bound(seconds: float) -> float:
    """A time bound that tells finished from hung or quadratic, widened when a tracer (coverage's)
    runs: traced code is a few times slower, and quadratic code is slowed as much."""
    coverage = sys.modules.get("coverage")
    traced = sys.gettrace() is not None or (coverage is not None and coverage.Coverage.current() is not None)
    return seconds * TRACED_SLOWDOWN if traced else seconds


class Clock:
    """A clock that only moves when told: ``Herald(clock=...)``, the poller, the worker, storage times."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, when: float) -> float:
        """Moves to ``when``, never back."""
        self.now = max(self.now, when)
        return self.now


@dataclass
class Sent:
    target: str
    kind: str  # "entry" or "digest"
    keys: tuple[str, ...]
    titles: tuple[str, ...]
    payload: dict[str, Any]
    nonce: str
    feed_id: int


@dataclass
class RecordingSink:
    """A Sink that records announcements the way Discord shows them: a send with a nonce it
    has seen returns the first message again (enforce_nonce), so a resend after a crash or a
    failed write is not a second message.

    ``fail`` (when set) is an exception every send raises, or a function called with each
    claimed delivery before it is sent, which may raise a delivery error to simulate an outage.
    ``wait_until`` lets a test wait for messages without sleeping."""

    messages: list[Sent] = field(default_factory=list)
    attempts: int = 0
    deduplicated: int = 0
    fail: BaseException | Callable[[ClaimedDelivery], None] | None = None
    _by_nonce: dict[tuple[str, str], str] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Waits until ``predicate()`` holds, re-checked after every message."""
        async def check() -> None:
            while not predicate():
                self._changed = asyncio.Event()
                await self._changed.wait()

        await asyncio.wait_for(check(), timeout)

    async def send(self, claimed: ClaimedDelivery, payload: dict[str, Any], nonce: str) -> str | None:
        self.attempts += 1
        if isinstance(self.fail, BaseException):
            raise self.fail
        if self.fail is not None:
            self.fail(claimed)
        target = claimed.subscription.target
        if (target, nonce) in self._by_nonce:
            self.deduplicated += 1
            return self._by_nonce[(target, nonce)]
        self.messages.append(Sent(
            target=target, kind=claimed.delivery.kind, keys=tuple(e.key for e in claimed.entries),
            titles=tuple(e.title for e in claimed.entries), payload=payload, nonce=nonce,
            feed_id=claimed.subscription.feed_id,
        ))
        mid = f"message-{len(self.messages)}"
        self._by_nonce[(target, nonce)] = mid
        self._changed.set()
        return mid

    @property
    def titles(self) -> list[str]:
        """Every announced entry's title, in the order sent (digests included)."""
        return [t for m in self.messages for t in m.titles]

    def to(self, target: str) -> list[Sent]:
        return [m for m in self.messages if m.target == target]

    def announced(self, target: str) -> Counter[str]:
        """How often each entry title was announced in ``target`` (one by one or in a digest)."""
        c: Counter[str] = Counter()
        for m in self.to(target):
            c.update(m.titles)
        return c


def make_config(tmp_path: Path, feeds: list[dict[str, Any]], *, fake: Any = None, channels: list[int] | None = None,
                **sections: dict[str, Any]) -> Config:
    """A checked Config: SQLite in ``tmp_path``, a 10-minute interval and a 5 s timeout.

    ``fake`` (a FakeDiscord) adds the [discord] section that points the bot at it, with the
    token read from $HERALD_TEST_TOKEN; ``channels`` is given to the feeds that name none; each
    keyword section (``polling={...}``, ``http={...}``) is merged over the defaults."""
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path / 'herald.db'}"},
        "polling": {"interval": "10m", "timeout": "5s"},
        "feeds": [{"channels": channels, **f} for f in feeds] if channels is not None else feeds,
    }
    if fake is not None:
        data["discord"] = {"token_env": TOKEN_ENV, "api_base": fake.api_base, "gateway_url": fake.gateway_url}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return config_from_dict(data, tmp_path / "herald.toml")
