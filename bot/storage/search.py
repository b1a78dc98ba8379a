"""Turning what a member types into a safe full-text query. Pure functions."""

from __future__ import annotations

import re
import unicodedata

MAX_QUERY_CHARS = 512
MAX_TERMS = 16
_PHRASE = re.compile(r'"([^"]*)"')
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_terms(query: str) -> list[str]:
    """Words and quoted phrases of a query, stripped of every operator and symbol.

    Returns a list in which a phrase is several words joined by spaces. Emoji,
    quotes, ``*``, ``-``, parentheses and FTS keywords such as ``NEAR`` or
    ``AND`` are only text here; nothing the user types becomes syntax.
    """
    text = unicodedata.normalize("NFKC", query or "")[:MAX_QUERY_CHARS]
    terms: list[str] = []
    pos = 0
    for m in _PHRASE.finditer(text):
        terms.extend(_WORD.findall(text[pos:m.start()]))
        words = _WORD.findall(m.group(1))
        if words:
            terms.append(" ".join(words))
        pos = m.end()
    rest = text[pos:]
    terms.extend(_WORD.findall(rest.replace('"', " ")))
    seen: set[str] = set()
    out = []
    for t in terms:
        low = t.lower()
        if low not in seen:
            seen.add(low)
            out.append(t)
    return out[:MAX_TERMS]


def fts5_query(query: str) -> str | None:
    """An FTS5 MATCH expression: every term must match; a phrase as a phrase. None when empty."""
    terms = query_terms(query)
    if not terms:
        return None
    return " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)


def highlight_terms(query: str) -> list[str]:
    return [w for t in query_terms(query) for w in t.split()]
