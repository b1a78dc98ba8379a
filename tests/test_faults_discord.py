"""Discord-side faults with the real bot against the fake Discord: where notices go, broken
channels (one notice, no retrying forever), and a long outage with gateway drops."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from bot.app import Herald
from tests.discord_harness import running_bot
from tests.faultkit import herald_config, record, tally
from tests.support import TOKEN, Clock, RecordingSink, make_config
from tests.fakediscord import FakeDiscord
from tests.feedgen import numbered_items, write_feed
from tests.hostile import server  # noqa: F401 - the fixture

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser"),
              pytest.mark.usefixtures("token_env")]  # the configs read $HERALD_TEST_TOKEN

MESSAGES = "POST /channels/{channel_id}/messages"


@pytest.fixture
def fake_message_rate() -> tuple[int, float]:
    return (50, 1.0)  # the bot sends many messages here: not a rate-limit test


def alerts_in(fake: FakeDiscord, channel: int) -> list[dict]:
    """Notices are plain-content messages; announcements are embeds."""
    return [m for m in fake.messages(channel) if not m.get("embeds")]


def announcements_in(fake: FakeDiscord, channel: int) -> list[str]:
    return [m["embeds"][0]["title"] for m in fake.messages(channel) if m.get("embeds")]


async def test_pause_notice_goes_to_the_feeds_alerts_channel_then_the_global_one(tmp_path, fake, server):
    guild = fake.add_guild()
    news, own_alerts, global_alerts = (fake.add_channel(guild, n) for n in ("news", "feed-alerts", "ops"))
    server.error("/gone-a.xml", 410)
    server.error("/gone-b.xml", 410)
    config = make_config(tmp_path, [
        {"url": server.url("/gone-a.xml"), "name": "alpha", "channels": [news], "alerts_channel": own_alerts},
        {"url": server.url("/gone-b.xml"), "name": "beta", "channels": [news]},
    ], fake=fake, discord={"alerts_channel": global_alerts})
    async with running_bot(config, TOKEN):
        await fake.wait_until(lambda: alerts_in(fake, own_alerts) and alerts_in(fake, global_alerts), timeout=20,
                              what="both pause notices")
    [a] = alerts_in(fake, own_alerts)
    [b] = alerts_in(fake, global_alerts)
    assert "**alpha** was paused" in a["content"] and "HTTP 410" in a["content"]
    assert "`/feed resume`" in a["content"] and "`herald feeds resume alpha`" in a["content"]
    assert "**beta** was paused" in b["content"]
    assert fake.messages(news) == []
    for r in fake.requests_to(MESSAGES):
        assert r.json["allowed_mentions"] == {"parse": []}


async def test_pause_notice_without_alerts_channels_goes_to_the_feeds_first_channel(tmp_path, fake, server):
    guild = fake.add_guild()
    first, second = fake.add_channel(guild, "first"), fake.add_channel(guild, "second")
    server.error("/gone.xml", 410)
    config = make_config(tmp_path, [{"url": server.url("/gone.xml"), "name": "gamma", "channels": [first, second]}], fake=fake)
    async with running_bot(config, TOKEN):
        await fake.wait_for_messages(first, 1, timeout=20)
    [notice] = alerts_in(fake, first)
    assert "**gamma** was paused" in notice["content"]
    assert fake.messages(second) == []


async def test_deleted_and_forbidden_channels_pause_with_one_notice_each_and_are_not_retried(tmp_path, fake):
    guild = fake.add_guild()
    good, muted, gone = (fake.add_channel(guild, n) for n in ("good", "muted", "gone"))
    path = tmp_path / "f.xml"
    url = write_feed(path, numbered_items(2))
    config = make_config(tmp_path, [{"url": url, "name": "delta", "channels": [good, muted, gone],
                                           "backfill": 2}], fake=fake)
    async with running_bot(config, TOKEN) as bot:
        for ch in (good, muted, gone):
            await fake.wait_for_messages(ch, 2, timeout=20)
        fake.set_bot_permissions(muted, ["view_channel"])
        fake.delete_channel(gone)
        for n in range(3, 7):  # four more polls with a new entry each
            write_feed(path, numbered_items(n))
            await bot.herald.run_once()
        await fake.wait_until(lambda: len(announcements_in(fake, good)) == 6 and len(alerts_in(fake, good)) == 2,
                              timeout=20, what="six announcements and two notices in #good")
        subs = {s.target: s for s in await bot.storage.subscriptions()}
    notices = [m["content"] for m in alerts_in(fake, good)]
    assert sorted(("muted" if f"<#{muted}>" in t else "gone") for t in notices) == ["gone", "muted"]
    assert all("Stopped announcing **delta**" in t and "`/feed resume`" in t for t in notices)
    assert any("403" in t for t in notices) and any("404" in t for t in notices)
    assert subs[f"channel:{muted}"].paused and subs[f"channel:{gone}"].paused
    # one refused attempt each, then nothing more however many entries followed
    assert len([r for r in fake.requests_to(MESSAGES) if r.path == f"/channels/{muted}/messages" and r.status == 403]) == 1
    assert len([r for r in fake.requests if r.path.startswith(f"/channels/{gone}") and r.status == 404]) <= 2
    assert announcements_in(fake, good) == [f"Post {i}" for i in range(6)]

    # a restart: the paused targets stay paused and nobody is told twice
    async with running_bot(config, TOKEN) as bot:
        write_feed(path, numbered_items(7))
        await bot.herald.run_once()
        await fake.wait_until(lambda: len(announcements_in(fake, good)) == 7, timeout=20, what="the seventh post")
    assert len(alerts_in(fake, good)) == 2
    lost, duplicated = tally(Counter(announcements_in(fake, good)),
                             [f"Post {i}" for i in range(7)])
    assert (lost, duplicated) == (0, 0)
    record("channel deleted / permission lost mid-run", area="discord", runs=2, lost=lost, duplicated=duplicated,
           outcome="subscription paused after one refused send; one notice each in a working channel; not retried")


async def test_channel_deleted_while_herald_was_down_gets_one_notice_at_startup(tmp_path, fake):
    guild = fake.add_guild()
    good, doomed = fake.add_channel(guild, "good"), fake.add_channel(guild, "doomed")
    url = write_feed(tmp_path / "f.xml", numbered_items(1))
    config = make_config(tmp_path, [{"url": url, "name": "eps", "channels": [doomed, good], "backfill": 1}], fake=fake)
    async with running_bot(config, TOKEN):
        await fake.wait_for_messages(good, 1, timeout=20)
        await fake.wait_for_messages(doomed, 1, timeout=20)
    fake.delete_channel(doomed)
    for _ in range(2):  # two restarts: the first notices and pauses, the second stays quiet
        async with running_bot(config, TOKEN) as bot:  # yields once the startup check has run
            assert bot.targets_checked.is_set()
            subs = {s.target: s for s in await bot.storage.subscriptions()}
            assert subs[f"channel:{doomed}"].paused and not subs[f"channel:{good}"].paused
    [notice] = alerts_in(fake, good)
    assert f"<#{doomed}>" in notice["content"] and "does not exist" in notice["content"]
    record("channel deleted while Herald was down", area="discord", runs=2, lost=0, duplicated=0,
           outcome="the startup check pauses it with one notice in a working channel; the next start stays quiet")


async def test_ten_minute_discord_outage_with_gateway_drops_then_everything_once(tmp_path, fake):
    """503 on every message for 10 minutes of simulated time, the gateway dropped repeatedly:
    once Discord is back, every entry arrives exactly once, in order."""
    guild = fake.add_guild()
    channel = fake.add_channel(guild, "news")
    url = write_feed(tmp_path / "f.xml", numbered_items(12))
    config = make_config(tmp_path, [{"url": url, "channels": [channel], "backfill": 12, "max_per_poll": 20}], fake=fake)
    clock = Clock()
    fake.fail_next(10**6, status=503, route=MESSAGES)
    async with running_bot(config, TOKEN, clock=clock) as bot:
        await fake.wait_for_request(MESSAGES, 1, timeout=20, status=503)
        started = clock()
        drops = 0
        while clock() - started < 600:
            clock.advance(30)
            await bot.herald.worker.deliver_due()
            if int(clock() - started) % 120 == 0:
                before = len(fake.resumes) + len(fake.identifies)
                await fake.drop_gateway()
                drops += 1
                await fake.wait_until(lambda: len(fake.resumes) + len(fake.identifies) > before, timeout=20,
                                      what="the bot reconnecting")
        refused = fake.count_status(503)
        assert fake.messages(channel) == [] and refused >= 5
        fake.clear_faults()  # Discord is back
        clock.advance(700)  # past the longest delivery backoff
        bot.herald.worker.wake()
        await bot.herald.worker.deliver_due()
        await fake.wait_for_messages(channel, 12, timeout=30)
        pending = (await bot.storage.delivery_counts())["pending"]
    titles = announcements_in(fake, channel)
    assert titles == [f"Post {i}" for i in range(12)] and pending == 0
    lost, duplicated = tally(Counter(titles), [f"Post {i}" for i in range(12)])
    record("Discord 5xx for 10 min (simulated) + gateway drops", area="discord", runs=refused, lost=lost,
           duplicated=duplicated, outcome=f"{refused} refused sends retried with backoff, {drops} gateway drops resumed;"
           " all delivered once, in order")


async def test_an_unexpected_error_in_the_sink_is_logged_and_retried_not_swallowed(tmp_path, caplog):
    """A sink bug (here a KeyError, as a 200 answer without an id would give) used to end the
    target's task silently: no log, the delivery left leased, the channel stalled."""
    caplog.set_level(logging.ERROR, logger="herald.deliver")
    clock, sink = Clock(), RecordingSink()
    failures = [KeyError("id")]

    def fail(claimed):
        if failures:
            raise failures.pop()

    sink.fail = fail
    url = write_feed(tmp_path / "f.xml", numbered_items(2))
    config = herald_config(tmp_path, [{"url": url, "name": "f", "channels": [1001], "backfill": 2}])
    async with Herald(config, sink, clock=clock, parse_inline=True) as herald:
        await herald.poller.poll_due()
        await herald.worker.deliver_due()
        assert sink.messages == []
        [rec] = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
        assert rec.exc_info and rec.exc_info[0] is KeyError
        clock.advance(5)
        await herald.worker.deliver_due()
        counts = await herald.storage.delivery_counts()
    assert [m.titles[0] for m in sink.messages] == ["Post 0", "Post 1"]
    assert counts["pending"] == 0 and counts["sent"] == 2
    record("the sink raises an unexpected exception", area="discord", runs=1, lost=0, duplicated=0,
           outcome="logged with its traceback, recorded on the delivery, retried with backoff")
