"""What a feed sends, made storable by every backend alike. Pure functions, no I/O.

A feed controls most of the text Herald stores, and one value PostgreSQL refuses would
fail the whole write batch it is in (every other feed's entries with it). So every text
from a feed is normalised here, the same way for SQLite and PostgreSQL, before any SQL:

- U+0000 and the surrogate code points (U+D800 to U+DFFF) are removed. PostgreSQL's
  ``text`` refuses NUL (``invalid byte sequence for encoding "UTF8": 0x00``) and a
  surrogate has no UTF-8 form, so neither driver can even send it; SQLite's driver
  refuses surrogates too, and its full-text index stops reading a value at a NUL. JSON
  Feeds carry both (``"\\u0000"``, ``"\\ud800"``), and HTTP header values decoded with
  ``surrogateescape`` carry surrogates. Every other code point is valid text in both.
- Identity keys (:attr:`ParsedEntry.key`, ``link_key``) sit in B-tree indexes, whose rows
  PostgreSQL limits to about 2.7 KB. A key longer than :data:`MAX_KEY_CHARS` (or holding a
  removed character) becomes a prefix and a SHA-256 of the whole key: still unique, and the
  same every time it is seen. Every other key is kept exactly as it is, since stored
  entries are recognised by it.
- Text is capped. The title and summary feed PostgreSQL's ``tsvector``, which must stay
  under 1 MB: at worst (one-letter words) a character of text costs 6 bytes of tsvector,
  so the caps below keep a whole entry's index under a third of that. URLs are dropped,
  not cut, when too long: a cut URL leads somewhere else (Discord shows at most 2,048
  characters of one anyway).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from collections.abc import Iterable

from bot.models import Decision, ParsedEntry
from bot.storage.base import PollOutcome

# --- limits ---------------------------------------------------------------------------------------

#: PostgreSQL's limit on a B-tree index row (keys are in the entries' unique and link indexes)
BTREE_ROW_BYTES = 2_704
#: the longest identity key stored as it is: at 4 UTF-8 bytes a character, 2 KB, under a B-tree row
MAX_KEY_CHARS = 512
#: between a capped key's prefix and the hex SHA-256 of the whole key
KEY_HASH_MARK = "#sha256:"
_KEY_PREFIX_CHARS = MAX_KEY_CHARS - len(KEY_HASH_MARK) - 64

#: entry and feed titles (embeds show 256 characters; search indexes these)
MAX_TITLE_CHARS = 2_000
#: entry summaries (Markdown); the parser keeps 20,000 characters, this bounds any other source
MAX_SUMMARY_CHARS = 50_000
#: PostgreSQL's limit on one tsvector (an entry's title and summary together)
TSVECTOR_BYTES = 1_048_575
#: tsvector bytes a character of text costs at most (measured: words of one CJK character each)
TSVECTOR_BYTES_PER_CHAR = 6
MAX_AUTHOR_CHARS = 500
#: entry links, image URLs and the feed's own link: longer ones are dropped
MAX_URL_CHARS = 8_192
#: a new feed URL after a permanent redirect goes in the feeds' unique index: longer ones are
#: not followed into the database (the fetcher still follows the redirect every time)
MAX_FEED_URL_BYTES = 2_000
#: ETag and Last-Modified values: a longer one is not kept (the next fetch is then unconditional)
MAX_VALIDATOR_CHARS = 1_024
#: last_error and pause reasons
MAX_ERROR_CHARS = 2_000

# U+0000 and every surrogate code point: what neither database can store as text
_UNSTORABLE = dict.fromkeys([0, *range(0xD800, 0xE000)])


# --- text -----------------------------------------------------------------------------------------


def _storable(text: str) -> bool:
    """True when ``text`` holds nothing :func:`clean` would remove."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate: the only code points UTF-8 cannot encode
        return False
    return True


def clean(text: str, limit: int | None = None) -> str:
    """``text`` without NUL and surrogates, cut to ``limit`` characters when given."""
    if limit is not None and len(text) > limit:
        text = text[:limit]
    return text if _storable(text) else text.translate(_UNSTORABLE)


def clean_optional(text: str | None, limit: int | None = None) -> str | None:
    """:func:`clean` for an optional value."""
    return None if text is None else clean(text, limit)


def clean_whole(value: str | None, limit: int) -> str | None:
    """``value`` without NUL and surrogates, or None when longer than ``limit``: for values
    that are useless cut (a cut URL leads somewhere else, a cut ETag never matches)."""
    if value is None or len(value) > limit:
        return None
    return clean(value)


def clean_url(url: str | None) -> str | None:
    """:func:`clean_whole` for a URL: at most :data:`MAX_URL_CHARS` long."""
    return clean_whole(url, MAX_URL_CHARS)


def storage_key(key: str) -> str:
    """An identity key as stored: ``key`` itself when it is storable and at most
    :data:`MAX_KEY_CHARS` long; else its first characters (cleaned), :data:`KEY_HASH_MARK`
    and the SHA-256 of the whole key, at most :data:`MAX_KEY_CHARS` long in all."""
    if len(key) <= MAX_KEY_CHARS and _storable(key):
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return clean(key, _KEY_PREFIX_CHARS) + KEY_HASH_MARK + digest


def lookup_keys(keys: Iterable[str]) -> dict[str, set[str]]:
    """The stored forms to look up for ``keys``, each mapped to the keys it stands for.

    A long key is looked up as :func:`storage_key` makes it and also as it is: a database
    written before keys were capped (SQLite, or PostgreSQL below its index limit) holds it
    whole, and finding it there keeps its entry from being announced again.
    """
    forms: dict[str, set[str]] = {}
    for key in keys:
        stored = storage_key(key)
        forms.setdefault(stored, set()).add(key)
        if stored != key and _storable(key):
            forms.setdefault(key, set()).add(key)
    return forms


# --- poll outcomes --------------------------------------------------------------------------------


def normalise_entry(e: ParsedEntry) -> ParsedEntry:
    """``e`` with every text storable and bounded, and its keys as stored."""
    return replace(
        e,
        key=storage_key(e.key),
        link_key=storage_key(e.link_key) if e.link_key else e.link_key,
        title=clean(e.title, MAX_TITLE_CHARS),
        link=clean_url(e.link),
        summary=clean(e.summary, MAX_SUMMARY_CHARS),
        author=clean_optional(e.author, MAX_AUTHOR_CHARS),
        image=clean_url(e.image),
    )


def normalise_decision(d: Decision) -> Decision:
    """The decision with each entry normalised once (``announce`` and ``digest`` are
    entries of ``new``, so they keep matching it by key)."""
    done: dict[int, ParsedEntry] = {}

    def norm(e: ParsedEntry) -> ParsedEntry:
        got = done.get(id(e))
        if got is None:
            got = done[id(e)] = normalise_entry(e)
        return got

    return Decision(
        new=tuple(norm(e) for e in d.new),
        announce=tuple(norm(e) for e in d.announce),
        digest=tuple(norm(e) for e in d.digest),
        rekey=tuple((storage_key(link_key), storage_key(key)) for link_key, key in d.rekey),
    )


def _feed_url(url: str | None) -> str | None:
    """A redirect's new feed URL, when the feeds' unique index can hold it as it is."""
    if url is None or not _storable(url) or len(url.encode("utf-8")) > MAX_FEED_URL_BYTES:
        return None
    return url


def normalise_outcome(o: PollOutcome) -> PollOutcome:
    """A copy of the poll outcome with every text as it can be stored."""
    return replace(
        o,
        etag=clean_whole(o.etag, MAX_VALIDATOR_CHARS),
        last_modified=clean_whole(o.last_modified, MAX_VALIDATOR_CHARS),
        title=clean_optional(o.title, MAX_TITLE_CHARS),
        link=clean_url(o.link),
        error=clean_optional(o.error, MAX_ERROR_CHARS),
        decision=normalise_decision(o.decision) if o.decision is not None else None,
        new_url=_feed_url(o.new_url),
        pause_reason=clean_optional(o.pause_reason, MAX_ERROR_CHARS),
    )
