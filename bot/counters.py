"""What the pipeline reports to: :class:`bot.metrics.Metrics`, or nothing."""

from __future__ import annotations

from typing import Protocol


class Counters(Protocol):
    def count(self, name: str, label: str = "", amount: float = 1) -> None: ...
    def observe(self, name: str, value: float) -> None: ...


class NoCounters:
    """Counts nothing: for the CLI's one-off commands and for tests."""

    def count(self, name: str, label: str = "", amount: float = 1) -> None:
        pass

    def observe(self, name: str, value: float) -> None:
        pass
