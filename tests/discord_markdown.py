"""A reference reader of Discord Markdown, for tests: what a member sees, and which formatting.

``read(md)`` answers the two questions a test of escaping or of the HTML converter asks:
what text does Discord show for this Markdown, and which formatting, links, code, headings,
quotes, lists and mentions does it make of it? It follows Discord's rules (a simple-markdown
descendant) closely and, where they are fuzzy, errs towards *seeing* formatting: a test that
says "no formatting" then holds for Discord too.

The rules it reads:

- ``\\`` before any character that is not an ASCII letter or digit, nor a space, shows that character
  literally; before anything else the backslash itself shows.
- Code: a fence of three backticks opens a block that runs to the next fence (an optional
  language on the first line); a run of N backticks opens an inline span closed by the next
  run of exactly N. Nothing inside code is formatting, and escapes do not work there.
- ``**bold**``, ``*italic*`` (no space just inside), ``_italic_`` (not inside a word),
  ``__underline__``, ``~~strike~~``, ``||spoiler||``; their content is read again.
- ``[text](http…)`` is a masked link (http and https only); ``<http…>`` and bare ``http…``
  are links showing their URL.
- Mentions: ``@everyone``, ``@here``, ``<@id>``, ``<@!id>``, ``<@&id>``, ``<#id>``,
  ``</cmd:id>``, ``<t:…>`` and custom emoji ``<:name:id>``.
- At the start of a line (after up to three spaces): ``# ``, ``## ``, ``### `` headings,
  ``-# `` subtext, ``> `` and ``>>> `` quotes, ``- ``, ``* `` and ``1. `` list items (these also
  after more spaces: a nested list). A heading
  marker is counted on any line, blank line before it or not (Discord wants one in
  descriptions; counting more is the cautious side).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Reading", "Span", "read"]


@dataclass(frozen=True)
class Span:
    """One piece of formatting: its kind, the text it shows, and a detail (a link's URL,
    a heading's level, a code block's language)."""

    kind: str  # bold italic underline strike spoiler code codeblock link url mention heading subtext quote list
    text: str
    detail: str | None = None


@dataclass(frozen=True)
class Reading:
    text: str  # what a member sees, formatting characters removed
    spans: tuple[Span, ...] = field(default_factory=tuple)

    def kinds(self) -> set[str]:
        return {s.kind for s in self.spans}

    def of(self, kind: str) -> list[Span]:
        return [s for s in self.spans if s.kind == kind]

    @property
    def links(self) -> list[tuple[str, str]]:
        """(shown text, URL) of every link, masked or not."""
        return [(s.text, s.detail or s.text) for s in self.spans if s.kind in ("link", "url")]


_MENTION = re.compile(r"<(?:@[!&]?\d+|#\d+|/[\w -]+:\d+|t:-?\d+(?::[tTdDfFR])?|a?:\w+:\d+)>")
_AUTOLINK = re.compile(r"<(https?://[^\s>]+)>", re.I)
_BARE_URL = re.compile(r"https?://[^\s<]+[^\s<.,:;\"')\]!?]", re.I)
_LIST = re.compile(r"(?:[-*]|\d{1,9}\.) ")
_HEADING = re.compile(r"(#{1,3}) ")
_WORD = re.compile(r"\w")


def read(md: str) -> Reading:
    """Reads Discord Markdown: the visible text and every piece of formatting in it."""
    spans: list[Span] = []
    out: list[str] = []
    for kind, chunk, lang in _code_blocks(md):
        if kind == "codeblock":
            spans.append(Span("codeblock", chunk, lang))
            out.append(chunk)
        else:
            out.append(_inline(_blocks(chunk, spans, at_line_start=not out or "".join(out).endswith("\n")), spans))
    return Reading("".join(out), tuple(spans))


def _code_blocks(md: str) -> list[tuple[str, str, str | None]]:
    """Splits off fenced code blocks (escaped backticks do not open one)."""
    parts: list[tuple[str, str, str | None]] = []
    i = start = 0
    n = len(md)
    while i < n:
        if md[i] == "\\" and i + 1 < n and _escapable(md[i + 1]):
            i += 2
            continue
        if md.startswith("```", i):
            end = md.find("```", i + 3)
            if end != -1 and end > i + 3:
                body = md[i + 3:end]
                lang = None
                m = re.match(r"([\w+#.-]+)\n", body)
                if m:
                    lang, body = m.group(1), body[m.end():]
                elif body.startswith("\n"):
                    body = body[1:]
                parts.append(("text", md[start:i], None))
                parts.append(("codeblock", body, lang))
                i = start = end + 3
                continue
        i += 1
    parts.append(("text", md[start:], None))
    return [p for p in parts if p[0] == "codeblock" or p[1]]


def _blocks(text: str, spans: list[Span], *, at_line_start: bool) -> str:
    """Removes line-start markers (headings, quotes, lists), recording them as spans."""
    lines = text.split("\n")
    rest_quoted = False
    for idx, line in enumerate(lines):
        if idx == 0 and not at_line_start:
            continue
        body = line
        if rest_quoted:
            spans.append(Span("quote", body))
        stripped = body.lstrip(" ")
        if len(body) - len(stripped) > 3:
            item = _LIST.match(stripped)  # a nested list item: its marker counts at any indentation
            if item:
                spans.append(Span("list", stripped[item.end():], item.group(0).strip()))
                lines[idx] = stripped[item.end():]
            continue
        marked = False
        if stripped.startswith(">>> ") and not rest_quoted:
            rest_quoted = marked = True
            stripped = stripped[4:]
            spans.append(Span("quote", stripped))
        elif stripped.startswith("> ") and not rest_quoted:
            marked = True
            stripped = stripped[2:]
            spans.append(Span("quote", stripped))
        heading = _HEADING.match(stripped)
        item = _LIST.match(stripped)
        if heading:
            spans.append(Span("heading", stripped[heading.end():], str(len(heading.group(1)))))
            stripped, marked = stripped[heading.end():], True
        elif stripped.startswith("-# "):
            spans.append(Span("subtext", stripped[3:]))
            stripped, marked = stripped[3:], True
        elif item:
            spans.append(Span("list", stripped[item.end():], item.group(0).strip()))
            stripped, marked = stripped[item.end():], True
        if marked:
            lines[idx] = stripped
    return "\n".join(lines)


def _escapable(ch: str) -> bool:
    return not (ch.isascii() and ch.isalnum()) and not ch.isspace()


def _inline(s: str, spans: list[Span]) -> str:
    """Reads inline formatting from ``s``: returns the visible text, appending to ``spans``."""
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "\\" and i + 1 < n and _escapable(s[i + 1]):
            out.append(s[i + 1])
            i += 2
            continue
        if ch == "`":
            run = _run(s, i, "`")
            close = _find_run(s, i + run, "`", run)
            if close != -1:
                body = s[i + run:close]
                if len(body) >= 2 and body[0] == " " and body[-1] == " " and body.strip(" "):
                    body = body[1:-1]
                spans.append(Span("code", body))
                out.append(body)
                i = close + run
                continue
            out.append(s[i:i + run])
            i += run
            continue
        if ch == "<":
            m = _MENTION.match(s, i)
            if m:
                spans.append(Span("mention", m.group(0)))
                out.append(m.group(0))
                i = m.end()
                continue
            m = _AUTOLINK.match(s, i)
            if m:
                spans.append(Span("url", m.group(1), m.group(1)))
                out.append(m.group(1))
                i = m.end()
                continue
        if ch == "@" and (s.startswith("@everyone", i) or s.startswith("@here", i)):
            word = "@everyone" if s.startswith("@everyone", i) else "@here"
            spans.append(Span("mention", word))
            out.append(word)
            i += len(word)
            continue
        if ch == "[":
            link = _masked_link(s, i)
            if link is not None:
                inner, url, end = link
                shown = _inline(inner, spans)
                spans.append(Span("link", shown, url))
                out.append(shown)
                i = end
                continue
        if ch in "hH" and (i == 0 or not _WORD.match(s[i - 1])):
            m = _BARE_URL.match(s, i)
            if m:
                spans.append(Span("url", m.group(0), m.group(0)))
                out.append(m.group(0))
                i = m.end()
                continue
        pair = _pair(s, i)
        if pair is not None:
            kind, inner, end = pair
            shown = _inline(inner, spans)
            spans.append(Span(kind, shown))
            out.append(shown)
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _run(s: str, i: int, ch: str) -> int:
    j = i
    while j < len(s) and s[j] == ch:
        j += 1
    return j - i


def _find_run(s: str, i: int, ch: str, length: int) -> int:
    """The start of the next run of exactly ``length`` ``ch``, or -1."""
    while True:
        j = s.find(ch * length, i)
        if j == -1:
            return -1
        run = _run(s, j, ch)
        if run == length and (j == 0 or s[j - 1] != ch):
            return j
        i = j + run


def _find_close(s: str, i: int, delim: str) -> int:
    """The next unescaped ``delim`` at or after ``i`` (skipping escapes), or -1."""
    n = len(s)
    while i < n:
        if s[i] == "\\" and i + 1 < n:
            i += 2
            continue
        if s.startswith(delim, i):
            return i
        i += 1
    return -1


def _after_one(s: str, k: int) -> int:
    """Past the one character at ``k``, or the escape pair (backslash and what it escapes) there."""
    return k + 2 if k + 1 < len(s) and s[k] == "\\" else k + 1


def _pair(s: str, i: int) -> tuple[str, str, int] | None:
    """A delimited inline span starting at ``i``: (kind, inner text, end) or None."""
    for delim, kind in (("**", "bold"), ("__", "underline"), ("~~", "strike"), ("||", "spoiler")):
        if s.startswith(delim, i):
            j = _after_one(s, i + len(delim))  # at least one character (or escape) inside
            while True:
                close = _find_close(s, j, delim)
                if close == -1:
                    break
                if close == i + len(delim):  # at least one character (or escape) inside
                    j = close + 1
                    continue
                if delim[0] in "*_" and s.startswith(delim[0], close + len(delim)):
                    j = close + 1  # "***": the closing pair is the last two
                    continue
                return kind, s[i + len(delim):close], close + len(delim)
    ch = s[i]
    if ch == "*" and i + 1 < len(s) and not s[i + 1].isspace() and s[i + 1] != "*":
        j = _after_one(s, i + 1)
        while True:
            close = _find_close(s, j, "*")
            if close == -1:
                return None
            if close == i + 1:
                j = close + 1
                continue
            if s.startswith("**", close):
                j = close + 2
                continue
            if not s[close - 1].isspace():
                return "italic", s[i + 1:close], close + 1
            j = close + 1
    if ch == "_" and (i == 0 or not _WORD.match(s[i - 1])) and i + 1 < len(s) and s[i + 1] != "_":
        j = _after_one(s, i + 1)
        while True:
            close = _find_close(s, j, "_")
            if close == -1:
                return None
            if close == i + 1:
                j = close + 1
                continue
            after = s[close + 1] if close + 1 < len(s) else ""
            if after == "_":
                j = close + 2
                continue
            if not after or not _WORD.match(after):
                return "italic", s[i + 1:close], close + 1
            j = close + 1
    return None


def _masked_link(s: str, i: int) -> tuple[str, str, int] | None:
    """``[text](url)`` at ``i`` with an http(s) URL: (text, url, end), else None."""
    depth, j, n = 0, i + 1, len(s)
    while j < n:
        c = s[j]
        if c == "\\" and j + 1 < n:
            j += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            if depth == 0:
                break
            depth -= 1
        j += 1
    else:
        return None
    text_end = j
    if not s.startswith("(", text_end + 1):
        return None
    k = text_end + 2
    while k < n and s[k] == " ":
        k += 1
    angle = s.startswith("<", k)
    if angle:
        k += 1
    url_start, parens = k, 0
    while k < n:
        c = s[k]
        if c == "\\" and k + 1 < n:
            k += 2
            continue
        if angle and c == ">":
            break
        if not angle and c.isspace():
            break
        if c == "(":
            parens += 1
        elif c == ")":
            if parens == 0:
                break
            parens -= 1
        k += 1
    url = s[url_start:k]
    if angle:
        if not s.startswith(">", k):
            return None
        k += 1
    while k < n and s[k] == " ":
        k += 1
    if not s.startswith(")", k) or not re.match(r"https?://\S", url, re.I):
        return None
    return s[i + 1:text_end], url, k + 1
