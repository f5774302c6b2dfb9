"""Start-up: from `iotrace run` to the first recorded event.

Starts `iotrace run sync-blocking --no-tui -d 1` (and `iotrace trace --no-tui --
/bin/true`) `--runs` times and dates, on the records' own clock
(CLOCK_MONOTONIC), the first record in the trace against the moment the
process was started. Also prints when "Tracing ..." appeared, which comes
after probes are compiled, loaded and attached and the targets are set up.

    sudo .venv/bin/python -m bench.startup [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import publish, require_root
from iotrace import session

CASES: dict[str, list[str]] = {
    "run": ["run", "sync-blocking", "--no-tui", "-d", "1"],
    "trace": ["trace", "--no-tui", "--", "/bin/true"],
}


def once(args: list[str], trace: Path) -> tuple[float, float]:
    """(s to the 'Tracing' line, s to the first record) for one start."""
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "iotrace", *args[:1], "--force", "-o", str(trace), *args[1:]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    announced = float("nan")
    for line in proc.stderr:
        if line.startswith("Tracing "):
            announced = (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - t0) / 1e9
    if proc.wait() != 0:
        raise SystemExit(f"bench.startup: iotrace {' '.join(args)} failed")
    ev = session.load(trace).events
    if len(ev) == 0:
        raise SystemExit(f"bench.startup: iotrace {' '.join(args)} recorded nothing")
    first = (int(np.min(ev["ts_ns"][ev["ts_ns"] > 0])) - t0) / 1e9
    return announced, first


def measure(runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    with tempfile.TemporaryDirectory() as d:
        for name, args in CASES.items():
            got = [once(args, Path(d) / f"{name}.trace") for _ in range(runs)]
            out[name] = {
                "announced_s": statistics.median(a for a, _ in got),
                "first_event_s": statistics.median(f for _, f in got),
                "first_event_runs_s": [f for _, f in got],
            }
    return out


def render(r: dict[str, Any]) -> str:
    lines = [f"start-up, median of {r['runs']} starts (process start -> ...):"]
    for name, args in CASES.items():
        c = r[name]
        lines.append(
            f"  iotrace {' '.join(args):<42} 'Tracing' line {c['announced_s']:5.2f} s, "
            f"first recorded event {c['first_event_s']:5.2f} s"
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
