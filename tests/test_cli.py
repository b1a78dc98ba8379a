"""The ``herald`` command line, run as a real subprocess (``python -m bot``) against a local
feed server: announcements on stdout, logs on stderr."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import shutil
import sys
from pathlib import Path

from tests.feedserver import FeedServer
from tests.test_parse import SEED_POSTS

ROOT = Path(__file__).resolve().parents[1]
CHANNEL = 123456789012345678


async def herald(*args: str, cwd: Path, timeout: float = 60.0) -> tuple[int, str, str]:
    """Runs ``python -m bot ARGS`` without blocking the event loop (the feed server lives on it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HERALD_CONFIG", "DISCORD_TOKEN")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def with_new_item(seed: bytes) -> bytes:
    """The seed feed with one more post on top, dated after every other."""
    date = email.utils.formatdate(1_777_000_000, usegmt=True)
    item = (f"<item><title>A Brand New Post</title><pubDate>{date}</pubDate>"
            "<link>https://vsoch.github.io/2026/brand-new/</link>"
            '<guid isPermaLink="true">https://vsoch.github.io/2026/brand-new/</guid>'
            "<description>&lt;p&gt;Fresh &amp;amp; new.&lt;/p&gt;</description></item>").encode()
    head, sep, tail = seed.partition(b"<item>")
    assert sep
    return head + item + b"<item>" + tail


async def test_dry_run_json_done_criterion(tmp_path, feed_server: FeedServer, seed_bytes, write_config) -> None:
    feed_server.set("/feed.xml", seed_bytes, "application/rss+xml")
    config = write_config(f"""
        [storage]
        url = "sqlite:///herald.db"

        [[feeds]]
        url = "{feed_server.url('/feed.xml')}"
        name = "vsoch"
        channels = [{CHANNEL}]
        backfill = 10
    """)
    args = ("run", "--dry-run", "--once", "--json", "--config", str(config))

    code, out, err = await herald(*args, cwd=tmp_path)
    assert code == 0, err
    lines = json_lines(out)
    assert len(lines) == 10 and len(out.splitlines()) == 10
    expected = list(reversed(SEED_POSTS))  # oldest first, by pubDate
    for line, (title, link, _) in zip(lines, expected):
        assert set(line) == {"feed", "channel_id", "entry_id", "endpoint", "payload"}
        assert line["feed"] == "vsoch" and line["channel_id"] == str(CHANNEL)
        assert line["endpoint"] == f"POST /channels/{CHANNEL}/messages"
        assert line["payload"]["enforce_nonce"] is True and 0 < len(line["payload"]["nonce"]) <= 25
        assert line["entry_id"] == link  # the permalink GUID
        embed = line["payload"]["embeds"][0]
        assert embed["title"] == title and embed["url"] == link
        assert line["payload"]["allowed_mentions"] == {"parse": []}
    assert "cycle done" in err  # logs on stderr, not mixed into the JSON
    assert (tmp_path / "herald.db").exists()

    code, out, err = await herald(*args, cwd=tmp_path)
    assert code == 0, err
    assert out == ""

    feed_server.set("/feed.xml", with_new_item(seed_bytes), "application/rss+xml")
    code, out, err = await herald(*args, cwd=tmp_path)
    assert code == 0, err
    [line] = json_lines(out)
    assert line["entry_id"] == "https://vsoch.github.io/2026/brand-new/"
    assert line["payload"]["embeds"][0]["title"] == "A Brand New Post"
    assert line["payload"]["embeds"][0]["description"] == "Fresh & new."
    assert feed_server.requests("/feed.xml") == 3


async def test_readme_quick_start_over_the_bundled_example(tmp_path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("*.db", "*.db-*"))
    code, out, err = await herald("run", "--dry-run", "--once", "--config", "examples/herald.toml", cwd=tmp_path)
    assert code == 0, err
    shown = [line[2:] for line in out.splitlines() if line.startswith("# ")]
    assert shown == ["I Love You, All of Your Pieces", "Observation", "Treading Water"]  # backfill 3, oldest first
    assert out.count(f"→ channel:{CHANNEL}") == 3
    assert "https://vsoch.github.io/2026/treading-water/" in out
    assert (examples / "herald-example.db").exists()  # next to the config, not in the working folder
    assert not list(tmp_path.glob("*.db"))
    code, out, err = await herald("run", "--dry-run", "--once", "--config", "examples/herald.toml", cwd=tmp_path)
    assert code == 0 and out == ""


async def test_preview_prints_the_newest_entries_and_stores_nothing(tmp_path, feed_server: FeedServer,
                                                                    seed_bytes) -> None:
    feed_server.set("/feed.xml", seed_bytes, "application/rss+xml")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = await herald("preview", feed_server.url("/feed.xml"), "--json", "--limit", "2", cwd=tmp_path)
    assert code == 0, err
    lines = json_lines(out)
    assert [line["payload"]["embeds"][0]["title"] for line in lines] == ["Observation", "Treading Water"]
    assert all(line["payload"]["allowed_mentions"] == {"parse": []} for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no database, nothing written


async def test_preview_of_something_that_is_not_a_feed_fails_cleanly(tmp_path, feed_server: FeedServer) -> None:
    feed_server.set("/page.html", b"<html><body>hello</body></html>", "text/html")
    code, out, err = await herald("preview", feed_server.url("/page.html"), "--json", cwd=tmp_path)
    assert code == 1 and out == ""
    assert "not a feed" in err and "Traceback" not in err


async def test_bad_config_exits_with_the_key_path(tmp_path, write_config) -> None:
    config = write_config('[[feeds]]\nurl = "https://a.example/feed"\n[polling]\ninterval = "often"\n')
    code, out, err = await herald("run", "--dry-run", "--once", "--config", str(config), cwd=tmp_path)
    assert code == 2 and out == ""
    assert "feeds[0].channels" in err and "polling.interval" in err and "Traceback" not in err
    assert not (tmp_path / "herald.db").exists()


async def test_json_needs_dry_run(tmp_path, write_config) -> None:
    config = write_config(f'[[feeds]]\nurl = "https://a.example/feed"\nchannels = [{CHANNEL}]\n')
    code, out, err = await herald("run", "--once", "--json", "--config", str(config), cwd=tmp_path)
    assert code == 2 and "--dry-run" in err and out == ""
