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

from tests.conftest import unclosed_resources
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
    assert unclosed_resources(err.decode()) == [], err.decode()  # every aiohttp session closed
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


# --- the admin's first hour: `herald check` finds what `run` would trip on, readable failures ----------


async def test_missing_config_file_says_it_does_not_exist_and_how_to_start(tmp_path) -> None:
    code, out, err = await herald("check", "--config", "nowhere/herald.toml", cwd=tmp_path)
    assert code == 2 and out == ""
    assert f"config file {tmp_path / 'nowhere' / 'herald.toml'} does not exist" in err
    assert "examples/herald.toml" in err and "--config" in err
    assert "invalid configuration" not in err and "Traceback" not in err
    code, _, err = await herald("feeds", "list", cwd=tmp_path)  # the default file, looked for in the working folder
    assert code == 2 and f"{tmp_path / 'herald.toml'} does not exist" in err


async def test_feeds_without_an_action_prints_its_usage_and_exits_2(tmp_path) -> None:
    code, out, err = await herald("feeds", cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("usage: herald feeds") and "required: ACTION" in err


async def test_check_finds_file_feeds_that_run_could_not_read(tmp_path, write_config) -> None:
    (tmp_path / "here.xml").write_text("<rss/>")
    (tmp_path / "folder.xml").mkdir()
    config = write_config(f"""
        [[feeds]]
        url = "file:here.xml"
        channels = [{CHANNEL}]
        [[feeds]]
        url = "file:gone.xml"
        channels = [{CHANNEL}]
        [[feeds]]
        url = "file:folder.xml"
        channels = [{CHANNEL}]
    """)
    code, out, err = await herald("check", "--config", str(config), cwd=tmp_path)
    assert code == 1, out + err
    assert "2 problem(s)" in err
    assert f"feeds[1].url: {tmp_path / 'gone.xml'} does not exist" in err
    assert f"feeds[2].url: {tmp_path / 'folder.xml'} is not a file" in err
    assert "feeds[0]" not in err


async def test_the_same_url_twice_is_refused_alike_by_check_and_run(tmp_path, write_config) -> None:
    config = write_config(f"""
        [[feeds]]
        url = "https://blog.example/feed.xml"
        name = "one"
        channels = [{CHANNEL}]
        [[feeds]]
        url = "https://blog.example/feed.xml"
        name = "two"
        channels = [{CHANNEL + 1}]
    """)
    code, _, check_err = await herald("check", "--config", str(config), cwd=tmp_path)
    assert code == 2
    assert "feeds[1].url: the same feed as feeds[0]" in check_err and "one [[feeds]] table" in check_err
    code, out, run_err = await herald("run", "--dry-run", "--once", "--config", str(config), cwd=tmp_path)
    assert code == 2 and out == "" and run_err == check_err


async def test_check_reports_every_bad_item_of_a_list(tmp_path, write_config) -> None:
    config = write_config(f"""
        [[feeds]]
        url = "https://blog.example/feed.xml"
        channels = ["news", {CHANNEL}, -4]
        mention_roles = [1, "admins"]
        webhooks = ["OK_NAME", "not a name", "https://discord.com/api/webhooks/1/secret-token"]
    """)
    code, out, err = await herald("check", "--config", str(config), cwd=tmp_path)
    assert code == 2 and out == ""
    for where in ("feeds[0].channels: item 0", "feeds[0].channels: item 2", "feeds[0].mention_roles: item 1",
                  "feeds[0].webhooks: item 1", "feeds[0].webhooks: item 2"):
        assert where in err, err
    assert "channels: item 1" not in err and "webhooks: item 0" not in err
    assert "secret-token" not in err


async def test_check_names_a_feed_whose_server_cannot_be_known(tmp_path, write_config) -> None:
    config = write_config("""
        [[feeds]]
        url = "https://blog.example/feed.xml"
        name = "locked"
        webhooks = ["HERALD_TEST_UNSET_HOOK"]
        [[feeds]]
        url = "https://other.example/feed.xml"
        name = "pinned"
        webhooks = ["HERALD_TEST_UNSET_HOOK"]
        guild_id = 111111111111111111
    """)
    code, out, err = await herald("check", "--config", str(config), cwd=tmp_path)
    assert code == 0, err
    [warning] = [line for line in out.splitlines() if line.startswith("warning:")]
    assert "feeds[0] (locked)" in warning and "guild_id = <server id>" in warning
    assert "$HERALD_TEST_UNSET_HOOK" in warning
    assert "server 111111111111111111" in out


async def test_preview_of_a_web_page_uses_the_feed_it_advertises(tmp_path, feed_server: FeedServer,
                                                                 seed_bytes) -> None:
    feed_server.set("/feed.xml", seed_bytes, "application/rss+xml")
    feed_server.set("/blog/", b'<!doctype html><html><head><link rel="alternate" type="application/rss+xml" '
                              b'href="/feed.xml"></head><body>a blog</body></html>', "text/html")
    code, out, err = await herald("preview", feed_server.url("/blog/"), "--json", "--limit", "1", cwd=tmp_path)
    assert code == 0, err
    [line] = json_lines(out)
    assert line["payload"]["embeds"][0]["title"] == "Treading Water"
    assert f"using the feed it advertises: {feed_server.url('/feed.xml')}" in err
    assert feed_server.requests("/feed.xml") == 1


async def test_feeds_list_shows_the_next_fetch_and_the_last_error(tmp_path, feed_server: FeedServer,
                                                                   write_config) -> None:
    feed_server.set_status("/feed.xml", 500)
    config = write_config(f"""
        [storage]
        url = "sqlite:///herald.db"
        [[feeds]]
        url = "{feed_server.url('/feed.xml')}"
        name = "flaky"
        channels = [{CHANNEL}]
    """)
    code, _, err = await herald("run", "--dry-run", "--once", "--config", str(config), cwd=tmp_path)
    assert code == 0, err
    code, out, err = await herald("feeds", "list", "--config", str(config), cwd=tmp_path)
    assert code == 0, err
    assert "failing; 0 entries; never succeeded; next fetch " in out
    [nxt] = [part for part in out.split("; ") if part.startswith("next fetch ")]
    assert nxt.endswith(" UTC") and nxt[len("next fetch "):][:2] == "20"
    [error_line] = [line for line in out.splitlines() if line.strip().startswith("last error:")]
    assert "500" in error_line
    code, out, _ = await herald("feeds", "list", "--json", "--config", str(config), cwd=tmp_path)
    [row] = json_lines(out)
    assert row["next_fetch"] > 0 and "500" in row["last_error"]
