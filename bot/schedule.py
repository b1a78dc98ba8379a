"""When to fetch a feed next, and when to retry a delivery. Pure functions."""

from __future__ import annotations

import random

JITTER = 0.1  # ±10 % of the interval, so feeds added together drift apart
MIN_RETRY = 30.0
MAX_DOUBLINGS = 30  # the backoff doubles at most this many times (2**30 · 30 s is far past any max_backoff)
MAX_RETRY_AFTER = 7 * 86400.0  # a server's Retry-After is obeyed up to a week


def next_fetch(
    now: float, interval: float, *, errors: int = 0, retry_after: float | None = None,
    max_backoff: float = 4 * 3600.0, rng: random.Random | None = None,
) -> float:
    """The next fetch time.

    A healthy feed waits ``interval`` ± 10 %. After ``errors`` consecutive
    failures it waits ``interval · 2^(errors-1)``, at least 30 s, with ±10 %
    jitter, and never longer than ``max_backoff`` (at the cap the jitter only
    shortens the wait). A server's Retry-After is a floor.
    """
    r = rng or random
    if errors <= 0:
        delay = interval
    else:
        delay = min(max_backoff, max(MIN_RETRY, interval) * (2 ** min(errors - 1, MAX_DOUBLINGS)))
    delay *= 1 + r.uniform(-JITTER, JITTER)
    if errors > 0 and delay > max_backoff:
        delay = max_backoff * (1 - r.uniform(0, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return now + delay


def delivery_backoff(attempts: int, *, retry_after: float | None = None, cap: float = 600.0,
                     rng: random.Random | None = None) -> float:
    """Seconds before retrying a delivery after ``attempts`` failed tries: 1, 2, 4 … 600 s, full jitter
    in the upper half, never before the server's retry_after."""
    r = rng or random
    base = min(cap, 2.0 ** max(0, attempts - 1))
    delay = base * r.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
