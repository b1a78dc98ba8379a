"""HTML to Discord Markdown. Pure functions."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urljoin

import html2text

# Elements dropped with everything inside them: they carry no readable text
# (or carry fallback text such as "your browser does not support video").
_DROP = frozenset({"script", "style", "iframe", "audio", "video", "object", "embed", "noscript",
                   "template", "svg", "math", "canvas", "form", "button", "select", "textarea", "head", "title"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                   "track", "wbr", "param"})
_URL_ATTRS = {"a": "href", "img": "src"}
_KEEP_ATTRS = {"a": ("href", "title"), "img": ("src", "alt")}


class _Cleaner(HTMLParser):
    """Drops unsafe or useless elements, resolves relative URLs, finds the first image."""

    def __init__(self, base: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.out: list[str] = []
        self.skip = 0
        self.first_image: str | None = None

    def _resolve(self, url: str) -> str:
        url = url.strip()
        if self.base:
            try:
                return urljoin(self.base, url)
            except ValueError:
                return url
        return url

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP:
            if tag not in _VOID:
                self.skip += 1
            return
        if self.skip:
            return
        kept = []
        for name, value in attrs:
            if value is None or name not in _KEEP_ATTRS.get(tag, ()):
                continue
            if name == _URL_ATTRS.get(tag):
                value = self._resolve(value)
                if not re.match(r"^(https?:|mailto:)", value, re.I):
                    continue  # javascript:, data:, relative without base
                if tag == "img" and self.first_image is None:
                    self.first_image = value
            kept.append(f'{name}="{html.escape(value, quote=True)}"')
        self.out.append(f"<{tag}{' ' if kept else ''}{' '.join(kept)}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _DROP and tag not in _VOID:
            self.skip = max(0, self.skip - 1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP:
            if tag not in _VOID:
                self.skip = max(0, self.skip - 1)
            return
        if not self.skip:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(html.escape(data, quote=False))


def clean_html(fragment: str, base: str | None = None) -> tuple[str, str | None]:
    """Returns (cleaned HTML, first image URL)."""
    cleaner = _Cleaner(base)
    try:
        cleaner.feed(fragment)
        cleaner.close()
    except Exception:  # HTMLParser is lenient, but never let markup break a feed
        return html.escape(strip_tags(fragment), quote=False), None
    return "".join(cleaner.out), cleaner.first_image


def _converter() -> html2text.HTML2Text:
    h = html2text.HTML2Text()
    h.body_width = 0
    h.ignore_images = True
    h.ignore_emphasis = False
    h.ignore_links = False
    h.inline_links = True
    h.protect_links = False
    h.skip_internal_links = True
    h.ignore_tables = True
    h.single_line_break = False
    h.mark_code = False
    h.unicode_snob = True
    h.emphasis_mark = "*"
    h.strong_mark = "**"
    h.ul_item_mark = "-"
    return h


_BLANKS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING = re.compile(r"[ \t]+\n")
_EMPTY_LINK = re.compile(r"\[\s*\]\([^)]*\)")


def html_to_markdown(fragment: str, base: str | None = None) -> tuple[str, str | None]:
    """Converts an entry's HTML to Markdown. Returns (markdown, first image URL)."""
    if not fragment or not fragment.strip():
        return "", None
    if "<" not in fragment and "&" not in fragment:
        return _tidy(fragment), None
    cleaned, image = clean_html(fragment, base)
    try:
        text = _converter().handle(cleaned)
    except Exception:
        text = strip_tags(cleaned)
    text = _EMPTY_LINK.sub("", text)
    return _tidy(text), image


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = _TRAILING.sub("\n", text)
    text = _BLANKS.sub("\n\n", text)
    return text.strip()


_TAG = re.compile(r"<[^>]*>")


def strip_tags(text: str) -> str:
    """Plain text of a short HTML string (a title): tags removed, entities decoded."""
    if not text:
        return ""
    if "<" in text:
        text = _TAG.sub("", text)
    return " ".join(html.unescape(text).split())
