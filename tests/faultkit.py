"""Shared pieces of the fault tests: a simulated clock, a sink that behaves like Discord,
Herald set-up, and the ledger that records what each fault test measured.

The ledger: every fault test calls :func:`record` with how many times it exercised its
fault and how many entries it lost or announced twice. With ``HERALD_FAULT_REPORT`` set to a
file path, each call appends one JSON line there; ``python -m tests.faultreport FILE``
turns the lines into the table of docs/RELIABILITY.md. Without the variable nothing is
written (the tests assert the same figures anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from bot import notices
from bot.config import Config, config_from_dict
from bot.storage.base import ClaimedDelivery

REPORT_ENV = "HERALD_FAULT_REPORT"
_report_lock = threading.Lock()


def record(fault: str, *, area: str, runs: int, lost: int, duplicated: int, outcome: str) -> None:
    """Appends one measured row to $HERALD_FAULT_REPORT (JSON lines), when that is set."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    row = {"fault": fault, "area": area, "runs": runs, "lost": lost, "duplicated": duplicated, "outcome": outcome,
           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with _report_lock, open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")


class SimClock:
    """A clock that only moves when told: Herald(clock=...), Poller, DeliveryWorker, storage times."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, when: float) -> float:
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
class RecordingNotifier:
    """A Notifier (bot.notices) that keeps each notice as (kind, feed id, the text Discord would show)."""

    alerts: list[tuple[str, int | None, str]] = field(default_factory=list)

    async def notify(self, notice: notices.Notice) -> None:
        self.alerts.append((notice.kind, notice.feed_id, notices.text(notice)))


@dataclass
class RecordingSink:
    """A Sink that records announcements the way Discord shows them: a send with a nonce it
    has seen returns the first message again (enforce_nonce), so a resend after a crash or a
    failed write is not a second message. ``fail`` (when set) is called before each send and
    may raise a delivery error to simulate an outage."""

    messages: list[Sent] = field(default_factory=list)
    attempts: int = 0
    deduplicated: int = 0
    fail: Callable[[ClaimedDelivery], None] | None = None
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
        mid = str(len(self.messages))
        self._by_nonce[(target, nonce)] = mid
        self._changed.set()
        return mid

    def to(self, target: str) -> list[Sent]:
        return [m for m in self.messages if m.target == target]

    def announced(self, target: str) -> Counter[str]:
        """How often each entry title was announced in ``target`` (one by one or in a digest)."""
        c: Counter[str] = Counter()
        for m in self.to(target):
            c.update(m.titles)
        return c


class LogWaiter(logging.Handler):
    """Lets a test wait for a log record (from any thread) instead of polling for it."""

    def __init__(self, logger: str = "herald") -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._logger = logging.getLogger(logger)

    def __enter__(self) -> "LogWaiter":
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._loop.call_soon_threadsafe(self._changed.set)

    def messages(self, containing: str) -> list[str]:
        return [r.getMessage() for r in self.records if containing in r.getMessage()]

    async def wait_for(self, containing: str, timeout: float = 20.0) -> str:
        async def check() -> str:
            while True:
                found = self.messages(containing)
                if found:
                    return found[0]
                self._changed = asyncio.Event()
                await self._changed.wait()

        return await asyncio.wait_for(check(), timeout)


def tally(announced: Counter[str], expected: Iterable[str]) -> tuple[int, int]:
    """(lost, duplicated): expected titles never announced, and extra announcements of any title."""
    wanted = set(expected)
    lost = sum(1 for t in wanted if announced[t] == 0)
    duplicated = sum(n - 1 for n in announced.values() if n > 1)
    return lost, duplicated


def herald_config(tmp_path: Path, feeds: list[dict[str, Any]], *, polling: dict[str, Any] | None = None,
                  discord: dict[str, Any] | None = None, db: str = "herald.db") -> Config:
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path / db}"},
        "polling": {"interval": "10m", "timeout": "1s", "max_bytes": "1MB", "concurrency": 16, "per_host": 8,
                    **(polling or {})},
        "feeds": feeds,
    }
    if discord:
        data["discord"] = discord
    return config_from_dict(data, tmp_path / "herald.toml")
