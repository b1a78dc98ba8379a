"""HTML to Discord Markdown, and cutting Markdown to a length. Pure functions.

One module owns "HTML → Discord Markdown" (docs/RENDERING.md lists the rules with examples).
:func:`html_to_markdown` parses the fragment with the standard library's ``HTMLParser`` into a
small tree and renders the tree directly as Discord Markdown:

- text from the HTML stays literal: every Markdown control character in a text node is escaped,
  nothing inside code is;
- ``<pre>`` becomes a fenced block, ``<code>`` inline code, headings a bold line, lists keep
  their nesting, quotes are ``> `` lines (one level), a table row is one line of cells joined by
  " · "; rules, separators, images, empty links, "Read more" and share links are dropped;
- only http(s) links are masked links; a link that shows its own URL is the URL.

Feed HTML is hostile input, so every step is linear in its size: the input is capped, nesting
deeper than :data:`MAX_DEPTH` is flattened to its text, at most :data:`MAX_ATTRS` attributes of
an element are looked at, and no regular expression here can backtrack over unbounded text.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urljoin

__all__ = ["ELLIPSIS", "clean_html", "html_to_markdown", "shorten", "strip_tags"]

# --- limits -------------------------------------------------------------------------------------

MAX_INPUT_CHARS = 400_000  # HTML beyond this is not read (a summary is cut to far less)
MAX_DEPTH = 48  # elements nested deeper are flattened: their text is kept, their markup is not
MAX_ATTRS = 64  # attributes of one element looked at; the rest are ignored
MAX_LIST_LEVELS = 3  # list nesting shown by indentation; deeper lists show at the last level
LIST_INDENT = 2  # spaces per list level
MAX_URL_CHARS = 2048  # a longer link target is not a link (Discord refuses longer URLs)
MAX_LINK_SCAN = 4096  # shorten(): how far a "[" or "<" is followed to its end
MAX_OUTPUT_CHARS = 20_000  # the Markdown of one entry, cut by shorten() (bot.parse stores no more)

ELLIPSIS = "…"
ZWSP = "\u200b"  # keeps two delimiters apart without showing anything
_DELIMITER_CHARS = frozenset("*_~|")
CELL_SEPARATOR = " · "
FENCE = "```"

# --- element classes ----------------------------------------------------------------------------

# Dropped with everything inside them: no readable text (or fallback text such as "your
# browser does not support video").
_DROP = frozenset({"script", "style", "iframe", "audio", "video", "object", "embed", "noscript",
                   "template", "svg", "math", "canvas", "form", "button", "select", "textarea", "head", "title",
                   "picture", "map"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                   "track", "wbr", "param", "keygen"})
_BLOCK = frozenset({"p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "figure",
                    "figcaption", "address", "center", "details", "summary", "dl", "dt", "dd", "fieldset", "legend",
                    "hgroup", "blockquote", "pre", "ul", "ol", "li", "table", "caption", "thead", "tbody", "tfoot",
                    "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "body", "html", "menu", "dir",
                    "listing", "xmp", "plaintext"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_LISTS = frozenset({"ul", "ol", "menu", "dir"})
_PRE = frozenset({"pre", "listing", "xmp", "plaintext"})
_CODE = frozenset({"code", "kbd", "samp", "tt", "var"})
_STYLE = {"b": "**", "strong": "**", "i": "*", "em": "*", "cite": "*", "dfn": "*", "u": "__", "ins": "__",
          "s": "~~", "strike": "~~", "del": "~~"}
# An element whose start tag closes an open element of these kinds first (HTML's implied ends).
_CLOSES = {"li": ("li",), "dt": ("dt", "dd"), "dd": ("dt", "dd"), "tr": ("tr", "td", "th"),
           "td": ("td", "th"), "th": ("td", "th"), "p": ("p",)}
# ...but only up to the nearest of these (a <li> inside a nested <ul> does not close the outer one)
_SCOPES = frozenset({"ul", "ol", "menu", "dir", "table", "blockquote", "div", "td", "th", "dl", "section",
                     "article"})
_KEEP_ATTRS = {"a": ("href",), "img": ("src", "width", "height"), "pre": ("class",), "code": ("class",),
               "ol": ("start",), "div": ("class",), "p": ("class",), "span": ("class",)}
_JUNK_CLASSES = ("feedflare", "sharedaddy", "share-buttons", "social-share", "sharing")

# Links that are not part of the text: "read more" teasers and feed-ad or share buttons
# (FeedBurner's "flare" and ads live under /~ff/, /~r/, /~a/ of the feed's own host too).
_TEASERS = ("read more", "continue reading", "read full article", "read the full article", "read the rest",
            "keep reading", "read full story", "read the full story", "full story", "read on", "more", "read article",
            "view full article", "lire la suite", "weiterlesen", "leer más", "…", "...", "[…]", "[...]")
_AD_URL = re.compile(
    r"https?://(?:[^/\s]{1,253}/~(?:ff|r|a|at)/|feedads\.g\.doubleclick\.net/|"
    r"(?:www\.)?(?:twitter\.com|x\.com)/(?:share|intent/tweet)|(?:www\.)?facebook\.com/shar(?:er|e\.php)|"
    r"(?:www\.)?linkedin\.com/share|(?:www\.)?reddit\.com/submit|(?:www\.)?pinterest\.com/pin/create|"
    r"(?:www\.)?addtoany\.com/(?:add_to|share)|(?:www\.)?tumblr\.com/share|plus\.google\.com/share|"
    r"(?:api\.)?whatsapp\.com/send|t\.me/share|news\.ycombinator\.com/submitlink)", re.I)
_HTTP = re.compile(r"https?://", re.I)
_LANG = re.compile(r"(?:language|lang)-([A-Za-z0-9_+#.-]{1,32})")
_TAG_START = re.compile(r"<[A-Za-z!/?]")
# Text that is itself HTML (escaped twice): it starts with a tag of these, or a comment, and
# holds an end tag of one of them, or the end of a comment.
_HTML_TAGS = (r"(?:p|div|a|br|span|b|i|em|strong|ul|ol|li|img|table|tr|td|h[1-6]|blockquote|pre|code|hr|section"
              r"|article|figure)")
_HTML_TEXT = re.compile(r"\s{0,64}<(?:!--|/?" + _HTML_TAGS + r"[\s/>])", re.I)
_HTML_END = re.compile(r"</" + _HTML_TAGS + r"\s{0,8}>|-->", re.I)

_SPACES = re.compile(r"[ \t\n\r\f\v\u00a0\u2028\u2029\u3000\u1680\u2000-\u200a\u202f\u205f]+")
_RUN_OF_SPACES = re.compile(r" {2,}")
# A paragraph made of separator characters only ("* * *", "---", "~~~", "•••").
_SEPARATOR_CHARS = frozenset("*-_=~•·—–#+ .")


# --- parsing into a tree ------------------------------------------------------------------------

def _looks_like_html(text: str) -> bool:
    """Is this text node HTML escaped twice (it starts with a tag and holds an end tag)?"""
    return "<" in text and bool(_HTML_TEXT.match(text)) and _HTML_END.search(text) is not None


class _Node:
    __slots__ = ("attrs", "children", "has_block", "tag")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[_Node | str] = []
        self.has_block = False  # a block element somewhere below (set by _prepare)


def _defuse_unclosed(fragment: str) -> str:
    """Markup after the last ">" cannot close: shown as text. ``HTMLParser`` rescans an unclosed
    tag to the end of the input once per "<", which is quadratic ("<a<a<a…")."""
    last = fragment.rfind(">")
    if fragment.find("<", last + 1) == -1:
        return fragment
    return fragment[:last + 1] + fragment[last + 1:].replace("<", "&lt;")


def _resolve(url: str, base: str | None) -> str | None:
    """An absolute http(s) or mailto URL, or None (javascript:, data:, relative without a base)."""
    url = url.strip()
    if base:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    lowered = url[:8].lower()
    if lowered.startswith(("http://", "https://", "mailto:")):
        return url
    return None


class _TreeBuilder(HTMLParser):
    """Builds a bounded tree: dropped elements skipped, depth capped, implied ends applied."""

    def __init__(self, base: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.root = _Node("root", {})
        self.stack: list[_Node] = [self.root]
        self.skip = 0  # inside a dropped element
        self.junk: str | None = None  # the tag of the junk-class element being skipped ("div")
        self.junk_depth = 0  # how many elements of that tag are open inside it
        self.flattened: dict[str, int] = {}  # start tags ignored past MAX_DEPTH, by name
        self.first_image: str | None = None
        self.raw = 0  # inside <pre> or <code>: text is code, never HTML again
        self.reparsing = False

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> dict[str, str]:
        wanted = _KEEP_ATTRS.get(tag)
        if not wanted:
            return {}
        out: dict[str, str] = {}
        for name, value in attrs[:MAX_ATTRS]:
            if value is not None and name in wanted and name not in out:
                out[name] = value
        return out

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP:
            if tag not in _VOID:
                self.skip += 1
            return
        if self.skip:
            if tag == self.junk:
                self.junk_depth += 1
            return
        kept = self._attrs(tag, attrs)
        if tag == "img":
            self._image(kept)
            return
        if any(c in kept.get("class", "")[:256] for c in _JUNK_CLASSES):
            if tag not in _VOID:
                self.skip += 1
                self.junk, self.junk_depth = tag, 1
            return
        closes = _CLOSES.get(tag)
        if closes:
            for i in range(len(self.stack) - 1, 0, -1):
                name = self.stack[i].tag
                if name in closes:
                    self._close_from(i)
                    break
                if name in _SCOPES:
                    break
        node = _Node(tag, kept)
        self.stack[-1].children.append(node)
        if tag in _VOID:
            return
        if len(self.stack) > MAX_DEPTH:
            self.stack[-1].children.pop()
            self.flattened[tag] = self.flattened.get(tag, 0) + 1
            return
        self.stack.append(node)
        if tag in _PRE or tag in _CODE:
            self.raw += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP:
            if tag not in _VOID:
                self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            if tag == self.junk:
                self.junk_depth -= 1
                if not self.junk_depth:
                    self.junk = None
                    self.skip = max(0, self.skip - 1)
            return
        if self.flattened.get(tag):
            self.flattened[tag] -= 1
            return
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                self._close_from(i)
                return

    def _close_from(self, i: int) -> None:
        """Closes the open elements from stack[i] up (MAX_DEPTH of them at most)."""
        for node in self.stack[i:]:
            if node.tag in _PRE or node.tag in _CODE:
                self.raw -= 1
        del self.stack[i:]

    def handle_data(self, data: str) -> None:
        if self.skip or not data:
            return
        if not self.raw and not self.reparsing and _looks_like_html(data):
            self._reparse(data)
            return
        self.stack[-1].children.append(data)  # runs of text are joined once, by _prepare

    def _reparse(self, text: str) -> None:
        """Text that is itself HTML (a description escaped twice): parsed once more, in place."""
        inner = _Relay(self)
        self.reparsing = True
        try:
            inner.feed(_defuse_unclosed(text))
            inner.close()
        finally:
            self.reparsing = False

    def _image(self, attrs: dict[str, str]) -> None:
        if self.first_image is not None or "src" not in attrs:
            return
        if attrs.get("width", "").strip() in ("0", "1") or attrs.get("height", "").strip() in ("0", "1"):
            return  # a tracking pixel
        src = _resolve(attrs["src"], self.base)
        if src and _HTTP.match(src) and not _AD_URL.match(src):
            self.first_image = src


class _Relay(HTMLParser):
    """Feeds the markup found inside a text node to the outer tree builder."""

    def __init__(self, outer: _TreeBuilder) -> None:
        super().__init__(convert_charrefs=True)
        self.outer = outer

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.outer.handle_starttag(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.outer.handle_startendtag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self.outer.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        self.outer.handle_data(data)


# --- escaping -----------------------------------------------------------------------------------

_DELIMITER_IN_URL = re.compile(r"[*`]|~~|__|\|\|")
_URL_END_TRIM = frozenset(".,:;\"')]!?")
# What _escape_plain escapes: inline control characters; "<" only where it could open a mention,
# an emoji, a timestamp or a link ("<@", "<#", "<:", "</", "<t:", "<a:", "<http"), or at the end
# of the text (the next text node could continue it); "@" only before "everyone" or "here" (or
# at the end); the ":" of "http://" that was not kept as a link. Every lookaround is bounded.
_NEEDS_ESCAPE = re.compile(
    r"[\\*_~`|\[\]]|<(?=[@#:/]|[ta]:|http|h(?:t(?:tp?)?)?\Z|[ta]?\Z)|@(?=everyone|here|\Z)"
    r"|(?:(?<=http)|(?<=https)):(?=//)", re.I)


def _escape_plain(text: str) -> str:
    return _NEEDS_ESCAPE.sub(r"\\\g<0>", text)


def _escape_text(text: str) -> str:
    """Escapes a text node's Markdown control characters; a URL in it becomes ``<URL>``, which
    Discord shows as the (clickable) URL, since escapes inside a bare URL would change it."""
    if "://" not in text:
        return _escape_plain(text)
    out = []
    pos = scanned = 0
    n = len(text)
    for m in _HTTP.finditer(text):
        start = m.start()
        if start < scanned:
            continue
        end = m.end()
        while end < n and not text[end].isspace() and text[end] not in "<>":
            end += 1
        scanned = end
        while end > m.end() and text[end - 1] in _URL_END_TRIM:
            end -= 1
        if end == m.end() or end - start > MAX_URL_CHARS or _DELIMITER_IN_URL.search(text, start, end):
            continue  # not a link: shown as text (a "**" in it would close bold around it)
        out.append(_escape_plain(text[pos:start]))
        out.append(f"<{text[start:end]}>")
        pos = end
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def _escape_line_start(line: str) -> str:
    """Escapes what would start a heading, quote or list at the start of a line."""
    if not line:
        return line
    c = line[0]
    if c in "#>-+":
        return "\\" + line
    if c.isdigit():
        i = 1
        while i < len(line) and i < 12 and line[i].isdigit():
            i += 1
        # "1. " (or "1." alone) would start a list; "3.9.0" and "2.5x" would not
        if i < len(line) and line[i] in ".)" and not line[i + 1:i + 2].strip():
            return line[:i] + "\\" + line[i:]
    return line


# --- rendering ----------------------------------------------------------------------------------

def _touching(before: str, after: str) -> bool:
    """Would ``before + after`` put two delimiters side by side ("**a**" + "*b*")?"""
    return before[-1:] in _DELIMITER_CHARS and before[-2:-1] != "\\" and after[:1] in _DELIMITER_CHARS


class _Inline:
    """Builds one paragraph of inline Markdown."""

    __slots__ = ("after_link", "last_mark", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.after_link = False
        self.last_mark: str | None = None  # the mark of a styled span that ends the paragraph so far

    def text(self, md: str) -> None:
        if md:
            if self.after_link and md[:1].isalnum():
                self.parts.append(" ")
            self.parts.append(md)
            self.after_link = False
            self.last_mark = None

    def span(self, mark: str, core: str) -> None:
        """``mark core mark``. Spans side by side must not read as other delimiters: the same
        style twice is one span ("*a**b*" would be "a**b" in italics); different styles, and an
        italic span that starts with bold, are kept apart by a zero-width space."""
        if mark == "*" and core.startswith("*"):
            core = ZWSP + core
        prev = self.parts[-1] if self.parts else ""
        if self.last_mark == mark and prev.endswith(mark):
            head = prev[: -len(mark)]
            self.parts[-1] = head + (ZWSP if _touching(head, core) else "") + core + mark
        else:
            if _touching(prev, mark):
                self.parts.append(ZWSP)
            self.text(f"{mark}{core}{mark}")
        self.last_mark = mark

    def link(self, md: str) -> None:
        if self.parts and (self.after_link or self.parts[-1][-1:].isalnum()):
            self.parts.append(" ")  # "submitted by<a>x</a>to": a link is a word of its own
        self.parts.append(md)
        self.after_link = True
        self.last_mark = None

    def markup(self, md: str) -> None:
        self.parts.append(md)
        self.last_mark = None

    def finish(self) -> str:
        """The paragraph: whitespace collapsed as HTML does, each line stripped and escaped at
        its start, at most one blank line in a row."""
        text = "".join(self.parts)
        if "  " in text:
            text = _RUN_OF_SPACES.sub(" ", text)
        lines: list[str] = []
        for line in text.split("\n"):
            line = _escape_line_start(line.strip(" "))
            if line or (lines and lines[-1]):
                lines.append(line)
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)


def _is_separator(md: str) -> bool:
    """A paragraph of separator characters only ("* * *", "---"): escapes count as their character."""
    shown = 0
    i, n = 0, len(md)
    while i < n:
        c = md[i]
        if c == "\\" and i + 1 < n:
            i += 1
            c = md[i]
        if c not in _SEPARATOR_CHARS:
            return False
        shown += c not in " ."
        i += 1
    return shown >= 3


class _Block:
    __slots__ = ("raw", "text")

    def __init__(self, text: str, raw: bool = False) -> None:
        self.text = text
        self.raw = raw  # a code block: no prefixes, no escaping, kept verbatim


def _plain_text(node: _Node | str, out: list[str]) -> None:
    """The text of a subtree, as is (for code), with <br> as a line break."""
    stack: list[_Node | str] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif item.tag == "br":
            out.append("\n")
        else:
            if item.tag in _BLOCK and item.tag not in _PRE and out and not out[-1].endswith("\n"):
                out.append("\n")
            stack.extend(reversed(item.children))


def _joined_text(children: list[_Node | str]) -> list[_Node | str]:
    out: list[_Node | str] = []
    run: list[str] = []
    for c in children:
        if isinstance(c, str):
            run.append(c)
            continue
        if run:
            out.append("".join(run))
            run = []
        out.append(c)
    if run:
        out.append("".join(run))
    return out


def _prepare(root: _Node, base: str | None) -> None:
    """One pass over the tree: runs of text joined, link targets resolved, and which elements
    hold blocks."""
    stack: list[tuple[_Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            node.has_block = any(isinstance(c, _Node) and (c.tag in _BLOCK or c.has_block) for c in node.children)
            continue
        pairs = zip(node.children, node.children[1:], strict=False)
        if any(isinstance(a, str) and isinstance(b, str) for a, b in pairs):
            node.children = _joined_text(node.children)
        if node.tag == "a" and "href" in node.attrs:
            resolved = _resolve(node.attrs["href"], base)
            if resolved is None:
                del node.attrs["href"]
            else:
                node.attrs["href"] = resolved
        stack.append((node, True))
        stack.extend((c, False) for c in node.children if isinstance(c, _Node))


def _inline_code(code: str) -> str:
    """``code``, safe whatever backticks it holds: three backticks would open a code block, so
    a run of them is split by a zero-width space and the span is fenced by two."""
    code = " ".join(code.split())
    if not code:
        return ""
    if "`" not in code:
        return f"`{code}`"
    while "``" in code:
        code = code.replace("``", "`\u200b`")
    if code.startswith("`") or code.endswith("`"):
        code = f" {code} "
    return f"``{code}``"


def _safe_url(url: str) -> str:
    """A link target that cannot end the formatting around the link ("**" in it would close
    bold) nor the link itself: those characters percent-encoded, as URLs allow."""
    url = "".join(c if not c.isspace() else "%20" for c in url.strip())
    url = url.replace("<", "%3C").replace(">", "%3E").replace("*", "%2A").replace("||", "%7C%7C")
    return url.replace("~~", "~%7E").replace("__", "_%5F")


def _fenced(code: str, lang: str | None) -> str:
    code = code.replace("\r\n", "\n").replace("\r", "\n").replace(FENCE, "``\u200b`")
    lines = code.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return ""
    body = "\n".join(line.rstrip() for line in lines)
    return f"{FENCE}{lang or ''}\n{body}\n{FENCE}"


def _language(node: _Node) -> str | None:
    for n in [node] + [c for c in node.children if isinstance(c, _Node) and c.tag in _CODE]:
        m = _LANG.search(n.attrs.get("class", "")[:256])
        if m:
            return m.group(1)
    return None


_LAYOUT_BLOCKS = _LISTS | _PRE | _HEADINGS | {"blockquote", "table"}


def _layout_cell(cell: _Node) -> bool:
    """A table cell used for page layout rather than data: under its wrappers (a chain of
    single blocks, such as Reddit's ``<div class="md">``) it holds two blocks or more, or a
    list, code block, heading, quote or table."""
    node = cell
    for _ in range(MAX_DEPTH):
        blocks = [c for c in node.children if isinstance(c, _Node) and (c.tag in _BLOCK or c.has_block)]
        if len(blocks) >= 2 or any(b.tag in _LAYOUT_BLOCKS for b in blocks):
            return True
        if len(blocks) != 1:
            return False
        node = blocks[0]
    return False


class _Renderer:
    def __init__(self) -> None:
        self.styles: set[str] = set()
        self.in_link = False

    # blocks ----------------------------------------------------------------------------------
    def blocks(self, node: _Node, quote: bool, level: int) -> list[_Block]:
        """The blocks of a container's children (inline runs become paragraphs)."""
        out: list[_Block] = []
        para = _Inline()

        def flush() -> None:
            nonlocal para
            text = para.finish()
            if text and not _is_separator(text):
                out.append(_Block(text))
            para = _Inline()

        for child in node.children:
            if isinstance(child, str) or (child.tag not in _BLOCK and not child.has_block):
                self.inline(child, para)
                continue
            flush()
            out.extend(self.block(child, quote, level))
        flush()
        return out

    def block(self, node: _Node, quote: bool, level: int) -> list[_Block]:
        tag = node.tag
        if tag == "hr":
            return []
        if tag in _PRE:
            parts: list[str] = []
            _plain_text(node, parts)
            code = _fenced("".join(parts), _language(node))
            return [_Block(code, raw=True)] if code else []
        if tag in _HEADINGS:
            para = _Inline()
            self.styled(node, "**", para)
            text = para.finish().replace("\n", " ")
            return [_Block(text)] if text else []
        if tag in _LISTS:
            return self.list_block(node, quote, level)
        if tag == "li":  # an item outside a list
            return self.item(node, "- ", quote, level)
        if tag == "blockquote":
            inner = self.blocks(node, True, level)
            if quote:  # nested quotes: one level
                return inner
            out: list[_Block] = []
            lines: list[str] = []
            for b in [*inner, _Block("", raw=True)]:
                if not b.raw:
                    lines.extend("> " + line for line in b.text.split("\n") if line.strip())
                    continue
                if lines:
                    out.append(_Block("\n".join(lines)))
                    lines = []
                if b.text:
                    out.append(b)
            return out
        if tag in ("table", "tr", "thead", "tbody", "tfoot"):
            return self.table(node, quote, level)
        return self.blocks(node, quote, level)

    def list_block(self, node: _Node, quote: bool, level: int) -> list[_Block]:
        ordered = node.tag == "ol"
        try:
            number = int(node.attrs.get("start", "1").strip()[:9]) if ordered else 1
        except ValueError:
            number = 1
        lines: list[str] = []
        raws: list[_Block] = []
        for child in node.children:
            if isinstance(child, str):
                if child.strip():
                    lines.extend(b.text for b in self._as_items([child], quote, level))
                continue
            if child.tag == "li":
                marker = f"{number}. " if ordered else "- "
                number += 1
                for b in self.item(child, marker, quote, level):
                    (raws.append(b) if b.raw else lines.append(b.text))
            elif child.tag in _LISTS:
                for b in self.list_block(child, quote, level + 1):
                    (raws.append(b) if b.raw else lines.append(b.text))
            else:
                lines.extend(b.text for b in self._as_items([child], quote, level))
        out = [_Block("\n".join(lines))] if lines else []
        return out + raws

    def _as_items(self, children: list[_Node | str], quote: bool, level: int) -> list[_Block]:
        holder = _Node("li", {})
        holder.children = children
        return [b for b in self.item(holder, "- ", quote, level) if not b.raw]

    def item(self, node: _Node, marker: str, quote: bool, level: int) -> list[_Block]:
        """One list item: the marker on its first line, its other lines indented under it, a
        nested list indented one level more, a code block after the list."""
        indent = " " * (LIST_INDENT * min(level, MAX_LIST_LEVELS - 1))
        pad = indent + " " * len(marker)
        lines: list[tuple[bool, str]] = []  # (the item's own line?, text)
        raws: list[_Block] = []
        own = [_Node("li", {})]

        def take_own() -> None:
            for b in self.blocks(own[0], quote, level):
                if b.raw:
                    raws.append(b)
                else:
                    lines.extend((True, line) for line in b.text.split("\n") if line)
            own[0] = _Node("li", {})

        # an item that is only a nested list ("<li><ul>…") shows that list at its own level
        has_own = any(not (isinstance(c, _Node) and c.tag in _LISTS) and not (isinstance(c, str) and not c.strip())
                      for c in node.children)
        for child in node.children:
            if isinstance(child, _Node) and child.tag in _LISTS:
                take_own()
                for b in self.list_block(child, quote, level + 1 if has_own else level):
                    if b.raw:
                        raws.append(b)
                    else:
                        lines.extend((False, line) for line in b.text.split("\n"))
            else:
                own[0].children.append(child)
        take_own()
        if not lines:
            return raws
        out: list[str] = []
        first = any(is_own for is_own, _ in lines)  # no own line: no marker line either
        for is_own, line in lines:
            if first:
                out.append(indent + marker + line if is_own else indent + marker.rstrip())
                if not is_own:
                    out.append(line)
                first = False
            else:
                out.append(pad + line if is_own else line)
        return [_Block("\n".join(out)), *raws]

    def table(self, node: _Node, quote: bool, level: int) -> list[_Block]:
        """A data table: one line per row, cells joined by CELL_SEPARATOR. A layout table (a
        cell that holds paragraphs, lists or other blocks, as Reddit wraps every post in):
        each cell's blocks in order, as if there were no table."""
        rows: list[list[_Node]] = []  # the cells of each row (a caption or a loose cell: a row of one)
        stack: list[_Node | str] = [node]
        while stack:  # rows in document order, however deeply nested in thead/tbody
            item = stack.pop()
            if isinstance(item, str):
                continue
            if item.tag == "tr":
                cells: list[_Node] = []
                loose = _Node("td", {})
                for cell in item.children:
                    if isinstance(cell, _Node) and cell.tag in ("td", "th"):
                        cells.append(cell)
                    else:
                        loose.children.append(cell)
                if loose.children:
                    cells.append(loose)
                rows.append(cells)
            elif item.tag in ("caption", "td", "th"):  # a caption, or a cell outside a row
                rows.append([item])
            else:
                stack.extend(reversed(item.children))
        if any(_layout_cell(cell) for cells in rows for cell in cells):
            return [b for cells in rows for cell in cells for b in self.blocks(cell, quote, level)]
        lines = [CELL_SEPARATOR.join(t for t in (self.flat(cell) for cell in cells) if t) for cells in rows]
        return [_Block("\n".join(line for line in lines if line))] if any(lines) else []

    def flat(self, node: _Node) -> str:
        """A table cell on one line: its blocks joined by spaces, code as inline code."""
        parts = []
        for b in self.blocks(node, True, MAX_LIST_LEVELS):
            if b.raw:
                body = b.text[len(FENCE):-len(FENCE)]
                body = body.split("\n", 1)[1] if "\n" in body else body
                parts.append(_inline_code(body))
            else:
                parts.append(" ".join(line.strip() for line in b.text.split("\n")))
        return " ".join(p for p in parts if p)

    # inline ----------------------------------------------------------------------------------
    def inline(self, item: _Node | str, para: _Inline) -> None:
        """Inline Markdown of a node; inside a paragraph, a heading, a link or a cell, blocks
        below it are flattened to text."""
        if isinstance(item, str):
            para.text(_escape_text(_SPACES.sub(" ", item)))
            return
        tag = item.tag
        if tag == "br":
            para.markup("\n")
            return
        if tag in _VOID or tag == "img":
            return
        if tag in _CODE or tag in _PRE:
            parts: list[str] = []
            _plain_text(item, parts)
            code = _inline_code("".join(parts))
            if code:
                para.text(code)
            return
        if tag == "a":
            self.anchor(item, para)
            return
        style = _STYLE.get(tag)
        if style:
            self.styled(item, style, para)
            return
        block = tag in _BLOCK
        if block:
            para.markup(" ")
        for child in item.children:
            self.inline(child, para)
        if block:
            para.markup(" ")

    def styled(self, node: _Node, mark: str, para: _Inline) -> None:
        if mark in self.styles:
            for child in node.children:
                self.inline(child, para)
            return
        inner = _Inline()
        self.styles.add(mark)
        try:
            for child in node.children:
                self.inline(child, inner)
        finally:
            self.styles.discard(mark)
        text = "".join(inner.parts)
        if "  " in text:
            text = _RUN_OF_SPACES.sub(" ", text)
        core = text.strip(" \n")
        if not core:
            if text:
                para.markup(" ")
            return
        lead = text[:len(text) - len(text.lstrip(" \n"))]
        trail = text[len(text.rstrip(" \n")):]
        if lead:
            para.markup(" ")
        para.span(mark, core)
        if trail:
            para.markup(" ")

    def anchor(self, node: _Node, para: _Inline) -> None:
        href = _resolve(node.attrs.get("href", ""), None) if "href" in node.attrs else None
        if self.in_link or href is None or not _HTTP.match(href) or len(href) > MAX_URL_CHARS:
            for child in node.children:  # not a link Discord would mask: its text
                self.inline(child, para)
            return
        if _AD_URL.match(href):
            return
        inner = _Inline()
        self.in_link = True
        try:
            for child in node.children:
                self.inline(child, inner)
        finally:
            self.in_link = False
        text = "".join(inner.parts).replace("\n", " ")
        if "  " in text:
            text = _RUN_OF_SPACES.sub(" ", text)
        core = text.strip(" ")
        parts: list[str] = []
        _plain_text(node, parts)
        shown = " ".join("".join(parts).split())
        if not core or not shown:
            if text:
                para.markup(" ")
            return
        lowered = shown.lower()
        if lowered.strip(" »>→.:") in _TEASERS or lowered.startswith(("continue reading", "read more")):
            return
        url = _safe_url(href)
        if text[:1] == " ":
            para.markup(" ")
        if shown.rstrip("/") == url.rstrip("/") or shown.rstrip("/") == href.strip().rstrip("/"):
            para.link(f"<{url}>")
        else:
            target = f"<{url}>" if "(" in url or ")" in url else url
            para.link(f"[{core}]({target})")
        if text[-1:] == " ":
            para.markup(" ")


# --- public API ---------------------------------------------------------------------------------

def _tree(fragment: str, base: str | None, reparse: bool = True) -> _TreeBuilder:
    builder = _TreeBuilder(base)
    builder.reparsing = not reparse  # (already unescaped once: text that looks like HTML stays text)
    builder.feed(_defuse_unclosed(fragment))
    builder.close()
    return builder


def _join(blocks: list[_Block]) -> str:
    return "\n\n".join(b.text for b in blocks if b.text)


def _tidy_end(md: str) -> str:
    """A summary that ends in "[…]" (a teaser's own mark) ends in "…"."""
    for mark in ("\\[…\\]", "\\[...\\]"):
        if md.endswith(mark):
            md = md[: -len(mark)].rstrip() + ELLIPSIS
    return md


def _plain_to_markdown(text: str) -> str:
    """A description without markup: its line breaks kept, the XML's indentation gone."""
    text = html.unescape(text).replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    blank = False
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        if not line:
            blank = bool(out)
            continue
        if blank:
            out.append("")
            blank = False
        out.append(_escape_line_start(_escape_text(line)))
    return _tidy_end("\n".join(out))


def html_to_markdown(fragment: str, base: str | None = None) -> tuple[str, str | None]:
    """Converts an entry's HTML to Discord Markdown. Returns (markdown, first image URL)."""
    if not fragment or not fragment.strip():
        return "", None
    fragment = fragment[:MAX_INPUT_CHARS]
    reparse = True
    if not _TAG_START.search(fragment):
        unescaped = html.unescape(fragment)
        if not _looks_like_html(unescaped):
            return shorten(_plain_to_markdown(fragment), MAX_OUTPUT_CHARS), None
        fragment, reparse = unescaped, False  # all of it HTML escaped twice: unescaped once only
    try:
        builder = _tree(fragment, base, reparse)
    except Exception:  # HTMLParser is lenient, but never let markup break a feed
        return _plain_to_markdown(strip_tags(fragment)), None
    _prepare(builder.root, base)
    md = _join(_Renderer().blocks(builder.root, False, 0))
    return shorten(_tidy_end(md), MAX_OUTPUT_CHARS), builder.first_image


def clean_html(fragment: str, base: str | None = None) -> tuple[str, str | None]:
    """The fragment as safe HTML (dropped elements gone, relative URLs resolved, only href/src
    kept, for http(s) and mailto) and its first image URL."""
    try:
        builder = _tree(fragment[:MAX_INPUT_CHARS], base)
    except Exception:
        return html.escape(strip_tags(fragment), quote=False), None
    _prepare(builder.root, base)
    out: list[str] = []
    stack: list[_Node | str | tuple[str]] = list(reversed(builder.root.children))
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            out.append(f"</{item[0]}>")
        elif isinstance(item, str):
            out.append(html.escape(item, quote=False))
        else:
            href = item.attrs.get("href") if item.tag == "a" else None
            out.append(f'<{item.tag} href="{html.escape(href, quote=True)}">' if href else f"<{item.tag}>")
            if item.tag not in _VOID:
                stack.append((item.tag,))
                stack.extend(reversed(item.children))
    return "".join(out), builder.first_image


def strip_tags(text: str) -> str:
    """Plain text of a short HTML string (a title): tags removed, entities decoded. Linear: a
    "<" without a ">" after it is text, and so is everything after it."""
    if not text:
        return ""
    if "<" in text:
        out: list[str] = []
        pos = 0
        while True:
            lt = text.find("<", pos)
            if lt == -1:
                out.append(text[pos:])
                break
            gt = text.find(">", lt + 1)
            if gt == -1:
                out.append(text[pos:])
                break
            out.append(text[pos:lt])
            pos = gt + 1
        text = "".join(out)
    return " ".join(html.unescape(text).split())


# --- cutting to a length ------------------------------------------------------------------------

_SENTENCE_END = frozenset(".!?…")
# what starts a quote, list item or heading line (bounded: no backtracking over long runs)
_LINE_MARKER = re.compile(r" {0,12}(?:>>> |> |[-*] |\d{1,9}\. |#{1,3} |-# )")
_CLOSING_PUNCT = frozenset("\"')]»”’")
_DELIMS = ("**", "__", "~~", "||")


class _NextFinder:
    """``s.find(needle, i)`` for increasing-ish ``i`` without rescanning: linear overall."""

    __slots__ = ("cache", "s")

    def __init__(self, s: str) -> None:
        self.s = s
        self.cache: dict[str, tuple[int, int]] = {}

    def find(self, needle: str, i: int) -> int:
        hit = self.cache.get(needle)
        if hit is not None and hit[0] <= i and (hit[1] >= i or hit[1] == -1):
            return hit[1]
        j = self.s.find(needle, i)
        self.cache[needle] = (i, j)
        return j


_SHORTEN_SPECIAL = re.compile(r"[\\`\[<*_~|\n]")  # where shorten() looks closer; text between is plain
_SENTENCE_CUT = re.compile(r"[.!?…][\"')\]»”’]{0,3}(?= )")  # a sentence end: the cut falls at the space after it


def shorten(markdown: str, limit: int) -> str:
    """Cuts Discord Markdown to at most ``limit`` characters, ending with "…".

    The cut falls at a paragraph end, else at a sentence end, when one is in the last third of
    the room, else at a word; never inside a link, inline code, a URL, an escape, or between a
    quote or list marker and its text. Formatting left open is closed (``**bold…**``); a cut
    inside a code block closes the block. One pass over the first ``limit`` characters, which
    jumps from one Markdown character or space to the next.
    """
    if len(markdown) <= limit:
        return markdown
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:max(limit, 0)]
    s = markdown
    n = len(s)
    finder = _NextFinder(s)
    room = limit - len(ELLIPSIS)
    third = limit * 2 // 3
    best: dict[int, tuple[int, str]] = {}  # 2 = paragraph end, 1 = sentence end, 0 = word end
    fallback: tuple[int, str] | None = None  # anywhere that is not inside an atom (a long word)
    stack: list[str] = []
    closing = ""
    scan_to = min(n, room + 1)
    first = _LINE_MARKER.match(s)
    i = content = first.end() if first else 0  # content: where the line's own text starts
    next_url = -1
    at_line_start = True
    while i < scan_to:
        if next_url < i:
            u = _HTTP.search(s, i)
            next_url = u.start() if u else n
        m = _SHORTEN_SPECIAL.search(s, i, scan_to)
        j = min(m.start() if m else scan_to, next_url)
        if j > i:  # plain text up to s[j]: cut points found with a few searches, not char by char
            q = min(j, room - len(closing))
            lo = max(i, content + 1)
            if q >= lo:
                fallback = (q, closing)
                w = s.rfind(" ", lo, q + 1)
                if w != -1:
                    best[0] = (w, closing)
                if q >= third:
                    last = None
                    for found in _SENTENCE_CUT.finditer(s, max(lo, third) - 4, q + 1):
                        last = found
                    if last is not None and last.end() >= max(lo, third):
                        best[1] = (last.end(), closing)
            i = j
            at_line_start = False
            if i >= scan_to:
                break
        c = s[i]
        if i > content and i + len(closing) <= room:  # a cut before s[i]
            fallback = (i, closing)
            if c == "\n" and not s[i - 1].isspace():
                best[0] = (i, closing)
                k = i - 1
                while k > 0 and s[k] in _CLOSING_PUNCT:
                    k -= 1
                if i >= third and s[k] in _SENTENCE_END:
                    best[1] = (i, closing)
                if i >= third and not stack and s.startswith("\n\n", i):
                    best[2] = (i, closing)
        if i == next_url:  # a bare URL: whole or not at all
            while i < n and not s[i].isspace() and i - next_url <= MAX_URL_CHARS:
                i += 1
            at_line_start = False
            continue
        if c == "\n":
            i += 1
            at_line_start = True
            marker = _LINE_MARKER.match(s, i)
            if marker:  # no cut between a quote, list or heading marker and its text
                i = content = marker.end()
            continue
        if c == "\\":
            i += 2
            at_line_start = False
            continue
        if s.startswith(FENCE, i):
            end = finder.find(FENCE, i + len(FENCE))
            if end != -1:
                i, code_cut = _cut_points_in_code(s, i, end, room, closing, best, scan_to)
                fallback = code_cut or fallback
                continue
        if c == "`":
            run = 1
            while i + run < n and s[i + run] == "`":
                run += 1
            end = finder.find("`" * run, i + run)
            i = end + run if end != -1 and end - i <= MAX_LINK_SCAN else i + run
            at_line_start = False
            continue
        if c == "[":
            close = finder.find("](", i + 1)
            if close != -1 and close - i <= MAX_LINK_SCAN and "\n" not in s[i:close]:
                end = finder.find(")", close + 2)
                if end != -1 and end - close <= MAX_URL_CHARS + 4:
                    i = end + 1
                    at_line_start = False
                    continue
        if c == "<":
            end = finder.find(">", i + 1)
            if end != -1 and end - i <= MAX_URL_CHARS + 2 and not _SPACES.search(s, i + 1, end):
                i = end + 1
                at_line_start = False
                continue
        step = 1
        for d in _DELIMS:
            if s.startswith(d, i):
                if stack and stack[-1] == d:
                    stack.pop()
                elif i + len(d) < n and not s[i + len(d)].isspace() and finder.find(d, i + len(d)) != -1:
                    stack.append(d)
                closing = "".join(reversed(stack))
                step = len(d)
                break
        else:
            if c == "*":
                if stack and stack[-1] == "*" and not s[i - 1].isspace():
                    stack.pop()
                elif not (at_line_start and s.startswith("* ", i)) and i + 1 < n and not s[i + 1].isspace() \
                        and finder.find("*", i + 1) != -1:
                    stack.append("*")
                closing = "".join(reversed(stack))
        at_line_start = False
        i += step
    sep = ""
    for kind in (2, 1, 0):
        if kind in best:
            pos, closing = best[kind]
            if kind and pos + len(closing) + 1 <= room:
                sep = " "  # "A sentence. …" rather than "sentence.…"
            break
    else:
        if fallback is None:
            return ELLIPSIS
        pos, closing = fallback
    in_code = closing.startswith("\n" + FENCE)
    head = s[:pos] if in_code else s[:pos].rstrip()
    tail = len(head)
    while tail and head[tail - 1] == "\\":
        tail -= 1
    if (len(head) - tail) % 2:
        head = head[:-1]  # never leave a backslash that would escape the ellipsis
    if not in_code:
        for d in sorted(set(_DELIMS) | {"*"}, key=len, reverse=True):
            while closing.startswith(d) and head.endswith(d):
                # a pair opened right before the cut: drop the opener instead of closing it empty
                head, closing = head[:-len(d)].rstrip(), closing[len(d):]
    return head + closing + sep + ELLIPSIS


def _cut_points_in_code(s: str, start: int, end: int, room: int, closing: str,
                        best: dict[int, tuple[int, str]], scan_to: int) -> tuple[int, tuple[int, str] | None]:
    """Cut points inside the code block s[start:end] (a cut closes the block): each line end
    is a word end; anywhere in a line is the last resort. Returns where to go on, and that."""
    code_closing = "\n" + FENCE + closing
    body = s.find("\n", start, end)
    if body == -1:  # one line: its language or its code, uncut
        return end + len(FENCE), None
    limit = min(end, scan_to, room - len(code_closing))
    p = body + 1
    while p <= limit:
        nl = s.find("\n", p, limit + 1)
        if nl == -1:
            break
        best[0] = (nl, code_closing)
        p = nl + 1
    fallback = (limit, code_closing) if limit > body else None
    return end + len(FENCE), fallback
