"""Polling throughput: Herald against the ``reader`` library, side by side, same feeds.

One feed server (bench/server.py) runs in its own process. For every repeat,
each client (Herald, then reader with each worker count, in a rotating order)
runs in a fresh subprocess with a fresh database in a temporary folder, and
measures three scenarios in a row on the same served feeds:

1. ``all_new``: N feeds fetched and parsed for the first time.
2. ``changed_5pct``: 5% of the feeds publish one new entry; all N are updated
   again, the others answer 304 to the conditional GET.
3. ``no_conditional``: the server ignores If-None-Match/If-Modified-Since and
   sends no validators; all N answer 200 with the body they had (nothing changed).

It reports feeds/s (median, min, max over the repeats), the Herald/reader
ratio of medians, Herald's peak RSS (main process and parse-pool children),
and where the CPU went (client main process, parse workers, feed server).

    python -m bench.bench_poll --quick      # smoke run, well under a minute
    python -m bench.bench_poll              # the full run quoted in docs/BENCHMARKS.md

Results go to bench/results/poll-<time>.json and .md (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("all_new", "changed_5pct", "no_conditional")
TITLES = {
    "all_new": "all new (first fetch of every feed)",
    "changed_5pct": "5% changed (the rest answer 304)",
    "no_conditional": "server ignores conditional GET (identical 200s)",
}
_TICK = os.sysconf("SC_CLK_TCK")


# --- helpers shared by the driver and the clients ---------------------------------------------


def _ctl(port: int, path: str, method: str = "POST") -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / _TICK


def _hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _urls(port: int, n: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/feed/{i}.xml" for i in range(n)]


# --- the Herald client -----------------------------------------------------------------------


class CountingSink:
    """A delivery sink that only counts (the benchmark produces no deliveries; backfill is 0)."""

    def __init__(self) -> None:
        self.count = 0

    async def send(self, claimed: Any, payload: Any, nonce: str) -> str | None:
        self.count += 1
        return f"bench-{self.count}"


async def _herald_client(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from bot.app import Herald
    from bot.config import config_from_dict

    db = Path(args.workdir) / "herald.db"
    polling: dict[str, Any] = {
        "concurrency": args.concurrency,
        "per_host": args.concurrency,  # every bench feed is on 127.0.0.1; in real use they are spread over hosts
        "parse_workers": args.parse_workers,
        "timeout": "120s",
    }
    config = config_from_dict({
        "storage": {"url": f"sqlite:///{db}"},
        "polling": polling,
        "feeds": [{"url": u, "channels": [100000000000000000 + i]} for i, u in enumerate(_urls(args.port, args.feeds))],
    })
    sink = CountingSink()
    out: dict[str, Any] = {"client": "herald", "concurrency": args.concurrency, "phases": {}}
    profiler = None
    async with Herald(config, sink) as h:
        # warm the process pool (outside the timings): start every worker and import feedparser in it
        t0 = time.perf_counter()
        warm = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>w</title>'
                b"<item><title>t</title><link>https://example.com/x</link><description>&lt;p&gt;x&lt;/p&gt;</description></item>"
                b"</channel></rss>")
        await asyncio.gather(*(h.parser.parse(warm, {}, "https://example.com/") for _ in range(h.parser.workers * 4)))
        out["pool_warmup_s"] = time.perf_counter() - t0
        out["parse_workers"] = h.parser.workers
        worker_pids = h.parser.pids()
        for phase in SCENARIOS:
            _before_phase(args, phase)
            cpu0 = {"main": time.process_time(), "workers": sum(map(_cpu_seconds, worker_pids)),
                    "server": _cpu_seconds(args.server_pid), "machine": _machine_busy()}
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            t0 = time.perf_counter()
            stats = await h.poller.poll_due(everything=True)
            elapsed = time.perf_counter() - t0
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(Path(args.profile) / f"herald-main-{phase}-r{args.round}.prof"))
            worker_pids = h.parser.pids() or worker_pids
            cpu = {"main": time.process_time() - cpu0["main"],
                   "workers": sum(map(_cpu_seconds, worker_pids)) - cpu0["workers"],
                   "server": _cpu_seconds(args.server_pid) - cpu0["server"],
                   "machine": _machine_busy() - cpu0["machine"]}
            cpu["others"] = max(0.0, cpu["machine"] - cpu["main"] - cpu["workers"] - cpu["server"])
            row = await h.storage.db.fetchone("SELECT COUNT(*) FROM entries")  # type: ignore[attr-defined]
            out["phases"][phase] = {
                "seconds": elapsed, "feeds_per_s": args.feeds / elapsed,
                "polled": stats.polled, "parsed": stats.parsed, "not_modified": stats.not_modified,
                "unchanged": stats.unchanged, "errors": stats.errors, "entries_stored_total": row[0] if row else None,
                "cpu_s": cpu, "server_answers": _ctl(args.port, "/_ctl/stats/reset"),
            }
        out["rss_kib"] = {
            "main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "pool_workers": [_hwm_kib(p) for p in worker_pids],
        }
        out["rss_kib"]["pool_workers_sum"] = sum(out["rss_kib"]["pool_workers"])
        out["deliveries_sent"] = sink.count
    return out


# --- the reader client -----------------------------------------------------------------------


def _reader_client(args: argparse.Namespace) -> dict[str, Any]:
    import reader as reader_lib
    from reader import make_reader

    db = Path(args.workdir) / "reader.sqlite"
    r = make_reader(str(db))
    for u in _urls(args.port, args.feeds):
        r.add_feed(u)
    out: dict[str, Any] = {"client": f"reader-w{args.workers}", "workers": args.workers,
                           "reader_version": reader_lib.__version__, "phases": {}}
    for phase in SCENARIOS:
        _before_phase(args, phase)
        cpu0 = {"main": time.process_time(), "server": _cpu_seconds(args.server_pid), "machine": _machine_busy()}
        t0 = time.perf_counter()
        new = errors = not_modified = 0
        for res in r.update_feeds_iter(workers=args.workers, scheduled=False):
            if isinstance(res.value, Exception):
                errors += 1
            elif res.value is None:
                not_modified += 1
            else:
                new += res.value.new
        elapsed = time.perf_counter() - t0
        cpu = {"main": time.process_time() - cpu0["main"], "workers": 0.0,
               "server": _cpu_seconds(args.server_pid) - cpu0["server"], "machine": _machine_busy() - cpu0["machine"]}
        cpu["others"] = max(0.0, cpu["machine"] - cpu["main"] - cpu["server"])
        counts = r.get_entry_counts()
        out["phases"][phase] = {
            "seconds": elapsed, "feeds_per_s": args.feeds / elapsed, "new_entries": new, "errors": errors,
            "not_modified": not_modified, "entries_stored_total": counts.total, "cpu_s": cpu,
            "server_answers": _ctl(args.port, "/_ctl/stats/reset"),
        }
    out["rss_kib"] = {"main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    r.close()
    return out


def _before_phase(args: argparse.Namespace, phase: str) -> None:
    """Puts the server in the state a phase needs (outside the timing)."""
    if phase == "changed_5pct":
        _ctl(args.port, f"/_ctl/change?fraction={args.changed}&round={args.round}")
    elif phase == "no_conditional":
        _ctl(args.port, "/_ctl/conditional?on=0")
    _ctl(args.port, "/_ctl/stats/reset")


# --- the driver ------------------------------------------------------------------------------


def _start_server(feeds: int, seed: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.server", "--feeds", str(feeds), "--seed", str(seed), "--max-seconds", "14400"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise SystemExit(f"the feed server did not start: {line!r}")
    return proc, int(line.split()[1])


def _run_client(
    kind: str, args: argparse.Namespace, port: int, server_pid: int, round_: int, workers: int = 0,
) -> dict[str, Any]:
    _ctl(port, "/_ctl/reset")
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp:
        cmd = [sys.executable, "-m", "bench.bench_poll", "--client", kind, "--port", str(port),
               "--server-pid", str(server_pid), "--workdir", tmp, "--feeds", str(args.feeds), "--round", str(round_),
               "--changed", str(args.changed), "--concurrency", str(args.concurrency),
               "--parse-workers", str(args.parse_workers), "--workers", str(workers)]
        if args.profile and kind == "herald":
            cmd += ["--profile", args.profile]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{kind} client failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for name in ("aiohttp", "feedparser", "html2text", "reader", "requests"):
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            pkgs[name] = None
    sqlite_version = __import__("sqlite3").sqlite_version
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "sqlite": sqlite_version, "packages": pkgs}


def drive(args: argparse.Namespace) -> dict[str, Any]:
    clients: list[tuple[str, int]] = [("herald", 0)]
    if not args.skip_reader:
        clients += [("reader", w) for w in args.reader_workers]
    t_start = time.perf_counter()
    server, port = _start_server(args.feeds, args.seed)
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for r in range(args.repeats):
            order = clients[r % len(clients):] + clients[: r % len(clients)]  # rotate, to spread drift
            for kind, workers in order:
                res = _run_client(kind, args, port, server.pid, r + 1, workers)
                runs.setdefault(res["client"], []).append(res)
                ph = res["phases"]
                print(f"  repeat {r + 1}/{args.repeats} {res['client']:>10}: "
                      + "  ".join(f"{p} {ph[p]['feeds_per_s']:7.1f}/s" for p in SCENARIOS), file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    problems = _check(runs, args)
    for p in problems:
        print(f"  CHECK FAILED: {p}", file=sys.stderr)
    summary: dict[str, Any] = {}
    for client, results in runs.items():
        summary[client] = {p: _summary([x["phases"][p]["feeds_per_s"] for x in results]) for p in SCENARIOS}
        summary[client]["cpu_s_median"] = {
            p: {k: statistics.median(x["phases"][p]["cpu_s"][k] for x in results)
                for k in ("main", "workers", "server", "others")}
            for p in SCENARIOS
        }
        summary[client]["rss_kib_max"] = {
            "main": max(x["rss_kib"]["main"] for x in results),
            **({"pool_workers_sum": max(x["rss_kib"]["pool_workers_sum"] for x in results),
                "pool_worker_max": max(max(x["rss_kib"]["pool_workers"] or [0]) for x in results)}
               if client == "herald" else {}),
        }
        if client == "herald":
            summary[client]["pool_warmup_s"] = _summary([x["pool_warmup_s"] for x in results])
    ratios: dict[str, Any] = {}
    reader_clients = [c for c in summary if c.startswith("reader")]
    for p in SCENARIOS:
        h = summary["herald"][p]["median"]
        per = {c: h / summary[c][p]["median"] for c in reader_clients}
        best = max(reader_clients, key=lambda c: summary[c][p]["median"]) if reader_clients else None
        ratios[p] = {"vs": per, "best_reader": best, "vs_best_reader": per[best] if best else None}
    return {
        "args": {k: v for k, v in vars(args).items() if k not in ("client",)},
        "machine": _machine(),
        "wall_seconds": time.perf_counter() - t_start,
        "summary": summary,
        "ratios": ratios,
        "checks_failed": problems,
        "runs": runs,
    }


def _check(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    """Every client saw the same server answers and stored the same number of entries."""
    n = args.feeds
    k = len(__import__("bench.feedgen", fromlist=["changed_indexes"]).changed_indexes(n, args.changed, args.seed, 1))
    per_entry = 20
    want = {
        "all_new": ({"200": n}, n * per_entry, n),
        "changed_5pct": ({"200": k, "304": n - k} if k < n else {"200": k}, n * per_entry + k, k),
        "no_conditional": ({"200": n}, n * per_entry + k, 0),
    }
    problems = []
    for client, results in runs.items():
        for i, res in enumerate(results, 1):
            for phase, (answers, stored, parsed) in want.items():
                ph = res["phases"][phase]
                if ph["server_answers"] != answers:
                    problems.append(f"{client} repeat {i} {phase}: server answered {ph['server_answers']}, "
                                    f"expected {answers}")
                if ph["entries_stored_total"] != stored:
                    problems.append(f"{client} repeat {i} {phase}: {ph['entries_stored_total']} entries stored, "
                                    f"expected {stored}")
                if "parsed" in ph and ph["parsed"] != parsed:
                    problems.append(f"{client} repeat {i} {phase}: parsed {ph['parsed']} feeds, expected {parsed}")
                if ph.get("errors"):
                    problems.append(f"{client} repeat {i} {phase}: {ph['errors']} feeds failed")
    return problems


def markdown(result: dict[str, Any]) -> str:
    a, s, m = result["args"], result["summary"], result["machine"]
    lines = [
        f"Polling benchmark: {a['feeds']} feeds × {a['repeats']} repeats, {int(a['changed'] * 100)}% changed; "
        f"Herald concurrency {a['concurrency']}, {result['runs']['herald'][0]['parse_workers']} parse workers; "
        f"{m['nproc']} CPUs, Python {m['python']}, reader {m['packages'].get('reader')}.",
        "",
        "| scenario | client | feeds/s median | min | max | Herald / this |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in SCENARIOS:
        for c in s:
            row = s[c][p]
            ratio = "" if c == "herald" else f"{result['ratios'][p]['vs'][c]:.2f}×"
            lines.append(f"| {TITLES[p]} | {c} | {row['median']:.1f} | {row['min']:.1f} | {row['max']:.1f} | {ratio} |")
    lines += ["", "CPU seconds per scenario (medians): client main process (all its threads), Herald's parse workers,"
              " the feed server, and everything else on the machine during the timing (noise)", "",
              "| scenario | client | main | parse workers | server | others |", "|---|---|---:|---:|---:|---:|"]
    for p in SCENARIOS:
        for c in s:
            cpu = s[c]["cpu_s_median"][p]
            lines.append(f"| {p} | {c} | {cpu['main']:.2f} | {cpu['workers']:.2f} | {cpu['server']:.2f} "
                         f"| {cpu['others']:.2f} |")
    lines += ["", "What the server answered and what was stored (first repeat; every repeat is checked, "
              "see checks_failed in the JSON)", "",
              "| scenario | client | 200 | 304 | parsed | entries stored (total) |", "|---|---|---:|---:|---:|---:|"]
    for p in SCENARIOS:
        for c in s:
            ph = result["runs"][c][0]["phases"][p]
            ans = ph["server_answers"]
            parsed = ph.get("parsed", "")
            lines.append(f"| {p} | {c} | {ans.get('200', 0)} | {ans.get('304', 0)} | {parsed} "
                         f"| {ph['entries_stored_total']} |")
    h = s["herald"]
    lines += [
        "",
        f"Herald peak RSS: main process {h['rss_kib_max']['main'] / 1024:.0f} MiB; parse workers "
        f"{h['rss_kib_max']['pool_worker_max'] / 1024:.0f} MiB each at most, "
        f"{h['rss_kib_max']['pool_workers_sum'] / 1024:.0f} MiB together; "
        f"pool warm-up {h['pool_warmup_s']['median'] * 1000:.0f} ms (median, not timed above).",
    ]
    for c in s:
        if c.startswith("reader"):
            lines.append(f"{c} peak RSS: {s[c]['rss_kib_max']['main'] / 1024:.0f} MiB.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Herald vs reader: polling throughput on local synthetic feeds.")
    ap.add_argument("--quick", action="store_true", help="smoke run: 40 feeds, 1 repeat, reader with 16 workers only")
    ap.add_argument("--feeds", type=int, default=None, help="feeds served (default 500; 40 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per client (default 5; 1 with --quick)")
    ap.add_argument("--changed", type=float, default=0.05, help="fraction of feeds that change in scenario 2")
    ap.add_argument("--concurrency", type=int, default=32, help="Herald polling.concurrency (and per_host)")
    ap.add_argument("--parse-workers", type=int, default=0, help="Herald polling.parse_workers (0: one per CPU)")
    ap.add_argument("--reader-workers", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="reader update_feeds(workers=...) values to measure (default 1,16; 16 with --quick)")
    ap.add_argument("--skip-reader", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", default=None, help="folder: dump cProfile stats of Herald's main process there")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    # internal: run one client in this process
    ap.add_argument("--client", choices=("herald", "reader"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.feeds is None:
        args.feeds = 40 if args.quick else 500
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.reader_workers is None:
        args.reader_workers = [16] if args.quick else [1, 16]

    if args.client == "herald":
        print(json.dumps(asyncio.run(_herald_client(args))))
        return 0
    if args.client == "reader":
        print(json.dumps(_reader_client(args)))
        return 0

    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    result = drive(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"poll-{'quick-' if args.quick else ''}{stamp}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    md = markdown(result)
    (out / f"{name}.md").write_text(md)
    print(md)
    if result["checks_failed"]:
        print(f"WARNING: {len(result['checks_failed'])} consistency checks failed (see checks_failed in the JSON)")
    print(f"results: {out / name}.json and .md  ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
