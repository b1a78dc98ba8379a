"""Failing feeds made visible: capped exponential backoff with jitter, Retry-After honoured,
auto-pause after polling.pause_after with one notice, and a clean recovery after resume."""

from __future__ import annotations

import argparse
import logging
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli import _feeds
from bot.schedule import JITTER, MIN_RETRY, next_fetch
from tests import hostile
from tests.faultkit import record, tally
from tests.hostile import server  # noqa: F401 - the fixture
from tests.test_faults import VICTIM, Rig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser")


@settings(max_examples=300, deadline=None)
@given(
    interval=st.floats(1, 86400), errors=st.integers(1, 80), max_backoff=st.floats(60, 7 * 86400),
    seed=st.integers(0, 2**32), retry_after=st.one_of(st.none(), st.floats(0, 30 * 86400)),
)
def test_backoff_is_capped_jittered_and_floored_by_retry_after(interval, errors, max_backoff, seed, retry_after):
    now = 1_000_000.0
    delay = next_fetch(now, interval, errors=errors, max_backoff=max_backoff, retry_after=retry_after,
                       rng=random.Random(seed)) - now
    base = min(max_backoff, max(MIN_RETRY, interval) * 2 ** min(errors - 1, 30))
    if retry_after is None:
        assert delay <= max_backoff
        assert base * (1 - JITTER) - 1e-6 <= delay <= base * (1 + JITTER) + 1e-6
    else:
        assert delay >= min(retry_after, 7 * 86400.0) - 1e-6


def test_backoff_doubles_until_the_cap_and_spreads_feeds_apart():
    rng = random.Random(7)
    medians = []
    for errors in range(1, 12):
        delays = sorted(next_fetch(0, 600, errors=errors, max_backoff=4 * 3600, rng=rng) for _ in range(200))
        medians.append(delays[100])
        assert len({round(d) for d in delays}) > 50  # jitter: failing feeds do not retry in lockstep
    assert medians[:5] == pytest.approx([600, 1200, 2400, 4800, 9600], rel=0.05)
    assert all(m <= 4 * 3600 for m in medians) and medians[-1] == pytest.approx(4 * 3600, rel=0.06)


async def test_failing_feed_is_paused_after_pause_after_with_one_notice_then_resumes(tmp_path, server, caplog):
    caplog.set_level(logging.INFO, logger="herald")
    rig = await Rig.start(tmp_path, server)  # pause_after 24h, max_backoff 4h (the defaults)
    try:
        numbers = [0, 1, 2]
        server.serve("/victim.xml", hostile.feed(numbers))
        await rig.cycle(publish_control=False)
        victim_id = (await rig.info("victim")).id
        server.error("/victim.xml", 500)
        first_failure = None
        polls = 0
        delays = []
        while True:
            numbers.append(numbers[-1] + 1)  # publishing on, unseen
            info = await rig.until_victim_polled(max_steps=40)
            polls += 1
            first_failure = first_failure or info.last_fetch
            if info.paused:
                break
            delays.append(info.next_fetch - info.last_fetch)
            assert info.last_error == "HTTP 500 Internal Server Error" and info.error_count == polls
            assert not rig.alerts
        failing_for = info.last_fetch - first_failure
        assert failing_for >= 86400 and failing_for - 86400 <= max(delays)  # paused at the first poll after 24 h
        assert max(delays) <= 4 * 3600 and delays[:3] == sorted(delays[:3])
        [(kind, feed_id, text)] = rig.alerts
        assert kind == "feed" and feed_id == victim_id
        assert "**victim** was paused" in text and "HTTP 500" in text and "failing for 1." in text
        assert "`/feed resume`" in text and "`herald feeds resume victim`" in text
        assert "paused" in (info.pause_reason or "") or "failing for" in (info.pause_reason or "")

        # paused: never fetched again, however long we wait, and no second notice
        requests = server.arrived("/victim.xml") + server.requests("/victim.xml")
        for _ in range(30):
            rig.clock.advance(3600)
            await rig.cycle()
        assert server.arrived("/victim.xml") + server.requests("/victim.xml") == requests
        assert len(rig.alerts) == 1

        # the operator fixes the feed and resumes it from the command line
        server.serve("/victim.xml", hostile.feed(numbers))
        await _feeds(rig.herald.config, argparse.Namespace(feeds_command="resume", feed="victim"))
        info = await rig.until_victim_polled()
        assert not info.paused and info.last_error is None
        expected = [f"Post {n}" for n in numbers[2:]]
        lost, duplicated = tally(rig.victim_announced(), expected)
        assert (lost, duplicated) == (0, 0)
        assert [t for m in rig.sink.to(VICTIM) for t in m.titles] == expected
        c_lost, c_dup = rig.control_tally()
        assert (c_lost, c_dup) == (0, 0)
    finally:
        await rig.close()
    record("feed failing for 24 h (pause_after)", area="feed", runs=polls, lost=lost + c_lost,
           duplicated=duplicated + c_dup,
           outcome="backoff capped at 4 h; paused with one notice saying why and how to resume; backlog after resume")
