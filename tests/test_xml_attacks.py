"""XML attacks on the parser: external entities (XXE) and entity expansion (billion laughs).

A feed server is untrusted. Its document must not make Herald read a local file, contact
another host, or expand a few hundred bytes into gigabytes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.errors import ParseError
from bot.parse import parse_feed

SECRET = "herald-xxe-canary-4f1c"


def _doctype_feed(doctype: str, ref: str) -> bytes:
    return (
        '<?xml version="1.0"?>\n'
        f"<!DOCTYPE rss [{doctype}]>\n"
        f'<rss version="2.0"><channel><title>Feed {ref}</title><link>https://e.example/</link>'
        f"<item><title>Item {ref}</title><guid>1</guid><description>Body {ref}</description></item>"
        "</channel></rss>"
    ).encode()


def _all_text(body: bytes) -> str:
    try:
        parsed = parse_feed(body, {}, "https://e.example/feed")
    except ParseError as exc:
        return str(exc)
    parts = [parsed.title or "", parsed.warning or ""]
    for e in parsed.entries:
        parts += [e.title, e.summary, e.author or "", e.link or ""]
    return "\n".join(parts)


def test_an_external_file_entity_is_never_read(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    for decl in (f'<!ENTITY xxe SYSTEM "file://{secret}">', f'<!ENTITY xxe PUBLIC "-//x//y" "file://{secret}">'):
        text = _all_text(_doctype_feed(decl, "&xxe;"))
        assert SECRET not in text


def test_an_external_parameter_entity_is_never_read(tmp_path) -> None:
    secret = tmp_path / "secret.dtd"
    secret.write_text(f'<!ENTITY leak "{SECRET}">', encoding="utf-8")
    text = _all_text(_doctype_feed(f'<!ENTITY % ext SYSTEM "file://{secret}"> %ext;', "&leak;"))
    assert SECRET not in text


async def test_an_external_entity_on_another_host_is_never_fetched() -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text=SECRET)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        decl = (f'<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/entity">'
                f'<!ENTITY % dtd SYSTEM "http://127.0.0.1:{port}/dtd"> %dtd;')
        body = _doctype_feed(decl, "&xxe;")
        # in a thread, so that the listener could answer if the parser did call it
        text = await asyncio.wait_for(asyncio.to_thread(_all_text, body), 30)
        assert SECRET not in text
        assert hits == []
    finally:
        await runner.cleanup()


def test_entity_expansion_stays_small() -> None:
    """The classic "billion laughs": ten levels of ten references, 10^9 "lol"s if expanded."""
    decls = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    body = _doctype_feed(decls, "&lol9;")
    assert len(body) < 2_000
    text = _all_text(body)
    assert len(text) < 10_000
    assert "lol" * 100 not in text


def test_quadratic_blowup_stays_small() -> None:
    """One large entity referenced many times (the attack that evades nesting limits)."""
    body = _doctype_feed(f'<!ENTITY big "{"x" * 50_000}">', "&big;" * 2_000)
    text = _all_text(body)
    assert len(text) < 2 * len(body)
