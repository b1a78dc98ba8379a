"""bot/escape.py: untrusted text shows as written wherever Discord shows it, and no link shows
one address while opening another. Read back with the reference reader (tests/discord_markdown.py)."""

from __future__ import annotations

import io
import os
import sys
import unicodedata
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot import escape
from bot.notices import resume_command
from bot.doctor import Report
from bot.escape import CODE_BACKTICK, clean, code_span, fold_for_judging, link_text, link_url, plain
from bot.models import StoredEntry
from bot.render import render_digest, render_entry, thread_name
from cogs.common import clean_snippet, link_line
from tests.discord_markdown import Span, read

PROPERTY = settings(max_examples=int(os.environ.get("HERALD_ESCAPE_EXAMPLES", "300")), deadline=None)

# Pieces that mean something to Discord's Markdown, so that random text often holds them.
_MARKUP_TOKENS = [
    "*", "**", "_", "__", "~~", "||", "`", "``", "```", "\\", "[", "]", "(", ")", "](", "<", ">", "@", "#", "-", "+",
    "1.", "12.", ">>> ", "> ", "# ", "## ", "### ", "-# ", "- ", "* ", "1. ", "\n", "\n\n", "   ", "\t", " ",
    "https://", "http://", "HTTPS://", "www.", "evil.example", "/steal", ":", "//", "@everyone", "@here", "<@123>",
    "<@!123>", "<@&123>", "<#123>", "</cmd:123>", "<t:1700000000:R>", "<:emoji:123>", "[x](https://evil.example)",
    "<https://evil.example>", "\u200b", "\u202e", "\u2066", "\u00ad", "\u2060", "\ufeff", "\u200d", "\x00", "\x1b",
    "\r\n", "\r", "\u2028", "\u0085", "é", "日本", "🎉", "a", "b", "1",
]
markdownish = st.lists(st.one_of(st.sampled_from(_MARKUP_TOKENS), st.text(max_size=3)), max_size=24).map("".join)
anytext = st.one_of(markdownish, st.text(max_size=60))


# --- plain --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "[https://discord.com/settings](https://evil.example/steal)", "<https://evil.example>", "https://evil.example/x",
    "@everyone and @here", "<@123> <@!1> <@&2> <#3> </cmd:4> <t:5:R> <:e:6>", "**b** *i* _i_ __u__ ~~s~~ ||sp||",
    "`code` ``two`` ```block```", "# h\n## h\n### h\n-# small\n> q\n>>> all\n- item\n* item\n1. one\n   2. two",
    "back\\slash \\*", "a_b_c 2 * 3", "]([(", "\\[x\\](https://evil.example)",
])
def test_plain_shows_markdown_as_typed(text: str) -> None:
    r = read(plain(text))
    assert r.text == text and r.spans == (), r


@PROPERTY
@given(anytext)
@example("[x](https://e.org)")
@example("@\u200beveryone")
@example("h\u200bttps://evil.example")
def test_plain_shows_any_text_and_no_formatting(text: str) -> None:
    r = read(plain(text))
    assert r.spans == (), (plain(text), r)
    assert r.text == clean(text)
    one = read(plain(text, one_line=True))
    assert one.spans == () and one.text == clean(text, one_line=True) and "\n" not in one.text


@PROPERTY
@given(anytext, anytext)
def test_plain_text_stays_plain_after_other_text_or_a_line_break(before: str, text: str) -> None:
    for joined in (plain(before) + plain(text), plain(before) + "\n" + plain(text), "**" + plain(text) + "**"):
        r = read(joined)
        assert {s.kind for s in r.spans} <= {"bold"}, (joined, r)


def test_clean_drops_invisible_bidi_and_control_characters_but_keeps_joiners() -> None:
    assert clean("a\u200bb\u2060c\u00add\ufeffe\u202ef\u2066g\u061ch\x1bi\x00j\u3164k") == "abcdefghijk"
    assert clean("👩\u200d💻 \u200cx") == "👩\u200d💻 \u200cx"  # an emoji sequence; a Persian non-joiner
    assert clean("a\r\nb\rc\u2028d\x85e") == "a\nb\nc\nd\ne"
    assert clean("a \n\t b\u2029c", one_line=True) == "a b c"


def test_the_format_table_covers_every_format_character() -> None:
    formats = [chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"]
    assert [hex(ord(c)) for c in formats if fold_for_judging(c) != ""] == []
    shown = [hex(ord(c)) for c in formats if clean(c)]
    assert shown == ["0x200c", "0x200d"] + [hex(cp) for cp in range(0xE0020, 0xE0080)]  # joiners and tags only


# --- code_span --------------------------------------------------------------------------------------


@PROPERTY
@given(anytext)
@example("a ` b")
@example(" x ")
@example("```")
@example("`")
def test_code_span_is_one_code_span_showing_the_text(text: str) -> None:
    expected = clean(text, one_line=True).replace("`", CODE_BACKTICK)
    md = code_span(text)
    if not expected:
        assert md == ""
        return
    r = read(md)
    assert r.spans == (Span("code", expected),), (md, r)
    assert r.text == expected


def test_code_span_backticks_and_line_breaks() -> None:
    assert code_span("herald feeds resume a`b") == "`herald feeds resume aˋb`"
    assert code_span("a\nb\u202e") == "`a b`"
    assert code_span(" padded ") == "`  padded  `"


def test_resume_command_quotes_the_name_or_falls_back_to_the_id() -> None:
    assert resume_command("vsoch", 3) == "`herald feeds resume vsoch`"
    assert resume_command("my blog", 3) == "`herald feeds resume 'my blog'`"
    assert resume_command("a`b", 3) == "`herald feeds resume 3`"  # the span could not show the backtick
    assert resume_command("x\u202eabc", 3) == "`herald feeds resume 3`"
    assert resume_command(None, 7) == "`herald feeds resume 7`"


# --- link_text and link_url -------------------------------------------------------------------------

TARGET = "https://blog.example/p/1"


@PROPERTY
@given(anytext)
@example("[https://discord.com/settings](https://evil.example/steal) `x`")
@example("https:/\u200b/good.example")
def test_link_text_in_a_masked_link_shows_the_text_and_one_link(text: str) -> None:
    shown = " ".join(clean(text).split())
    if not shown:
        return
    md = f"[{link_text(text, TARGET)}]({link_url(TARGET)})"
    r = read(md)
    assert r.spans == (Span("link", r.text, TARGET),), (md, r)
    assert r.text == shown or r.text == shown + " → blog.example"
    if escape.looks_like_other_url(shown, TARGET):
        assert r.text.endswith(" → blog.example")


@pytest.mark.parametrize("text", ["https://good.example/login", "www.good.example", "good.example/login",
                                  "https:/\u200b/good.example/login", "ｈｔｔｐｓ：／／good.example"])
def test_link_text_names_the_real_host_of_a_link_showing_another_url(text: str) -> None:
    assert read(f"[{link_text(text, TARGET)}]({TARGET})").text.endswith(" → blog.example")
    assert read(f"[{link_text('blog.example/p/1', TARGET)}]({TARGET})").text == "blog.example/p/1"


@PROPERTY
@given(st.text(max_size=40), st.sampled_from(["https://e.example/", "http://E.example:8080/a?b=", "HTTPS://e.example"]))
def test_link_url_keeps_any_url_one_link(tail: str, base: str) -> None:
    url = base + tail
    target = link_url(url)
    if target is None:  # only when the host part is unusable
        with pytest.raises((ValueError, AssertionError)):  # urlsplit refuses it, or finds no host
            assert urlsplit(url.strip()).hostname
        return
    assert not any(c.isspace() or c in "()<>\\\"`" or unicodedata.category(c) in ("Cc", "Cf") for c in target)
    r = read(f"[x]({target})")
    assert r.spans == (Span("link", "x", target),), r
    r = read(f"<{target}>")
    assert [s.kind for s in r.spans] == ["url"] and r.text == target


def test_the_real_host_note_of_a_url_without_a_readable_host_is_the_url() -> None:
    assert escape.real_host_note("https://blog.example/x") == " → blog.example"
    assert escape.real_host_note("https://[broken/x") == " → https://[broken/x"
    assert link_url("https://[broken/x") is None


def test_link_url_refuses_other_schemes_and_encodes_what_ends_a_link() -> None:
    assert link_url("javascript:alert(1)") is None and link_url("ftp://e.example/") is None
    assert link_url("https://") is None and link_url(None) is None and link_url("") is None
    assert link_url("https://e.example/a_(b) c<d>\\") == "https://e.example/a_%28b%29%20c%3Cd%3E%5C"


# --- judging --------------------------------------------------------------------------------------------

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u180e", "\u034f", "\u202e", "\u2066",
             "\u061c", "\u200e", "\ufe0f"]
LOOKALIKE = {"\u2236": ":", "\u2215": "/", "\u2044": "/", "\u29f8": "/", "\uff0f": "/", "\u2024": ".", "\ufe52": ".",
             "\uff0e": ".", "\u3002": ".", "\uff61": ".", "\u2010": "-", "\u2011": "-", "\u2013": "-", "\u2015": "-",
             "\u2212": "-", "\ufe58": "-", "\uff1a": ":", "\ua789": ":", "\u0589": ":", "\u02d0": ":", "\ufe63": "-"}


@pytest.mark.parametrize("ch", INVISIBLE)
def test_invisible_characters_do_not_count(ch: str) -> None:
    assert fold_for_judging(f"https:/{ch}/good{ch}.example") == "https://good.example"


@pytest.mark.parametrize(("ch", "ascii_"), LOOKALIKE.items())
def test_lookalike_punctuation_counts_as_ascii(ch: str, ascii_: str) -> None:
    assert fold_for_judging(ch) == ascii_
    assert escape.fold_char(ch) == ascii_


def test_judging_folds_nfkc_and_keeps_other_text() -> None:
    assert fold_for_judging("ｈｔｔｐｓ：／／ｗｗｗ．good.example") == "https://www.good.example"
    assert fold_for_judging("Ünïcödé 日本 🎉") == "Ünïcödé 日本 🎉"


# --- spoofed links in summaries, titles and digest labels ----------------------------------------------------

# Text that shows "https://good.example/login" (or "www.good.example") while the link opens evil.example.
SPOOFS = [
    "https:/\u200b/good.example/login", "https:/\u2060/good.example/login", "ht\u00adtps://good.example/login",
    "https\u2236//good.example/login", "https:\u2215\u2215good.example/login", "https:\u2044\u2044good.example/login",
    "https://good\u2024example/login", "https://good\ufe52example/login", "https://good\u3002example/login",
    "https://my\u2010good.example/login", "www\u200b.good.example", "www\u2024good.example",
    "\u202egro.elpmaxe.doog//:sptth", "\u202ahttps://good.example\u202c", "https:/\u2066/good.example\u2069",
    "https:/\ufeff/good.example", "https\ua789//good.example", "https:/\u034f/good.example",
]
EVIL = "https://evil.example/steal"


def stored(title: str, summary: str = "", link: str | None = "https://blog.example/p/1", i: int = 1) -> StoredEntry:
    return StoredEntry(id=i, feed_id=1, key=f"k{i}", title=title, link=link, summary=summary, author=None,
                       published=1_700_000_000.0, image=None, first_seen=1_700_000_100.0)


def links_to_evil_show_their_own_url(md: str) -> bool:
    """Every link that opens evil.example shows its own URL (an autolink), nothing else."""
    return all(shown == url for shown, url in read(md).links if urlsplit(url).hostname == "evil.example")


def no_bidi(text: str) -> bool:
    return not any(ord(c) in escape.BIDI_CONTROLS for c in text)


@pytest.mark.parametrize("spoof", SPOOFS)
def test_spoofed_link_text_in_a_summary_shows_the_real_target(spoof: str) -> None:
    desc = render_entry(stored("T", f"Read [{spoof}]({EVIL}) now"), "F")["embeds"][0]["description"]
    assert links_to_evil_show_their_own_url(desc), (desc, read(desc).links)
    assert EVIL in read(desc).text and no_bidi(desc)


@pytest.mark.parametrize("spoof", SPOOFS)
def test_spoofed_title_names_the_host_the_embed_opens(spoof: str) -> None:
    embed = render_entry(stored(spoof, link=EVIL), "F\u202e")["embeds"][0]
    assert embed["url"] == EVIL
    shown = read(embed["title"]).text
    assert shown.endswith(" → evil.example") and no_bidi(embed["title"]) and no_bidi(embed["footer"]["text"])


@pytest.mark.parametrize("spoof", SPOOFS)
def test_spoofed_digest_label_does_not_mask_its_link(spoof: str) -> None:
    desc = render_digest([stored(spoof, link=EVIL), stored("fine", link="https://blog.example/2", i=2)],
                         "F\u202e")["embeds"][0]["description"]
    assert links_to_evil_show_their_own_url(desc), (desc, read(desc).links)
    assert ("fine", "https://blog.example/2") in read(desc).links and no_bidi(desc)


@pytest.mark.parametrize("spoof", SPOOFS)
def test_spoofed_titles_in_search_results_name_the_real_host(spoof: str) -> None:
    md = link_line(spoof, EVIL)
    [(shown, url)] = read(md).links
    assert url == EVIL and shown.endswith(" → evil.example") and no_bidi(md)


def test_bidi_overrides_never_reach_titles_authors_or_thread_names() -> None:
    entry = stored("\u202eevil\u202c title")
    entry.author = "\u2067name\u2069"
    embed = render_entry(entry, "Feed")["embeds"][0]
    assert read(embed["title"]).text == "evil title" and embed["author"]["name"] == "name"
    assert thread_name(entry) == "evil title"


def test_honest_links_with_invisible_characters_are_kept() -> None:
    summary = "See [the\u200b docs](https://good.example/docs) and [https://good\u200b.example/a](https://good.example/a)."
    assert render_entry(stored("T", summary), "F")["embeds"][0]["description"] == summary


def test_a_defused_link_shows_its_whole_target() -> None:
    payload = render_entry(stored("T", "[https://good.example](https://evil.example/(a> b))"), "F")
    desc = payload["embeds"][0]["description"]
    whole = "https://evil.example/%28a%3E%20b%29"
    assert read(desc).links == [(whole, whole)], desc  # not "https://evil.example/(a" with the rest as text


def test_a_long_spoofing_title_keeps_its_real_host() -> None:
    title = render_entry(stored("https://good.example/" + "a" * 400, link=EVIL), "F")["embeds"][0]["title"]
    assert len(title) <= 256 and read(title).text.endswith("… → evil.example")


# --- snippets and the doctor ---------------------------------------------------------------------------------


@PROPERTY
@given(anytext)
def test_snippets_only_ever_bold_the_highlighted_terms(text: str) -> None:
    r = read(clean_snippet(text, 300))
    assert {s.kind for s in r.spans} <= {"bold"}, r


def test_snippets_keep_highlights_and_show_the_rest_plainly() -> None:
    r = read(clean_snippet("the **term** and [a](https://evil.example) <@&1> `x` **unclosed"))
    assert [s.text for s in r.of("bold")] == ["term"]
    assert r.text == "the term and a <@&1> `x` **unclosed"


def test_the_doctor_writes_no_escape_sequences_or_bidi_controls() -> None:
    out = io.StringIO()
    Report(out).add("ok", "feed", 'x: "\x1b[2J\u202etitle" 1 entries', "fix \x1b]0;pwned\x07 it")
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue() and "title" in out.getvalue()


def test_a_title_and_link_of_invisible_characters_fall_back_to_untitled() -> None:
    entry = stored("\u200b\u202e", link="\x1b\u2066")
    assert render_entry(entry, None)["embeds"][0]["title"] == "Untitled post"
    assert thread_name(entry) == "New post"


@pytest.mark.parametrize("title", ["v3.9.0", "v1.4.0", "3.14", "Release 2.0.1", "1.2.3-rc.1"])
def test_version_numbers_are_not_taken_for_addresses(title: str) -> None:
    """A release titled "v3.9.0" links to its release page: it shows no address, so it gets no
    "→ host" note (a host's last label starts with a letter)."""
    assert not escape.looks_like_other_url(title, "https://github.com/gulpjs/gulp/releases/tag/v3.9.0")
    assert escape.link_text(title, "https://github.com/x") == escape.plain(title, one_line=True)


@pytest.mark.parametrize(
    ("text", "url", "misleading"),
    [
        ("example.org", "https://evil.example/", True),
        ("bücher.example", "https://evil.example/", True),
        ("evil.example/login", "https://good.example/login", True),
        ("example.org", "https://example.org/a/b", False),  # the host shown is the host opened
        ("www.example.org", "https://example.org/", False),
        ("example.org/blog", "https://www.example.org/blog/post", False),
    ],
)
def test_a_bare_host_misleads_only_when_the_link_opens_another_host(text: str, url: str, misleading: bool) -> None:
    assert escape.looks_like_other_url(text, url) is misleading
