"""Well-formed http(s) URLs for Discord. Pure functions.

Discord validates every URL in an embed (``url``, ``image.url``, ``thumbnail.url``,
``author.url``) and refuses the whole message (HTTP 400) for one it does not accept. Feeds
carry URLs as they were typed: ``HTTP://`` schemes, spaces, non-ASCII paths and host names.
:func:`discord_url` makes such a URL well-formed, or says it cannot (None), so that a bad URL
drops one field instead of losing the announcement.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

from bot import limits

# Characters kept as they are in a path, query or fragment: RFC 3986's unreserved and reserved
# characters, and "%" (existing escapes). Everything else (spaces, quotes, <>, non-ASCII as UTF-8)
# is percent-encoded.
_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# WHATWG URL parsing drops these wherever they are; every other control character is refused.
_IGNORED = str.maketrans("", "", "\t\n\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# one DNS label (underscores occur in real host names, e.g. CDN buckets, and Discord accepts them)
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_HOST = 253
_IPV6 = re.compile(r"\[[0-9a-f:.]{2,45}\]")
# Input longer than this cannot come out within Discord's limit (escaping only lengthens it).
_MAX_INPUT = limits.EMBED_URL


def discord_url(url: object) -> str | None:
    """``url`` as Discord accepts it in an embed, or None.

    Lower-case scheme (http or https only) and host, IDNA host names, spaces and non-ASCII in the
    path, query and fragment percent-encoded, no control characters, no credentials, at most
    ``limits.EMBED_URL`` characters.
    """
    if not isinstance(url, str):
        return None
    text = url.strip()
    if not text or len(text) > _MAX_INPUT:
        return None
    text = text.translate(_IGNORED)
    if _CONTROL.search(text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc.strip() or "@" in parts.netloc:
        return None  # credentials in a link ("https://trusted@evil.example") only serve to mislead
    host = _host(parts.hostname or "")
    if host is None:
        return None
    netloc = host if port is None else f"{host}:{port}"
    try:
        path = _escape(parts.path) or "/"
        query = _escape(parts.query)
        fragment = _escape(parts.fragment)
    except UnicodeEncodeError:  # a lone surrogate
        return None
    out = urlunsplit((scheme, netloc, path, query, fragment))
    if parts.path == "" and not query and not fragment:
        out = f"{scheme}://{netloc}"  # keep "https://example.org" as written
    return out if len(out) <= limits.EMBED_URL else None


def _escape(part: str) -> str:
    return _LONE_PERCENT.sub("%25", quote(part, safe=_SAFE))


def _host(host: str) -> str | None:
    """A host name lower-cased and IDNA-encoded, an IPv4 or a bracketed IPv6 address; None if invalid."""
    host = host.rstrip(".").lower()
    if not host:
        return None
    if ":" in host:  # urlsplit strips the brackets of an IPv6 address
        bracketed = f"[{host}]"
        return bracketed if _IPV6.fullmatch(bracketed) else None
    labels = []
    for label in host.split("."):
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return None
        if not _HOST_LABEL.fullmatch(label):
            return None
        labels.append(label)
    name = ".".join(labels)
    return name if len(name) <= _MAX_HOST else None
