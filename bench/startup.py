"""Start-up and stop: from `iotrace run` to the first recorded event, and from
the last target's exit to the summary.

Starts each case `--runs` times and dates, on the records' own clock
(CLOCK_MONOTONIC), everything against the moment the process was started:
when the "compiling probes" line appeared on stderr (the first sign of life on
a cold start, before the seconds compiling takes), when "Tracing ..." appeared
(probes compiled, loaded and attached, targets set up) and the first record.
At the end: from the targets' last record (their exit) to the summary's first
line on stderr, and to iotrace's own exit (the probes are detached by then).

    sudo .venv/bin/python -m bench.startup [--runs 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import publish, require_root
from iotrace import events, session

CASES: dict[str, list[str]] = {
    "run": ["run", "sync-blocking", "--no-tui", "-d", "1"],
    "run-23": ["run", "sync-blocking", "--no-tui", "-d", "5", "--", "--pipe-reads", "23"],
    "trace": ["trace", "--no-tui", "--", "/bin/true"],
}
TARGETS = {"summary_after_exit_s": 1.0}
"""Issue 12: the summary within 1 s of the last target exiting."""


def _now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _last_target_ns(ev: np.ndarray) -> int:
    """The targets' last record: what iotrace adds at the end (LOST ranges, requests
    never reaped, both dated to the final drain) does not count."""
    own = (ev["kind"] != events.Kind.LOST) & ((ev["flags"] & events.Flag.NOT_OBSERVED) == 0)
    sel = ev[own]
    return int(max(sel["end_ns"].max(), sel["ts_ns"].max()))


def once(args: list[str], trace: Path) -> dict[str, float]:
    """Seconds from process start to each sign, and from the last record to the end."""
    t0 = _now()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iotrace", *args[:1], "--force", "-o", str(trace), *args[1:]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: dict[str, int] = {}
    for line in proc.stderr:
        for key, start in (("compiling", "iotrace: compiling"), ("announced", "Tracing "),
                           ("summary", "iotrace report:")):  # fmt: skip
            if line.startswith(start) and key not in seen:
                seen[key] = _now()
    if proc.wait() != 0:
        raise SystemExit(f"bench.startup: iotrace {' '.join(args)} failed")
    exited = _now()
    ev = session.load(trace).events
    if len(ev) == 0:
        raise SystemExit(f"bench.startup: iotrace {' '.join(args)} recorded nothing")
    last = _last_target_ns(ev)

    def since_start(key: str) -> float:
        return (seen[key] - t0) / 1e9 if key in seen else math.nan

    return {
        "compiling_s": since_start("compiling"),
        "announced_s": since_start("announced"),
        "first_event_s": (int(np.min(ev["ts_ns"][ev["ts_ns"] > 0])) - t0) / 1e9,
        "summary_after_exit_s": (seen["summary"] - last) / 1e9 if "summary" in seen else math.nan,
        "exit_after_exit_s": (exited - last) / 1e9,
        "total_s": (exited - t0) / 1e9,
    }


def measure(runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    with tempfile.TemporaryDirectory() as d:
        for name, args in CASES.items():
            got = [once(args, Path(d) / f"{name}.trace") for _ in range(runs)]
            out[name] = {k: statistics.median(g[k] for g in got) for k in got[0]}
            out[name]["first_event_runs_s"] = [g["first_event_s"] for g in got]
            out[name]["summary_after_exit_runs_s"] = [g["summary_after_exit_s"] for g in got]
    return out


def render(r: dict[str, Any]) -> str:
    lines = [f"start-up and stop, median of {r['runs']} runs (seconds):"]
    for name, args in CASES.items():
        c = r[name]
        lines.append(f"  iotrace {' '.join(args)}")
        lines.append(
            f"    from start: 'compiling' line {c['compiling_s']:5.2f}, 'Tracing' line "
            f"{c['announced_s']:5.2f}, first recorded event {c['first_event_s']:5.2f}"
        )
        ok = c["summary_after_exit_s"] <= TARGETS["summary_after_exit_s"]
        lines.append(
            f"    from the targets' last record: summary {c['summary_after_exit_s']:5.2f} "
            f"(target <= {TARGETS['summary_after_exit_s']:g}: {'met' if ok else 'NOT met'}), "
            f"iotrace exited {c['exit_after_exit_s']:5.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.startup", description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    require_root("startup")
    r = measure(args.runs)
    return publish("startup", render(r), r)


if __name__ == "__main__":
    raise SystemExit(main())
