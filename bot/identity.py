"""Entry identity: which parsed entry is which stored entry. Pure functions."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

_TRACKING_PREFIXES = ("utm_",)
_WWW = re.compile(r"^(?:www\.)+")
_TRACKING_PARAMS = frozenset({"fbclid", "gclid", "mc_cid", "mc_eid", "ref_src"})


def normalise_link(link: str | None) -> str | None:
    """A link reduced to what identifies the page.

    The scheme, a leading ``www.``, default ports, the fragment, tracking
    parameters and a trailing slash are dropped, and the query is sorted, so
    ``http://www.Example.com/a/?utm_source=x`` and ``https://example.com/a``
    are the same post.
    """
    if not link:
        return None
    text = link.strip()
    if not text:
        return None
    try:
        parts = urlsplit(text if "//" in text else "//" + text)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port
    except ValueError:
        return text
    host = _WWW.sub("", host)  # every leading "www.", so a normalised link normalises to itself
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")  # every trailing slash, in one step
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith(_TRACKING_PREFIXES) and k.lower() not in _TRACKING_PARAMS
    ]
    query.sort()
    out = host + path
    if query:
        out += "?" + urlencode(query)
    return out.strip() or None


def content_hash(title: str, date: str | None, summary: str) -> str:
    h = hashlib.sha256()
    for part in (title, date or "", summary):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def entry_key(guid: str | None, link: str | None, title: str, date: str | None, summary: str) -> str:
    """The primary identity: the GUID, else the link, else a hash of title, date and summary."""
    if guid and guid.strip():
        return "id:" + guid.strip()
    if link and link.strip():
        return "link:" + link.strip()
    return "hash:" + content_hash(title, date, summary)
