"""The poller's rules: what one poll's fetch, parse or failure means for the feed.

Pure functions of (feed state, what happened, now, the ``[polling]`` settings), beside
:func:`bot.decide.decide`: no I/O, no logging, no clock. :class:`bot.pipeline.Poller` does
the I/O in order and asks these functions at each step:

- :func:`on_moved`: a permanent redirect rewrites the feed's URL, unless the URL is the
  feed's identity in the config file (then the move is reported, once);
- :func:`on_fetched`: a 304 or an identical body ends the poll without a parse;
- :func:`defer_summaries`: whether HTML conversion waits until the new entries are known;
- :func:`on_parsed`: a truncated document is refused, a malformed one noted;
- :func:`decide_policy` and :func:`known`: the decider's inputs;
- :func:`needs_summary` and :func:`with_summaries`: the deferred summaries of the new entries;
- :func:`on_new`, :func:`on_error`, :func:`on_internal_error`, :func:`on_rejected`: the
  outcome to write, with its next fetch time and, for a feed failing too long (or gone),
  its pause reason;
- :func:`recovered`: the log line of a feed that works again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot.config import PollingConfig
from bot.errors import FeedError, FeedGone, FetchError
from bot.models import Decision, FeedState, Known, ParsedEntry, ParsedFeed, Policy
from bot.schedule import next_fetch
from bot.storage.base import PollOutcome

if TYPE_CHECKING:
    from bot.fetch import FetchResult

ERROR_CHARS = 500  # of an error's text, in a feed's last_error
GONE = "the server says the feed is gone (HTTP 410)"
TRUNCATED = "the document is truncated (it ends before its root element closes); nothing stored"
TAIL_BYTES = 65536  # how much of a document's end is searched for its root element's closing tag
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

# The closing tag of a feed's root element. Searched in the last TAIL_BYTES only; every
# repetition is bounded by the next literal, so a failed match costs the length of one tag.
_ROOT_CLOSE = re.compile(rb"</\s*(?:[A-Za-z_][\w.-]*:)?(?:rss|feed|RDF)\s*>", re.I)


# --- moved, unchanged ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moved:
    """What a permanent redirect means for a feed."""

    new_url: str | None = None  # store the feed under this URL from now on
    warn: str | None = None  # a config feed moved here: tell the operator (once per feed and process)


def on_moved(feed: FeedState, permanent_url: str | None, *, in_config: bool, warned: bool) -> Moved:
    """A feed whose every redirect was permanent (301/308) moves to the final URL.

    A config feed's URL is its identity in the config file: rewriting it would make the next
    start see a new feed (and announce its backfill again). Herald follows the redirect on
    every poll instead and warns, unless it has ``warned`` already."""
    if not permanent_url or permanent_url == feed.url:
        return Moved()
    if in_config:
        return Moved(warn=None if warned else permanent_url)
    return Moved(new_url=permanent_url)


def interval(feed: FeedState, policy: PollingConfig) -> float:
    """The feed's own poll interval, else ``[polling] interval``."""
    return feed.interval or policy.interval


def on_fetched(feed: FeedState, result: FetchResult, now: float, policy: PollingConfig,
               new_url: str | None = None) -> PollOutcome | None:
    """The outcome of a poll that needs no parse: a 304, or the very body stored last time
    (a server without conditional GET); None when the body must be parsed."""
    nxt = next_fetch(now, interval(feed, policy))
    if result.status == 304:
        return PollOutcome(feed.id, now, nxt, "not_modified", http_status=304, new_url=new_url)
    if feed.body_hash == result.body_hash and feed.last_success is not None:
        return PollOutcome(feed.id, now, nxt, "unchanged", http_status=200, etag=result.etag,
                           last_modified=result.last_modified, new_url=new_url)
    return None


# --- parsed, decided -------------------------------------------------------------------------


def defer_summaries(feed: FeedState) -> bool:
    """Whether to leave the HTML conversion of entries until they are known to be new: on
    every poll but the first (on the first, every entry is new)."""
    return feed.last_success is not None


@dataclass(frozen=True, slots=True)
class Checked:
    """What a parsed document means before anything is stored."""

    refuse: str | None = None  # a ParseError with this text: nothing of the document is stored
    warning: str | None = None  # malformed but readable: worth a log line


def on_parsed(body: bytes, parsed: ParsedFeed) -> Checked:
    """A malformed XML document that never closes its root element was cut short (the server
    stopped writing part-way): its last entry may be cut in half (no GUID, half a title), and
    storing it would announce it broken now and again, whole, when the document is complete."""
    if parsed.warning and truncated(body, parsed):
        return Checked(refuse=TRUNCATED)
    return Checked(warning=parsed.warning)


def truncated(body: bytes, parsed: ParsedFeed) -> bool:
    """True when an XML feed never closes its root element (``</rss>``, ``</feed>``,
    ``</rdf:RDF>``). Text after the root (a PHP warning) does not count; JSON and UTF-16/32
    documents are not checked."""
    if (parsed.version or "").startswith("json") or b"\x00" in body[:4]:
        return False
    return _ROOT_CLOSE.search(body[-TAIL_BYTES:]) is None


def identities(parsed: ParsedFeed) -> tuple[list[str], list[str]]:
    """The keys and the links of the parsed entries, to look up in storage."""
    return [e.key for e in parsed.entries], [e.link_key for e in parsed.entries if e.link_key]


def known(feed: FeedState, keys: Iterable[str], link_keys: Iterable[str]) -> Known:
    """What storage knows about the parsed entries, as the decider takes it."""
    return Known(first_fetch=feed.last_success is None, keys=frozenset(keys), link_keys=frozenset(link_keys))


def decide_policy(feed: FeedState, policy: PollingConfig) -> Policy:
    """The feed's backfill, and its ``max_per_poll`` else ``[polling] max_per_poll``."""
    return Policy(backfill=feed.backfill, max_per_poll=feed.max_per_poll or policy.max_per_poll)


def needs_summary(decision: Decision, deferred: Mapping[int, object]) -> list[ParsedEntry]:
    """The new entries whose summary was deferred (by position), in the decision's order."""
    return [e for e in decision.new if e.position in deferred]


def with_summaries(decision: Decision, completed: Iterable[ParsedEntry]) -> Decision:
    """``decision`` with each of its entries replaced by its completed version (same position)."""
    by_position = {e.position: e for e in completed}
    if not by_position:
        return decision

    def swap(entries: tuple[ParsedEntry, ...]) -> tuple[ParsedEntry, ...]:
        return tuple(by_position.get(e.position, e) for e in entries)

    return replace(decision, new=swap(decision.new), announce=swap(decision.announce), digest=swap(decision.digest))


def on_new(feed: FeedState, result: FetchResult, parsed: ParsedFeed, decision: Decision, now: float,
           policy: PollingConfig, new_url: str | None = None) -> PollOutcome:
    """The outcome of a parsed poll: the feed's new validators and metadata, and the decision."""
    return PollOutcome(
        feed.id, now, next_fetch(now, interval(feed, policy)), "new", http_status=200, etag=result.etag,
        last_modified=result.last_modified, body_hash=result.body_hash, title=parsed.title, link=parsed.link,
        image=parsed.image, decision=decision, new_url=new_url,
    )


# --- failures --------------------------------------------------------------------------------


def pause_reason(feed: FeedState, error: str, now: float, policy: PollingConfig) -> str | None:
    """Why a feed that failed again is paused, or None: it has failed for ``pause_after``."""
    if feed.first_error_at is not None and now - feed.first_error_at >= policy.pause_after:
        return f"{failing_for(feed, now)}: {error}"
    return None


def on_error(feed: FeedState, error: FeedError, now: float, policy: PollingConfig) -> PollOutcome:
    """The outcome of a poll that failed: the error recorded, the next fetch backed off (never
    before the server's Retry-After), and the feed paused when the server says it is gone
    (HTTP 410) or it has failed for ``[polling] pause_after``."""
    fetch = error if isinstance(error, FetchError) else None
    pause = GONE if isinstance(error, FeedGone) else pause_reason(feed, str(error), now, policy)
    return PollOutcome(
        feed_id=feed.id, now=now, status="error", http_status=fetch.status if fetch else None,
        error=str(error)[:ERROR_CHARS],
        next_fetch=next_fetch(now, interval(feed, policy), errors=feed.error_count + 1,
                              retry_after=fetch.retry_after if fetch else None, max_backoff=policy.max_backoff),
        pause_reason=pause,
    )


def on_internal_error(feed: FeedState, exc: BaseException, now: float, policy: PollingConfig) -> PollOutcome:
    """The outcome of a poll that hit a bug (or a library's error) on the feed's input: recorded
    and backed off like a failure, so that one feed cannot break every cycle; never paused."""
    return PollOutcome(
        feed_id=feed.id, now=now, status="error", error=f"internal error: {type(exc).__name__}: {exc}"[:ERROR_CHARS],
        next_fetch=next_fetch(now, interval(feed, policy), errors=feed.error_count + 1,
                              max_backoff=policy.max_backoff),
    )


def rejected_error(cause: str) -> str:
    """A feed's last_error when the database refused its poll's data."""
    return f"could not store this feed's entries: {cause}"


def on_rejected(feed: FeedState, refused: PollOutcome, cause: str, policy: PollingConfig) -> PollOutcome:
    """The error outcome written in place of ``refused``, a poll outcome the database refused
    for its data: the feed's error is recorded and it backs off (and is paused in the end)
    like any failing feed."""
    now = refused.now
    error = rejected_error(cause)
    return PollOutcome(
        feed_id=feed.id, now=now, status="error", http_status=refused.http_status, error=error,
        next_fetch=next_fetch(now, interval(feed, policy), errors=feed.error_count + 1,
                              max_backoff=policy.max_backoff),
        pause_reason=pause_reason(feed, error, now, policy),
    )


def recovered(feed: FeedState, outcome: PollOutcome) -> str | None:
    """The log line of a feed that worked again after failed polls; None otherwise."""
    if outcome.status == "error" or not feed.error_count:
        return None
    failing = f" (failing for {human(outcome.now - feed.first_error_at)})" if feed.first_error_at else ""
    return f"feed {feed.name or feed.url} recovered after {feed.error_count} failed polls{failing}"


def failing_for(feed: FeedState, now: float) -> str:
    """How long a feed has been failing, in words (never "failing for 0 minutes")."""
    if feed.last_success is None:
        return "failing since its first poll"
    if feed.first_error_at is None or now - feed.first_error_at < MINUTE:
        return "failing for less than a minute"
    return f"failing for {human(now - feed.first_error_at)}"


def human(seconds: float) -> str:
    """A duration in words: minutes, hours or days."""
    if seconds >= DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= HOUR:
        return f"{seconds / HOUR:.1f} hours"
    return f"{seconds / MINUTE:.0f} minutes"
