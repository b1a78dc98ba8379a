"""The ops server: /healthz and /metrics, in-process (a Herald with a test sink) and on a running
bot against the fake Discord."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import Herald
from bot.errors import PermanentDeliveryError, TransientDeliveryError
from bot.metrics import Metrics
from bot.ops import OpsServer, scheduler_bound
from tests.discord_harness import running_bot
from tests.support import TOKEN, Clock, RecordingSink, make_config
from tests.fakediscord import FakeDiscord
from tests.feedgen import numbered_items, write_feed

pytestmark = pytest.mark.usefixtures("token_env")  # the configs read $HERALD_TEST_TOKEN
ROOT = Path(__file__).parent.parent


# --- helpers ------------------------------------------------------------------------------------


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            return resp.status, await resp.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


async def scrape(ops: OpsServer) -> dict:
    status, text = await fetch(ops.url + "/metrics")
    assert status == 200
    return samples(text)


async def wait_for_endpoint(url: str, predicate: Callable[[int, str], bool], *, timeout: float = 15.0,
                            what: str = "the endpoint") -> tuple[int, str]:
    """Asks ``url`` until ``predicate(status, body)`` holds; fails after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, body = await fetch(url)
        if predicate(status, body):
            return status, body
        if loop.time() > deadline:
            raise AssertionError(f"{what}: still {status} {body[:300]} after {timeout}s")
        await asyncio.sleep(0.05)


def scripted(script: dict[int, Exception]) -> RecordingSink:
    """A RecordingSink whose nth send raises ``script[n]`` (counted from 1)."""
    sink = RecordingSink()

    def fail(claimed: Any) -> None:
        exc = script.get(sink.attempts)
        if exc is not None:
            raise exc

    sink.fail = fail
    return sink


def _config(tmp_path: Path, feeds: list[dict[str, Any]], **polling: Any):
    return make_config(tmp_path, feeds, polling=polling, http={"listen": "127.0.0.1:0"})


# --- in-process: a Herald with a scripted sink ----------------------------------------------------


async def test_metrics_follow_polls_storage_and_deliveries(tmp_path):
    path = tmp_path / "f.xml"
    url = write_feed(path, numbered_items(3))
    config = _config(tmp_path, [{"url": url, "name": "f", "channels": [1], "backfill": 3}])
    sink = scripted({2: TransientDeliveryError("flaky", retry_after=0.0)})
    async with Herald(config, sink, parse_inline=True, metrics=Metrics()) as herald:
        async with OpsServer(herald, config.http.listen) as ops:
            assert ops.port > 0 and ops.url.endswith(f":{ops.port}")
            before = await scrape(ops)
            assert value(before, "herald_polls_total", outcome="200") == 0
            assert value(before, "herald_delivery_queue_depth") == 0

            await herald.poller.poll_due(everything=True)
            polled = await scrape(ops)
            assert value(polled, "herald_polls_total", outcome="200") == 1
            assert value(polled, "herald_entries_stored_total") == 3
            assert value(polled, "herald_parse_seconds_count") == 1
            assert value(polled, "herald_fetch_seconds_count") == 1
            assert value(polled, "herald_delivery_queue_depth") == 3  # nothing sent yet
            assert value(polled, "herald_delivery_oldest_pending_seconds") >= 0
            assert value(polled, "herald_last_poll_cycle_timestamp_seconds") == herald.poller.last_cycle

            # the same body again: "unchanged", nothing stored
            await herald.poller.poll_due(everything=True)
            # deliver: the 2nd send fails once (retry), the rest go out
            await herald.worker.deliver_due()
            mid = await scrape(ops)
            assert value(mid, "herald_polls_total", outcome="unchanged") == 1
            assert value(mid, "herald_entries_stored_total") == 3
            assert value(mid, "herald_announcements_total", outcome="sent") == 1
            assert value(mid, "herald_announcements_total", outcome="retry") == 1
            assert value(mid, "herald_delivery_queue_depth") == 2  # the retried one and the one behind it

            herald.clock = lambda: 4_000_000_000.0  # the retry is due
            herald.worker.clock = herald.clock
            await herald.worker.deliver_due()
            after = await scrape(ops)
            assert value(after, "herald_announcements_total", outcome="sent") == 3
            assert value(after, "herald_delivery_queue_depth") == 0
            assert value(after, "herald_delivery_oldest_pending_seconds") == 0
            assert value(after, "herald_delivery_seconds_count") == 3
            assert sink.titles == ["Post 0", "Post 1", "Post 2"]


async def test_failed_announcements_and_paused_feeds_are_counted(tmp_path):
    clock = Clock()
    good = write_feed(tmp_path / "g.xml", numbered_items(2))
    config = _config(tmp_path, [
        {"url": good, "name": "good", "channels": [1], "backfill": 2},
        {"url": (tmp_path / "missing.xml").as_uri(), "name": "broken", "channels": [1]},
    ], pause_after="1h")
    sink = scripted({1: PermanentDeliveryError("Discord said no", status=400)})
    async with Herald(config, sink, parse_inline=True, clock=clock, metrics=Metrics()) as herald:
        async with OpsServer(herald, config.http.listen) as ops:
            await herald.poller.poll_due(everything=True)
            await herald.worker.deliver_due()
            first = await scrape(ops)
            assert value(first, "herald_polls_total", outcome="error") == 1
            assert value(first, "herald_announcements_total", outcome="failed") == 1
            assert value(first, "herald_announcements_total", outcome="sent") == 1
            assert value(first, "herald_deliveries_failed") == 1
            assert value(first, "herald_feeds", state="paused") == 0
            assert value(first, "herald_feeds", state="active") == 2

            clock.now += 2 * 3600  # still failing after pause_after: Herald pauses the feed
            await herald.poller.poll_due(everything=True)
            second = await scrape(ops)
            assert value(second, "herald_polls_total", outcome="error") == 2
            assert value(second, "herald_feed_pauses_total") == 1
            assert value(second, "herald_feeds", state="paused") == 1
            assert value(second, "herald_feeds", state="active") == 1


async def test_healthz_reports_storage_and_scheduler(tmp_path):
    clock = Clock()
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = _config(tmp_path, [{"url": url, "channels": [1]}], timeout="10s")
    bound = scheduler_bound(config)
    assert bound == 30 + 2 * (3 * 10 + 60 + 3 * 15)  # 15 s: the default [polling] parse_timeout
    herald = Herald(config, RecordingSink(), parse_inline=True, clock=clock, metrics=Metrics())
    await herald.open()
    try:
        async with OpsServer(herald, config.http.listen) as ops:
            health = ops.url + "/healthz"
            status, body = await fetch(health)
            report = json.loads(body)
            assert status == 200, body  # no cycle yet, but just started
            assert report["status"] == "ok" and report["checks"]["storage"]["ok"]
            assert "gateway" not in report["checks"]  # no bot: a dry run

            clock.now += bound + 1  # started long ago and never finished a cycle
            status, body = await fetch(health)
            assert status == 503 and "scheduler" in json.loads(body)["reason"]

            await herald.poller.poll_due(everything=True)
            status, body = await fetch(health)
            assert status == 200, body
            assert json.loads(body)["checks"]["scheduler"]["last_cycle_age_seconds"] == 0

            clock.now += bound + 5
            status, body = await fetch(health)
            assert status == 503 and "last poll cycle finished" in json.loads(body)["reason"]
            await herald.poller.poll_due(everything=True)
            assert (await fetch(health))[0] == 200

            await herald.storage.close()
            status, body = await fetch(health)
            report = json.loads(body)
            assert status == 503 and report["status"] == "unhealthy"
            assert not report["checks"]["storage"]["ok"] and report["reason"].startswith("storage:")
            # /metrics still answers without the database
            status, _ = await fetch(ops.url + "/metrics")
            assert status == 200
    finally:
        await herald.close()


async def test_two_heralds_have_separate_registries(tmp_path):
    a, b = Metrics(), Metrics()
    a.count("poll", "200")
    a.count("entries_stored", "", 5)
    b.observe("parse_seconds", 0.5)
    sa, sb = samples(a.render().decode()), samples(b.render().decode())
    assert value(sa, "herald_polls_total", outcome="200") == 1 and value(sb, "herald_polls_total", outcome="200") == 0
    assert value(sa, "herald_entries_stored_total") == 5 and value(sb, "herald_entries_stored_total") == 0
    assert value(sb, "herald_parse_seconds_count") == 1 and value(sa, "herald_parse_seconds_count") == 0


def test_every_metric_name_the_pipeline_uses_is_defined():
    metrics = Metrics()
    names = set()
    for source in ("bot/pipeline.py", "bot/deliver.py"):
        text = (ROOT / source).read_text()
        names |= set(re.findall(r'metrics\.(?:count|observe)\("([a-z_]+)"', text))
    assert {"poll", "delivery", "entries_stored", "feed_paused", "parse_seconds", "delivery_seconds"} <= names
    assert [n for n in sorted(names) if not metrics.knows(n)] == []


async def test_port_in_use_is_a_clear_error(tmp_path):
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = _config(tmp_path, [{"url": url, "channels": [1]}])
    async with Herald(config, RecordingSink(), parse_inline=True, metrics=Metrics()) as herald:
        async with OpsServer(herald, "127.0.0.1:0") as first:
            with pytest.raises(Exception, match="cannot listen there"):
                await OpsServer(herald, f"127.0.0.1:{first.port}").start()


# --- a running bot on the fake Discord -----------------------------------------------------------


@pytest.fixture
def fake_message_rate() -> tuple[int, float]:
    return (50, 1.0)  # the bot sends many messages here: not a rate-limit test


async def test_bot_metrics_before_and_after_announcements(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    path = tmp_path / "f.xml"
    url = write_feed(path, numbered_items(2))
    config = make_config(tmp_path, [{"url": url, "name": "f", "channels": [channel], "backfill": 2}], fake=fake,
                         http={"listen": "127.0.0.1:0"})
    async with running_bot(config, TOKEN) as bot:
        ops = bot.ops
        assert ops is not None and ops.port > 0
        await fake.wait_for_messages(channel, 2, timeout=20)
        metrics_url = ops.url + "/metrics"

        def sent(n: int) -> Callable[[int, str], bool]:
            return lambda status, text: status == 200 and value(samples(text), "herald_announcements_total",
                                                                outcome="sent") == n

        _, text = await wait_for_endpoint(metrics_url, sent(2), what="2 announcements in /metrics")
        before = samples(text)
        assert value(before, "herald_polls_total", outcome="200") == 1
        assert value(before, "herald_entries_stored_total") == 2
        assert value(before, "herald_delivery_queue_depth") == 0
        assert value(before, "herald_discord_request_seconds_count") > 0
        assert value(before, "herald_discord_requests_total", status="200") > 0
        assert value(before, "herald_discord_gateway_connected") == 1
        assert value(before, "herald_discord_rate_limited_total") == 0

        write_feed(path, numbered_items(5))
        fake.rate_limit_next(1, retry_after=0.2, route="POST /channels/{channel_id}/messages")
        await bot.herald.run_once()
        await fake.wait_for_messages(channel, 5, timeout=20)
        _, text = await wait_for_endpoint(metrics_url, sent(5), what="5 announcements in /metrics")
        after = samples(text)
        assert value(after, "herald_polls_total", outcome="200") == 2
        assert value(after, "herald_entries_stored_total") == 5
        assert value(after, "herald_discord_rate_limited_total") == 1  # discord.py waited and retried it
        assert (value(after, "herald_discord_request_seconds_count")
                > value(before, "herald_discord_request_seconds_count"))
        assert value(after, "herald_delivery_queue_depth") == 0
    assert [m["embeds"][0]["title"] for m in fake.messages(channel)] == [f"Post {i}" for i in range(5)]


async def test_bot_healthz_follows_gateway_and_storage(tmp_path, fake):
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = make_config(tmp_path, [{"url": url, "channels": [channel], "backfill": 1}], fake=fake,
                         http={"listen": "127.0.0.1:0"})
    async with running_bot(config, TOKEN) as bot:
        health = bot.ops.url + "/healthz"
        status, body = await wait_for_endpoint(health, lambda s, _b: s == 200, what="a healthy bot")
        report = json.loads(body)
        assert report["checks"]["gateway"]["ok"] and report["checks"]["storage"]["ok"]

        async with fake.gateway_paused():  # the gateway drops and cannot reconnect
            await fake.drop_gateway()
            status, body = await wait_for_endpoint(health, lambda s, _b: s == 503, what="503 while disconnected")
            assert "gateway" in json.loads(body)["reason"]
        await wait_for_endpoint(health, lambda s, _b: s == 200, what="healthy again after RESUME")

        await bot.storage.close()
        status, body = await fetch(health)
        assert status == 503 and json.loads(body)["reason"].startswith("storage:")
    status_after_close = None
    try:
        status_after_close, _ = await fetch(health)
    except aiohttp.ClientError:
        pass
    assert status_after_close is None  # the server stopped with the bot
