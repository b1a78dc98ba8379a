"""The config loader: every problem is reported, once, with the key path that caused it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Config, config_from_dict, load_config, parse_duration, parse_size
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CHANNEL = 123456789012345678

GOOD_FEED = f"""
[[feeds]]
url = "https://blog.example/feed.xml"
channels = [{CHANNEL}]
"""


def problems_of(text: str, write_config) -> list[str]:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def only_problem(text: str, write_config) -> str:
    problems = problems_of(text, write_config)
    assert len(problems) == 1, problems
    return problems[0]


# --- valid files ----------------------------------------------------------------------------------


def test_minimal_config_loads(write_config) -> None:
    cfg = load_config(write_config(GOOD_FEED))
    assert len(cfg.feeds) == 1
    feed = cfg.feeds[0]
    assert feed.url == "https://blog.example/feed.xml"
    assert feed.channels == (CHANNEL,)
    assert feed.backfill == 0 and feed.interval is None
    assert cfg.polling.interval == 600.0


def test_full_config_loads(write_config) -> None:
    cfg = load_config(write_config(f"""
        [discord]
        token_env = "MY_TOKEN"
        guild_ids = [111111111111111111, "222222222222222222"]
        alerts_channel = 333333333333333333

        [storage]
        url = "sqlite:///data/herald.db"

        [polling]
        interval = "15m"
        timeout = "30s"
        max_bytes = "2MiB"
        concurrency = 8
        per_host = 2
        max_per_poll = 5
        pause_after = "2d"
        allow_private = true

        [logging]
        level = "debug"
        format = "json"

        [http]
        listen = "127.0.0.1:8080"

        [[feeds]]
        url = "https://blog.example/feed.xml"
        name = "blog"
        channels = [{CHANNEL}, "{CHANNEL}"]
        backfill = 3
        interval = "1h30m"
        max_per_poll = 2
        mention_roles = [444444444444444444]
        create_thread = true

        [[feeds]]
        url = "https://other.example/atom"
        webhooks = ["HOOK_ONE"]
    """))
    assert cfg.discord.token_env == "MY_TOKEN"
    assert cfg.discord.guild_ids == (111111111111111111, 222222222222222222)
    assert cfg.polling.interval == 900.0 and cfg.polling.timeout == 30.0
    assert cfg.polling.max_bytes == 2 * 1024 * 1024
    assert cfg.polling.pause_after == 2 * 86400.0 and cfg.polling.allow_private is True
    assert cfg.logging.level == "DEBUG" and cfg.logging.format == "json"
    blog, other = cfg.feeds
    assert blog.channels == (CHANNEL,)  # duplicates collapse
    assert blog.interval == 5400.0 and blog.backfill == 3 and blog.max_per_poll == 2
    assert blog.mention_roles == (444444444444444444,) and blog.create_thread
    assert other.channels == () and other.webhooks == ("HOOK_ONE",)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("7d", 7 * 86400.0), ("1h30m", 5400.0), ("500ms", 0.5),
    ("1.5h", 5400.0), ("2 h", 7200.0), ("1H", 3600.0), ("1d2h3m4s", 86400 + 7200 + 180 + 4), (90, 90.0), (2.5, 2.5),
])
def test_valid_durations(text, seconds) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "size"), [
    ("5MB", 5_000_000), ("512KiB", 512 * 1024), ("1GiB", 1024**3), ("100", 100), (1024, 1024), ("1.5MB", 1_500_000),
    ("5 mb", 5_000_000), ("2kb", 2000), ("7b", 7),
])
def test_valid_sizes(text, size) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["10", "1x", "", "s", "-5s", "5 parsecs", "1h-30m", "m10", True, None, [1]])
def test_bad_durations_raise(value) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", ["5 parsecs", "", "MB", "-1", "0", 0, -3, 1.5, True, "5 MB extra"])
def test_bad_sizes_raise(value) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


# --- paths relative to the config's folder --------------------------------------------------------


def test_relative_sqlite_path_is_relative_to_the_config_folder(tmp_path, write_config, monkeypatch) -> None:
    path = write_config('[storage]\nurl = "sqlite:///data/h.db"\n' + GOOD_FEED, name="conf/herald.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "conf" / "herald.toml")
    assert cfg.storage_url() == "sqlite:///" + str((tmp_path / "conf" / "data" / "h.db").resolve())
    assert load_config(path).storage_url() == cfg.storage_url()


def test_absolute_and_memory_sqlite_paths_are_kept(tmp_path, write_config) -> None:
    absolute = tmp_path / "abs.db"
    cfg = load_config(write_config(f'[storage]\nurl = "sqlite:///{absolute}"\n' + GOOD_FEED))
    assert cfg.storage_url() == f"sqlite:///{absolute}"
    cfg = load_config(write_config('[storage]\nurl = "sqlite:///:memory:"\n' + GOOD_FEED))
    assert cfg.storage_url() == "sqlite:///:memory:"


def test_default_sqlite_path_is_next_to_the_config(tmp_path, write_config) -> None:
    cfg = load_config(write_config(GOOD_FEED, name="sub/herald.toml"))
    assert cfg.storage_url() == "sqlite:///" + str((tmp_path / "sub" / "herald.db").resolve())


@pytest.mark.parametrize(("url", "relative"), [
    ("file:./seed.xml", "seed.xml"),
    ("file:seed.xml", "seed.xml"),
    ("file:feeds/seed.xml", "feeds/seed.xml"),
    ("file:../up.xml", "../up.xml"),
    ("file://feeds/seed.xml", "feeds/seed.xml"),
    ("file:with%20space.xml", "with space.xml"),
])
def test_file_urls_resolve_against_the_config_folder(tmp_path, write_config, monkeypatch, url, relative) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_config(f'[[feeds]]\nurl = "{url}"\nchannels = [{CHANNEL}]\n', name="conf/herald.toml")
    cfg = load_config(path)
    assert cfg.feeds[0].url == (tmp_path / "conf" / relative).resolve().as_uri()


def test_absolute_file_url_is_kept(tmp_path, write_config) -> None:
    target = tmp_path / "feed.xml"
    cfg = load_config(write_config(f'[[feeds]]\nurl = "file://{target}"\nchannels = [{CHANNEL}]\n'))
    assert cfg.feeds[0].url == target.as_uri()


# --- invalid files: one clear message per problem, naming the key path ------------------------------


def test_missing_channels_names_the_feed_index(write_config) -> None:
    text = GOOD_FEED + GOOD_FEED.replace("feed.xml", "other.xml") + '[[feeds]]\nurl = "https://third.example/feed"\n'
    problem = only_problem(text, write_config)
    assert problem.startswith("feeds[2].channels:") and "missing" in problem


def test_empty_channels(write_config) -> None:
    problem = only_problem('[[feeds]]\nurl = "https://a.example/f"\nchannels = []\n', write_config)
    assert problem.startswith("feeds[0].channels:") and "at least one" in problem


def test_missing_url(write_config) -> None:
    problem = only_problem(f'[[feeds]]\nchannels = [{CHANNEL}]\n', write_config)
    assert problem.startswith("feeds[0].url:") and "missing" in problem


@pytest.mark.parametrize(("text", "path", "words"), [
    ('[polling]\ninterval = "soon"\n', "polling.interval", "not a duration"),
    ('[polling]\ninterval = "0s"\n', "polling.interval", "longer than zero"),
    ('[polling]\ninterval = -5\n', "polling.interval", "negative"),
    ('[polling]\ninterval = "10"\n', "polling.interval", "not a duration"),
    ('[polling]\ntimeout = true\n', "polling.timeout", "duration"),
    ('[polling]\nmax_bytes = "5 parsecs"\n', "polling.max_bytes", "not a size"),
    ('[polling]\nmax_bytes = 0\n', "polling.max_bytes", "positive"),
    ('[polling]\nmax_bytes = 2.5\n', "polling.max_bytes", "size"),
    ('[polling]\nconcurrency = "8"\n', "polling.concurrency", "whole number"),
    ('[polling]\nconcurrency = 0\n', "polling.concurrency", "between"),
    ('[polling]\nallow_private = "yes"\n', "polling.allow_private", "true or false"),
    ('[polling]\nintervall = "10m"\n', "polling.intervall", "unknown key"),
    ('[storage]\nurl = 5\n', "storage.url", "string"),
    ('[storage]\nurl = ""\n', "storage.url", "empty"),
    ('[discord]\nguild_ids = "123"\n', "discord.guild_ids", "list"),
    ('[discord]\nguild_ids = [0]\n', "discord.guild_ids", "Discord id"),
    ('[discord]\nalerts_channel = -1\n', "discord.alerts_channel", "Discord id"),
    ('[discord]\napi_base = "ftp://x"\n', "discord.api_base", "http"),
    ('[logging]\nlevel = "loud"\n', "logging.level", "debug"),
    ('[logging]\nformat = "xml"\n', "logging.format", "json"),
    ('[http]\nlisten = "8080"\n', "http.listen", "HOST:PORT"),
    ('polling = 5\n', "polling", "table"),
    ('bogus = 1\n', "bogus", "unknown section"),
    ('[pollng]\ninterval = "1m"\n', "pollng", "unknown section"),
    ('[defaults]\nsummary_length = 5000\n', "defaults.summary_length", "between 0 and 4096"),
    ('[defaults]\nsummary_length = -1\n', "defaults.summary_length", "between 0 and 4096"),
    ('[defaults]\nsummary_length = "short"\n', "defaults.summary_length", "whole number"),
    ('[defaults]\nfeed_image = "yes"\n', "defaults.feed_image", "true or false"),
    ('[defaults]\nsumary_length = 100\n', "defaults.sumary_length", "unknown key (known keys: feed_image, summary_length)"),
    ('defaults = 5\n', "defaults", "table"),
])
def test_one_problem_with_its_key_path(write_config, text, path, words) -> None:
    problem = only_problem(text + GOOD_FEED, write_config)
    assert problem.startswith(path + ":"), problem
    assert words.lower() in problem.lower(), problem


@pytest.mark.parametrize(("feed", "path", "words"), [
    ('url = 5\nchannels = [1]', "feeds[0].url", "string"),
    ('url = "ftp://x.example/f"\nchannels = [1]', "feeds[0].url", "http"),
    ('url = "  "\nchannels = [1]', "feeds[0].url", "empty"),
    ('url = "https://a.example/f"\nchannels = "123"', "feeds[0].channels", "list"),
    ('url = "https://a.example/f"\nchannels = [1.5]', "feeds[0].channels", "Discord id"),
    ('url = "https://a.example/f"\nchannels = [-4]', "feeds[0].channels", "Discord id"),
    ('url = "https://a.example/f"\nchannels = [18446744073709551616]', "feeds[0].channels", "Discord id"),
    ('url = "https://a.example/f"\nchannels = [1]\nbackfill = -1', "feeds[0].backfill", "between"),
    ('url = "https://a.example/f"\nchannels = [1]\nbackfill = true', "feeds[0].backfill", "whole number"),
    ('url = "https://a.example/f"\nchannels = [1]\ninterval = "fortnightly"', "feeds[0].interval", "duration"),
    ('url = "https://a.example/f"\nchannels = [1]\nmax_per_poll = 0', "feeds[0].max_per_poll", "between"),
    ('url = "https://a.example/f"\nchannels = [1]\ncreate_thread = 1', "feeds[0].create_thread", "true or false"),
    ('url = "https://a.example/f"\nchannels = [1]\nchanels = [1]', "feeds[0].chanels", "unknown key"),
    ('url = "https://a.example/f"\nchannels = [1]\nmention_roles = ["x"]', "feeds[0].mention_roles", "Discord id"),
    ('url = "https://a.example/f"\nwebhooks = ["not a name"]', "feeds[0].webhooks", "environment"),
    ('url = "https://a.example/f"\nchannels = [1]\nsummary_length = 4097', "feeds[0].summary_length", "between"),
    ('url = "https://a.example/f"\nchannels = [1]\nfeed_image = 1', "feeds[0].feed_image", "true or false"),
])
def test_feed_problems_name_their_key_path(write_config, feed, path, words) -> None:
    problem = only_problem(f"[[feeds]]\n{feed}\n", write_config)
    assert problem.startswith(path + ":"), problem
    assert words.lower() in problem.lower(), problem


def test_defaults_table_and_a_feeds_own_message_options(write_config) -> None:
    config = load_config(write_config(f"""
        [defaults]
        summary_length = 200
        feed_image = true

        [[feeds]]
        url = "https://a.example/feed.xml"
        channels = [{CHANNEL}]
        summary_length = 0

        [[feeds]]
        url = "https://b.example/feed.xml"
        channels = [{CHANNEL}]
    """))
    assert (config.defaults.summary_length, config.defaults.feed_image) == (200, True)
    a, b = config.feeds
    assert (a.summary_length, a.feed_image) == (0, None)  # its own 0 wins; feed_image comes from [defaults]
    assert (b.summary_length, b.feed_image) == (None, None)
    plain = load_config(write_config(GOOD_FEED))
    assert (plain.defaults.summary_length, plain.defaults.feed_image) == (500, False)


def test_webhook_url_in_the_file_is_refused_without_echoing_it(write_config) -> None:
    secret = "https://discord.com/api/webhooks/1/very-secret-token"
    problem = only_problem(f'[[feeds]]\nurl = "https://a.example/f"\nwebhooks = ["{secret}"]\n', write_config)
    assert problem.startswith("feeds[0].webhooks:")
    assert "very-secret-token" not in problem


def test_feeds_must_be_an_array_of_tables(write_config) -> None:
    problem = only_problem('feeds = "https://a.example/f"\n', write_config)
    assert problem.startswith("feeds:")
    problem = only_problem('feeds = [1]\n', write_config)
    assert problem.startswith("feeds[0]:") and "table" in problem


def test_duplicate_feed_names(write_config) -> None:
    text = ('[[feeds]]\nurl = "https://a.example/f"\nname = "Blog"\nchannels = [1]\n'
            '[[feeds]]\nurl = "https://b.example/f"\nname = "blog"\nchannels = [1]\n')
    problem = only_problem(text, write_config)
    assert problem.startswith("feeds[1].name:") and "feeds[0]" in problem


def test_every_problem_is_reported_once(write_config) -> None:
    text = """
        [polling]
        interval = "soon"
        max_bytes = "lots"
        unknown_thing = 1

        [[feeds]]
        url = "https://a.example/f"
        channels = [1]

        [[feeds]]
        url = "https://b.example/f"
        channels = [1]
        backfill = "all"

        [[feeds]]
        url = "https://c.example/f"

        [[feeds]]
        channels = [1]
    """
    problems = problems_of(text, write_config)
    paths = sorted(p.split(":", 1)[0] for p in problems)
    assert paths == sorted([
        "polling.interval", "polling.max_bytes", "polling.unknown_thing",
        "feeds[1].backfill", "feeds[2].channels", "feeds[3].url",
    ]), problems
    message = str(ConfigError(problems))
    assert all(p in message for p in problems)


def test_a_bad_url_and_missing_channels_are_both_reported(write_config) -> None:
    problems = problems_of('[[feeds]]\nurl = "gopher://a.example/f"\n', write_config)
    assert sorted(p.split(":", 1)[0] for p in problems) == ["feeds[0].channels", "feeds[0].url"], problems


def test_missing_file_and_bad_toml(tmp_path, write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "no such file" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        load_config(write_config("[polling\ninterval = 1\n"))
    assert "not valid TOML" in info.value.problems[0]
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[storage]\nurl = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "UTF-8" in info.value.problems[0]


def test_config_from_dict_without_a_path_uses_the_working_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict({"feeds": [{"url": "file:x.xml", "channels": [1]}]})
    assert isinstance(cfg, Config) and cfg.feeds[0].url == (tmp_path / "x.xml").as_uri()


# --- the command line ---------------------------------------------------------------------------------


def _herald(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HERALD_CONFIG", "DISCORD_TOKEN")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_herald_check_rejects_a_bad_config_naming_the_key_path(tmp_path, write_config) -> None:
    path = write_config(GOOD_FEED + '[[feeds]]\nurl = "https://b.example/f"\n[polling]\ninterval = "never"\n')
    proc = _herald("check", "--config", str(path), cwd=tmp_path)
    assert proc.returncode != 0
    assert "feeds[1].channels" in proc.stderr
    assert "polling.interval" in proc.stderr
    assert proc.stdout == ""


def test_herald_check_accepts_a_good_config(tmp_path, write_config) -> None:
    path = write_config(GOOD_FEED)
    proc = _herald("check", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout and "https://blog.example/feed.xml" in proc.stdout
