"""What the ops server's /metrics serves: Herald's Prometheus metrics, and only those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from bot.app import Herald
from bot.config import config_from_dict
from bot.counters import NoCounters
from bot.metrics import Metrics
from bot.ops import OpsServer


class _NullSink:
    async def send(self, claimed: Any, payload: dict[str, Any], nonce: str) -> str | None:
        raise AssertionError("nothing is delivered in these tests")


def _config(tmp_path: Path) -> Any:
    return config_from_dict({
        "storage": {"url": f"sqlite:///{tmp_path / 'h.db'}"},
        "http": {"listen": "127.0.0.1:0"},
    }, tmp_path / "herald.toml")


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_metrics_of_a_herald_that_counts_nothing_are_not_enabled(tmp_path):
    """A Herald whose counters are not Prometheus metrics (NoCounters) has nothing to scrape:
    /metrics says so with a 404 (it used to fail with a 500, calling refresh() on NoCounters),
    and /healthz is unaffected."""
    herald = Herald(_config(tmp_path), _NullSink(), parse_inline=True, metrics=NoCounters())
    async with herald, OpsServer(herald, "127.0.0.1:0") as ops:
        assert ops.metrics is None
        status, text = await _get(ops.url + "/metrics")
        assert (status, text) == (404, "metrics are not enabled in this process\n")
        status, _ = await _get(ops.url + "/healthz")
        assert status == 200


async def test_metrics_of_a_herald_with_prometheus_metrics_are_served(tmp_path):
    """The same server with Herald's Metrics serves them, whether given explicitly or found on the Herald."""
    metrics = Metrics()
    async with Herald(_config(tmp_path), _NullSink(), parse_inline=True, metrics=metrics) as herald:
        for ops in (OpsServer(herald, "127.0.0.1:0"), OpsServer(herald, "127.0.0.1:0", metrics=metrics)):
            async with ops:
                assert ops.metrics is metrics
                status, text = await _get(ops.url + "/metrics")
                assert status == 200
                assert "herald_info{" in text
