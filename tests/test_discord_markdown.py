"""The reference reader of Discord Markdown (tests/discord_markdown.py) reads what Discord does.

Other tests lean on it to say "this text shows literally" or "this is one link": each rule it
knows is pinned here, both ways (formatting seen, and escaped formatting not seen)."""

from __future__ import annotations

import pytest

from tests.discord_markdown import read


@pytest.mark.parametrize(
    ("md", "kind", "shown"),
    [
        ("**bold**", "bold", "bold"),
        ("**\\\\**", "bold", "\\"),  # an escaped backslash is one character inside; the "*" after it closes
        ("*\\\\*", "italic", "\\"),
        ("*it*", "italic", "it"),
        ("_it_", "italic", "it"),
        ("__under__", "underline", "under"),
        ("~~gone~~", "strike", "gone"),
        ("||secret||", "spoiler", "secret"),
        ("`x*y`", "code", "x*y"),
        ("``a ` b``", "code", "a ` b"),
        ("[docs](https://example.org/a)", "link", "docs"),
        ("see <https://example.org/>", "url", "https://example.org/"),
        ("see https://example.org/x.", "url", "https://example.org/x"),
        ("hi @everyone", "mention", "@everyone"),
        ("hi <@&123>", "mention", "<@&123>"),
        ("# Big", "heading", "Big"),
        ("text\n\n### Small", "heading", "Small"),
        ("-# fine print", "subtext", "fine print"),
        ("> quoted", "quote", "quoted"),
        ("- item", "list", "item"),
        ("1. first", "list", "first"),
        ("- a\n  - b\n    - deep", "list", "deep"),  # nested lists: a marker counts at any indentation
        ("**\\\\**", "bold", "\\"),  # an escape right after the opener is content
        ("*\\**", "italic", "*"),
    ],
)
def test_each_rule_is_seen(md: str, kind: str, shown: str) -> None:
    r = read(md)
    assert kind in r.kinds(), r
    assert any(s.text == shown for s in r.of(kind)), r


@pytest.mark.parametrize(
    "md",
    ["\\*\\*not bold\\*\\*", "a_b_c", "2 * 3 * 4", "\\# not a heading", "#### four", "#nospace",
     "\\> no quote", "\\- no item", "[x](javascript:alert(1))", "\\`code\\`",
     "\\_x\\_", "\\~\\~x\\~\\~", "\\|\\|x\\|\\|", "@\u200beveryone", "1\\. no list", "mid - dash"],
)
def test_escaped_or_literal_text_is_not_formatting(md: str) -> None:
    assert read(md).spans == (), read(md)


def test_visible_text_drops_markers_and_escapes() -> None:
    assert read("**a** and \\*b\\* and [c](https://e.org)").text == "a and *b* and c"
    assert read("\\é \\a").text == "é \\a"  # an escape works before anything but ASCII letters, digits, spaces


def test_an_escaped_masked_link_shows_its_url_as_a_plain_link() -> None:
    r = read("\\[x\\](https://e.org)")
    assert "link" not in r.kinds() and r.links == [("https://e.org", "https://e.org")]


def test_code_blocks_keep_their_text_and_language() -> None:
    r = read("before\n```py\nx = **1**\n```\nafter *i*")
    [block] = r.of("codeblock")
    assert (block.text, block.detail) == ("x = **1**\n", "py")
    assert "bold" not in r.kinds() and "italic" in r.kinds()


def test_nested_formatting_and_links() -> None:
    r = read("***both*** [**bold link**](https://e.org/(x))")
    assert {"bold", "italic", "link"} <= r.kinds()
    assert r.links == [("bold link", "https://e.org/(x)")]


from hypothesis import given, strategies as st  # noqa: E402


@given(st.text(max_size=80))
def test_backslash_before_every_punctuation_character_shows_the_text_plainly(text: str) -> None:
    escaped = "".join("\\" + c if not (c.isascii() and c.isalnum()) and not c.isspace() else c for c in text)
    r = read(escaped)
    assert r.text == text
    assert r.spans == ()
