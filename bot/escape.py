"""Untrusted text (from a feed, a feed server or a member) made safe for where Discord shows it.

One function per context; pick the one for the place the text goes:

- :func:`plain`: literal text in rendered Markdown (message content, embed titles,
  descriptions, field names and values). Nothing in it formats, links, quotes, lists, heads,
  mentions or opens code.
- :func:`code_span`: a whole inline code span (backticks included) showing the text.
- :func:`link_text`: the ``[…]`` of a masked link; names the real host when the text looks
  like another URL.
- :func:`link_url`: the ``(…)`` of a masked link or the inside of an autolink ``<…>``.
- :func:`clean`: text for places Discord does not render Markdown (embed author names and
  footers, thread and forum post names): invisible and bidi-control characters removed.

:func:`fold_for_judging` is not for display: it is what the spoof checks compare, with every
invisible character dropped and lookalike punctuation read as the ASCII it imitates.

Pure functions; every one runs in time linear in its input.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from urllib.parse import quote, urlsplit

from bot.identity import normalise_link

__all__ = ["BIDI_CONTROLS", "CODE_BACKTICK", "CONFUSABLE_PUNCTUATION", "clean", "code_span", "fold_char",
           "fold_for_judging", "link_text", "link_url", "looks_like_other_url", "plain", "real_host_note",
           "strip_bidi"]

# --- character classes ------------------------------------------------------------------------------

#: Characters that set or change the direction of text (embeddings, overrides, isolates, marks).
#: An override such as U+202E shows "txt.exe" for "exe.txt": none of them is ever shown.
BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])

# Every format (Cf) character of Unicode 15, as ranges: soft hyphen, zero-width space and its
# kin, word joiner and invisible operators, BOM, interlinear annotation, shorthand and musical
# format controls, tags. A test checks this covers every Cf character Python knows.
_FORMAT_RANGES = (
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)
# Not format characters, but shown as nothing: combining grapheme joiner, Hangul fillers,
# Khmer inherent vowels, Mongolian free variation selectors.
_BLANK_LETTERS = (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0)
# Kept when shown, because text needs them: zero-width (non-)joiners build emoji sequences and
# shape Arabic, Persian and Indic words; tags spell subdivision flags. The judging fold drops them.
_SHOWN_FORMAT = frozenset([0x200C, 0x200D, *range(0xE0020, 0xE0080)])
# Emoji and other variation selectors: shown (they pick a glyph), dropped when judging.
_VARIATION_SELECTORS = (*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0))

_FORMAT = frozenset(cp for lo, hi in _FORMAT_RANGES for cp in range(lo, hi + 1))
_LINE_BREAKS = {0x0B: "\n", 0x0C: "\n", 0x0D: "\n", 0x1C: "\n", 0x1D: "\n", 0x1E: "\n", 0x85: "\n",
                0x2028: "\n", 0x2029: "\n"}
_CONTROLS = frozenset(cp for cp in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if cp not in (0x09, 0x0A))

# What every shown text loses: invisible characters (bar the ones text needs), bidi controls,
# control characters. Line breaks of every kind become "\n".
_SHOWN: dict[int, str | None] = {cp: None for cp in (_FORMAT - _SHOWN_FORMAT) | _CONTROLS | set(_BLANK_LETTERS)}
_SHOWN.update(_LINE_BREAKS)

# Lookalike punctuation, read as the ASCII it imitates (after NFKC, which already maps the
# fullwidth and small forms: ／ ： ． ﹒ ﹕ ․ …). From Unicode's confusables data for ":", "/",
# "." and "-", keeping the characters that pass for them in a URL.
CONFUSABLE_PUNCTUATION: dict[str, str] = {
    # colons
    "\u2236": ":", "\uA789": ":", "\u0589": ":", "\u02D0": ":", "\u02F8": ":", "\u05C3": ":",
    "\u0703": ":", "\u0704": ":", "\u16EC": ":", "\u205A": ":", "\u1361": ":", "\u2E2C": ":",
    "\uA4FD": ":",
    # slashes
    "\u2215": "/", "\u2044": "/", "\u29F8": "/", "\u2571": "/", "\u27CB": "/", "\u3033": "/",
    "\u1735": "/",
    # full stops
    "\u3002": ".", "\u0701": ".", "\u0702": ".", "\uA60E": ".", "\uA4F8": ".", "\u06D4": ".",
    "\u2E3C": ".", "\U00010A50": ".",
    # hyphens and dashes
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2043": "-", "\u02D7": "-", "\u2E3A": "-", "\u2E3B": "-", "\u2796": "-",
    "\u2E17": "-", "\u2500": "-", "\u2501": "-",
}
_CONFUSABLE = {ord(k): v for k, v in CONFUSABLE_PUNCTUATION.items()}

_JUDGING_DROPPED = _FORMAT | _CONTROLS | set(_BLANK_LETTERS) | set(_VARIATION_SELECTORS)


# Folding a character costs an NFKC normalisation; the ones seen most stay cached (bounded).
FOLD_CACHE_SIZE = 1 << 16


@functools.lru_cache(maxsize=FOLD_CACHE_SIZE)
def fold_char(ch: str) -> str:
    """What one character counts as when judging whether text shows a URL: "" for an
    invisible one, else its NFKC form with lookalike punctuation made ASCII."""
    cp = ord(ch)
    if cp < 0x80:
        return ch
    if cp in _JUDGING_DROPPED:
        return ""
    folded = unicodedata.normalize("NFKC", ch)
    return "".join(_CONFUSABLE.get(ord(c), c) for c in folded if ord(c) not in _JUDGING_DROPPED)


def fold_for_judging(text: str) -> str:
    """``text`` as the spoof checks judge it: invisible characters (format characters such as
    U+200B, U+2060, U+00AD, U+FEFF, bidi controls, variation selectors, fillers) dropped, each
    character in NFKC form, lookalike punctuation (U+2236 ∶, U+2215 ∕, U+2044 ⁄, U+2024 ․,
    U+3002 。, U+2010 ‐ …) made the ASCII it imitates. Character by character (see
    :func:`fold_char`), so that positions in the text can be mapped to positions in the fold."""
    if text.isascii():
        return text
    return "".join(map(fold_char, text))


# --- cleaning ---------------------------------------------------------------------------------------

_BIDI_TABLE: dict[int, None] = {cp: None for cp in BIDI_CONTROLS}
_SPACES = re.compile(r"\s+")


def strip_bidi(text: str) -> str:
    """``text`` without bidi controls (overrides, embeddings, isolates, marks)."""
    return text.translate(_BIDI_TABLE)


def clean(text: str, *, one_line: bool = False) -> str:
    """``text`` without what must never be shown: invisible format characters (bar the
    joiners and tags that emoji and scripts need), bidi controls and control characters;
    every line break as "\\n", or with ``one_line`` every run of white space as one space."""
    text = text.replace("\r\n", "\n").translate(_SHOWN)
    if one_line:
        text = _SPACES.sub(" ", text)
    return text


# --- Markdown ---------------------------------------------------------------------------------------

# Characters Discord's Markdown gives a meaning to wherever they are, escaped wherever they are:
# emphasis, code, spoilers, masked links, autolinks and mentions ("<"), "@everyone" and
# "@here", and the ":" of "://" so that no URL links itself.
_PLAIN_SPECIAL = re.compile(r"[\\*_~`|\[\]<]|@(?=everyone|here)|:(?=//)")
# Markers that count only at the start of a line (after indentation): headings and subtext,
# quotes, list items. The text's own start counts, as a caller may put it after a line break.
# The classes do not overlap, so this is linear.
_LINE_START = re.compile(r"^([ \t]*)(?:([-#>+])|(\d+)\.)", re.M)


def _line_start(m: re.Match[str]) -> str:
    return m.group(1) + ("\\" + m.group(2) if m.group(2) else m.group(3) + "\\.")


def plain(text: str, *, one_line: bool = False) -> str:
    """Untrusted text shown as written in Discord Markdown.

    Escapes Markdown control characters with a backslash, which Discord hides: ``* _ ~ ` |
    [ ] < \\`` everywhere, ``# > - +`` and ``1.`` at the start of a line. So
    ``[x](https://evil)`` shows as typed and links nowhere, ``<@&1>`` and ``@everyone`` show
    but are no mentions, ``# x``, ``> x``, ``- x``, ``1. x`` stay plain lines, and a bare
    ``https://…`` shows without linking. Invisible and bidi-control characters are removed
    (see :func:`clean`); ``one_line`` makes every run of white space one space.
    """
    text = clean(text, one_line=one_line)
    text = _PLAIN_SPECIAL.sub(r"\\\g<0>", text)
    return _LINE_START.sub(_line_start, text)


#: What a backtick inside a code span shows as. Discord has no escape inside code, and a
#: longer fence does not help for runs of three or more (they open a code block), so every
#: backtick is replaced by U+02CB MODIFIER LETTER GRAVE ACCENT, which looks the same.
CODE_BACKTICK = "\u02cb"


def code_span(text: str) -> str:
    """``text`` as one inline code span, backticks included: ``code_span("a b")`` is
    ``"`a b`"``. Backticks become :data:`CODE_BACKTICK`; line breaks become spaces;
    invisible and bidi-control characters are removed. Empty text gives ""."""
    text = clean(text, one_line=True).replace("`", CODE_BACKTICK)
    if not text:
        return ""
    if len(text) >= 2 and text[0] == " " and text[-1] == " " and text.strip(" "):
        text = f" {text} "  # a span's first and last space are not shown when both are there
    return f"`{text}`"


_SCHEME = re.compile(r"https?://", re.I)
_URL_UNSAFE = frozenset(" ()<>\\\"`")


def link_url(url: str | None) -> str | None:
    """An http(s) URL fit for the ``(…)`` of a masked link or for ``<…>``: characters that
    would end or change the link (white space, parentheses, angle brackets, backslash, quotes,
    Markdown characters) and every invisible or control character are percent-encoded.
    None for anything else (other schemes, no host)."""
    if not url:
        return None
    url = url.strip()
    if not _SCHEME.match(url):
        return None
    try:
        if not urlsplit(url).hostname:
            return None
    except ValueError:
        return None
    out = []
    for ch in url:
        if ch in _URL_UNSAFE or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs"):
            out.append(quote(ch, safe=""))
        else:
            out.append(ch)
    return "".join(out)


# --- what looks like a URL --------------------------------------------------------------------------

# What a reader takes for a URL: a scheme or "www." followed by something, or text that is a
# host name (and a path). Judged on at most JUDGED_CHARACTERS of folded text: the search
# costs time that grows with the square of its length, and no title or label shows more.
# Text that shows an address: with a scheme or "www.", anywhere in it ...
_SCHEMED = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S", re.I)
# ... or, all of it, a bare host name (optionally a port and a path). The last label of a host
# starts with a letter and has two characters or more, so a version number ("v3.9.0", "3.14")
# is not taken for one.
_BARE_HOST = re.compile(r"^((?:[\w-]+\.)+[^\W\d_][\w-]*[^\W_])(?::\d{1,5})?(?:/\S*)?$")
_MARKUP = re.compile(r"\\(?=[^0-9A-Za-z\s])|[*_~`|\[\]<>]")
JUDGED_CHARACTERS = 512


def looks_like_other_url(text: str, url: str) -> bool:
    """True when ``text`` (Markdown markup aside, folded for judging) shows a URL that is not
    ``url``: a link with that text would show one address and open another."""
    shown = fold_for_judging(_MARKUP.sub("", text[:JUDGED_CHARACTERS]))[:JUDGED_CHARACTERS].strip()
    if _SCHEMED.search(shown):
        return normalise_link(shown) != normalise_link(url)
    bare = _BARE_HOST.match(shown)
    if bare is None:
        return False
    # a bare host shown ("example.org", "example.org/blog") misleads only when the link opens
    # another host: what a reader takes from it is where it goes, not the exact page
    return _bare(bare.group(1)) != _bare(_host(url))


def _bare(host: str) -> str:
    host = host.lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or url
    except ValueError:
        return url


def real_host_note(url: str) -> str:
    """What follows a title or link text that shows another URL: the host it really opens."""
    return f" → {_host(url)}"


def link_text(text: str, url: str | None = None) -> str:
    """Untrusted text for the ``[…]`` of a masked link to ``url``: on one line, escaped like
    :func:`plain` (brackets and backslashes included, so it cannot close the link early or
    hold another). When it shows a URL other than ``url``, the host it really opens follows
    it ("https://good.example → evil.example"), as in embed titles."""
    text = clean(text, one_line=True).strip()
    if url and looks_like_other_url(text, url):
        text += real_host_note(url)
    return plain(text, one_line=True)
