"""The decider: which parsed entries are new, and which of them to announce.

A pure function of what is already known, what was parsed, the policy and
the time. No I/O; the pipeline looks up :class:`~bot.models.Known` in storage
and writes the :class:`~bot.models.Decision` back.
"""

from __future__ import annotations

from bot.models import Decision, Known, ParsedEntry, Policy

# An entry dated further in the future than this is ordered as if published now.
FUTURE_SLACK = 86400.0


def chronological(entries: list[ParsedEntry], now: float) -> list[ParsedEntry]:
    """Oldest first. Entries without a date keep the document's order, which
    feeds write newest first, so they are reversed; a dated entry sorts by date."""
    n = len(entries)

    def key(e: ParsedEntry) -> tuple[float, int]:
        ts = e.published if e.published is not None else e.updated
        if ts is None or ts > now + FUTURE_SLACK:
            ts = now
        return (ts, n - e.position)

    return sorted(entries, key=key)


def decide(known: Known, parsed: list[ParsedEntry] | tuple[ParsedEntry, ...], policy: Policy, now: float) -> Decision:
    """Returns what is new and what to announce, oldest first.

    - An entry is known when its key, or its normalised link, was seen before:
      a feed that changes every GUID at once (http to https, a new generator)
      announces nothing again.
    - Duplicate keys or links within one document count once. A link that
      entries with different titles share (a podcast whose every episode
      links to its home page) identifies none of them: only keys count there.
    - On the first fetch, only the newest ``policy.backfill`` entries are
      announced; the rest are remembered.
    - When more than ``policy.max_per_poll`` entries are to be announced, the
      newest ``max_per_poll`` are announced one by one and the older rest go
      in one digest.
    """
    titles_by_link: dict[str, set[str]] = {}
    for e in parsed:
        if e.link_key is not None:
            titles_by_link.setdefault(e.link_key, set()).add(e.title)
    seen_keys: set[str] = set()
    seen_links: set[str] = set()
    new: list[ParsedEntry] = []
    rekey: list[tuple[str, str]] = []
    for e in parsed:
        link = e.link_key if e.link_key is not None and len(titles_by_link[e.link_key]) == 1 else None
        if e.key in seen_keys or (link is not None and link in seen_links):
            continue
        seen_keys.add(e.key)
        if link is not None:
            seen_links.add(link)
        if e.key in known.keys:
            continue
        if link is not None and link in known.link_keys:
            rekey.append((link, e.key))
            continue
        new.append(e)

    ordered = chronological(new, now)
    if known.first_fetch:
        count = max(0, policy.backfill)
        to_announce = ordered[max(0, len(ordered) - count):] if count else []
    else:
        to_announce = ordered
    digest: list[ParsedEntry] = []
    cap = max(1, policy.max_per_poll)
    if len(to_announce) > cap:
        digest = to_announce[: len(to_announce) - cap]
        to_announce = to_announce[len(to_announce) - cap:]
    return Decision(new=tuple(ordered), announce=tuple(to_announce), digest=tuple(digest), rekey=tuple(rekey))
