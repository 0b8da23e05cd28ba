"""Where the test suite's time goes: runs pytest with ``--durations`` (or reads a log of such a
run) and writes the summary into WORKSPACE_NOTES.md, between two marker lines, so the next slow
test is visible without anyone copying numbers by hand.

    python bench/suite_durations.py                      # runs `pytest -n 2 --durations=30`
    python bench/suite_durations.py --log=run.log        # summarises a log already written
    python bench/suite_durations.py -- -m "not slow"     # extra pytest arguments after --

The summary: the wall time, the pass/fail line, the slowest tests (call, setup and teardown
rows as pytest reports them) and the share of the summed test time the slowest ten take.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTES = os.path.join(ROOT, "WORKSPACE_NOTES.md")
BEGIN = "<!-- suite_durations: begin (written by bench/suite_durations.py) -->"
END = "<!-- suite_durations: end -->"
ROW = re.compile(r"^\s*([0-9.]+)s (call|setup|teardown)\s+(\S.*)$")
# pytest's closing line, with or without -q's lack of '=' rules around it.
FINAL = re.compile(r"^(?:=+ )?((?:\d+ \w+(?:, )?)+.*) in ([0-9.]+)s")


def parse(log: str) -> tuple[list[tuple[float, str, str]], str, float]:
    """(seconds, phase, test id) rows, the closing line and its seconds, from pytest output."""
    rows, final, seconds = [], "", float("nan")
    for line in log.splitlines():
        m = ROW.match(line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
        m = FINAL.match(line.strip())
        if m and re.search(r"\b(passed|failed|error|errors)\b", m.group(1)):
            final, seconds = m.group(1), float(m.group(2))
    return rows, final, seconds


def summary(rows, final: str, seconds: float, command: str, top: int) -> str:
    rows = sorted(rows, reverse=True)
    total = sum(s for s, _, _ in rows)
    ten = sum(s for s, _, _ in rows[:10])
    lines = [BEGIN, "",
             f"`{command}` on {datetime.date.today().isoformat()}: **{final}** in "
             f"{seconds:.0f} s ({seconds / 60:.1f} min) wall.",
             "",
             f"The slowest {min(top, len(rows))} of the rows pytest reported (summed test time "
             f"of those rows {total:.0f} s; the ten slowest are {100 * ten / max(total, 1):.0f} "
             "% of it):", "",
             "| s | phase | test |", "|---:|---|---|"]
    lines += [f"| {s:.1f} | {phase} | `{name}` |" for s, phase, name in rows[:top]]
    lines += ["", END]
    return "\n".join(lines)


def write(section: str, path: str = NOTES) -> None:
    text = open(path).read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n### Test suite durations (generated)\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="a pytest log with --durations output to summarise")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--notes", default=NOTES)
    parser.add_argument("--save", default=os.path.join(ROOT, "pytest_durations.log"),
                        help="where the pytest run's whole output goes")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    code = 0
    if args.log:
        log, command = open(args.log).read(), f"pytest (log {os.path.basename(args.log)})"
    else:
        cmd = [sys.executable, "-m", "pytest", "-n", "2", f"--durations={args.top}", *extra]
        command = "pytest -n 2 " + " ".join(extra) if extra else "pytest -n 2"
        t0 = time.time()
        with open(args.save, "w") as out:
            code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL).returncode
        log = open(args.save).read()
        print(f"pytest exit {code}, wall {time.time() - t0:.0f} s; its output: {args.save}")
    rows, final, seconds = parse(log)
    if not rows:
        sys.exit("suite_durations: no --durations rows in the pytest output")
    write(summary(rows, final, seconds, command, args.top), args.notes)
    print(f"{final} in {seconds:.0f} s; wrote the durations summary into {args.notes}")
    return code


if __name__ == "__main__":
    sys.exit(main())
