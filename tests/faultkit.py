"""Shared pieces of the fault tests: their Herald config, a log waiter, and the ledger that
records what each fault test measured (the clock and the sink are tests.support's).

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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.config import Config
from tests.support import make_config

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


class LogWaiter(logging.Handler):
    """Lets a test wait for a log record (from any thread) instead of polling for it."""

    def __init__(self, logger: str = "herald") -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._logger = logging.getLogger(logger)

    def __enter__(self) -> LogWaiter:
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
    """The fault tests' config: :func:`tests.support.make_config` with short timeouts, a 1 MB cap and
    many requests in flight (so that a fault shows within a test's time), over ``polling``."""
    sections: dict[str, Any] = {"polling": {**FAULT_POLLING, **(polling or {})},
                                "storage": {"url": f"sqlite:///{tmp_path / db}"}}
    if discord:
        sections["discord"] = discord
    return make_config(tmp_path, feeds, **sections)


FAULT_POLLING: dict[str, Any] = {
    "interval": "10m", "timeout": "1s", "max_bytes": "1MB", "concurrency": 16, "per_host": 8,
}
