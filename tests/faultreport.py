"""Turns the fault ledger of a test run into the table of docs/RELIABILITY.md.

    rm -f /tmp/herald-faults.jsonl
    HERALD_FAULT_REPORT=/tmp/herald-faults.jsonl python -m pytest tests/test_faults*.py tests/test_security.py
    python -m tests.faultreport /tmp/herald-faults.jsonl --write docs/RELIABILITY.md

Rows with the same fault name (parametrised cases, repeated runs) are added up. With
``--write`` the table replaces what sits between the ``<!-- faults:begin -->`` and
``<!-- faults:end -->`` markers of the document; otherwise it is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

AREAS = [("feed", "Hostile feeds"), ("fetch", "Fetching limits"), ("discord", "Discord"),
         ("process", "Process"), ("storage", "Storage"), ("security", "Security")]
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"


def load(path: Path) -> list[dict]:
    rows: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        key = r["fault"]
        if key in rows:
            agg = rows[key]
            for n in ("runs", "lost", "duplicated"):
                agg[n] += r[n]
            agg["outcome"] = r["outcome"]
            agg["at"] = r["at"]
        else:
            rows[key] = dict(r)
    return list(rows.values())


def table(rows: list[dict]) -> str:
    out = []
    total = {"runs": 0, "lost": 0, "duplicated": 0}
    for area, title in AREAS:
        group = [r for r in rows if r["area"] == area]
        if not group:
            continue
        out.append(f"\n### {title}\n")
        out.append("| Fault | Outcome | Runs | Lost | Duplicated |")
        out.append("|---|---|---:|---:|---:|")
        for r in group:
            outcome = r["outcome"].replace("|", "\\|")
            out.append(f"| {r['fault']} | {outcome} | {r['runs']} | {r['lost']} | {r['duplicated']} |")
            for n in total:
                total[n] += r[n]
    stamp = max((r["at"] for r in rows), default="?")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip() or "?"
    except OSError:
        commit = "?"
    head = (f"Measured {stamp} at commit {commit}: {len(rows)} faults, {total['runs']} runs, "
            f"{total['lost']} entries lost, {total['duplicated']} duplicated.")
    return head + "\n" + "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ledger", type=Path)
    ap.add_argument("--write", type=Path, metavar="DOC", help="replace the table between the markers in DOC")
    args = ap.parse_args(argv)
    rows = load(args.ledger)
    if not rows:
        print(f"{args.ledger}: no rows (was HERALD_FAULT_REPORT set for the run?)", file=sys.stderr)
        return 1
    text = table(rows)
    if args.write is None:
        print(text)
        return 0
    doc = args.write.read_text(encoding="utf-8")
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    args.write.write_text(doc[:start] + "\n" + text + doc[end:], encoding="utf-8")
    print(f"{args.write}: {len(rows)} faults written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
