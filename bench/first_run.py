"""A new user's first command, as they run it: `iotrace run` with its live
dashboard in a real 160x48 terminal (tmux), the four default workloads made to
run for 60 s (`-- --runtime 60`).

Targets (issue 11): 0 calls unaccounted (`lost` 0 on the screen and in the
trace: every call is a record or counted in a run record) and the dashboard
redrawing >= 10 times per second. Redraws are counted from outside, as a user
sees them: the pane is captured 20 times a second and every capture that
differs from the one before is a redraw (so 20/s is the most this can report).
The live view scrolls, so every frame the dashboard draws changes the screen.

    sudo .venv/bin/python -m bench.first_run [--runtime 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from iotrace import session

SESSION = "iotrace-bench-first-run"
SAMPLE_HZ = 20


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout


def _screen() -> str:
    return _tmux("capture-pane", "-p", "-t", SESSION)


def _wait_for(pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _screen()
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise SystemExit(f"bench.first_run: {pattern!r} never appeared; last screen:\n{text}")


def measure(runtime: float) -> dict[str, Any]:
    iotrace = str(Path(sys.executable).with_name("iotrace"))
    tmp = Path(tempfile.mkdtemp(prefix="iotrace-first-run-"))
    trace, done = tmp / "first.trace", tmp / "exit-code"
    cmd = (
        f"unset COLUMNS LINES; cd {tmp} && {iotrace} run -o {trace} -- --runtime {runtime:g}; "
        f"echo $? > {done}; sleep 600"
    )
    _tmux("kill-session", "-t", SESSION)
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48", cmd], check=True
    )
    subprocess.run(["tmux", "resize-window", "-t", SESSION, "-x", "160", "-y", "48"], check=True)
    load0 = os.getloadavg()[0]
    try:
        _wait_for("● LIVE", 120)
        per_second: list[int] = []
        last, changes, second = "", 0, time.monotonic()
        end = time.monotonic() + runtime
        while time.monotonic() < end:
            now = _screen()
            if "ENDED" in now:
                break
            if now != last:
                changes += 1
                last = now
            if time.monotonic() - second >= 1.0:
                per_second.append(changes)
                changes, second = 0, time.monotonic()
            time.sleep(1 / SAMPLE_HZ)
        ended = _wait_for(r"■ ENDED", runtime + 120)
        m = re.search(r"\blost ([\d,]+)", ended)
        screen_lost = int(m.group(1).replace(",", "")) if m else -1
        _tmux("send-keys", "-t", SESSION, "q")
        deadline = time.monotonic() + 300
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        rc = int(done.read_text().strip() or -1) if done.exists() else -1
    finally:
        _tmux("kill-session", "-t", SESSION)
    t = session.tally(trace)
    size = trace.stat().st_size
    shutil.rmtree(tmp, ignore_errors=True)
    steady = per_second[2:-1] or per_second  # leave out the first frames and the end
    return {
        "runtime_s": runtime,
        "exit_code": rc,
        "screen_lost": screen_lost,
        "trace_lost": int(t.stats.get("lost_total", 0)) + t.lost_in_records,
        "records": t.events,
        "calls": t.calls,
        "complete": t.footer is not None and not t.damage,
        "trace_bytes": size,
        "redraws_per_s_median": statistics.median(steady) if steady else 0.0,
        "redraws_per_s_min": min(steady) if steady else 0,
        "load": f"{load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
    }


def render(r: dict[str, Any]) -> str:
    ok_lost = r["screen_lost"] == 0 and r["trace_lost"] == 0
    ok_fps = r["redraws_per_s_median"] >= 10
    return "\n".join(
        [
            f"   `iotrace run -- --runtime {r['runtime_s']:g}` with the dashboard in tmux 160x48 "
            f"(load {r['load']}):",
            f"     exit {r['exit_code']}; trace {'complete' if r['complete'] else 'DAMAGED'}: "
            f"{r['records']:,} records standing for {r['calls']:,} calls, "
            f"{r['trace_bytes'] / 1e6:.1f} MB",
            f"     lost: {r['screen_lost']:,} on the screen, {r['trace_lost']:,} in the trace "
            f"(target 0: {'met' if ok_lost else 'NOT met'})",
            f"     screen redraws per second: median {r['redraws_per_s_median']:g}, "
            f"min {r['redraws_per_s_min']} (target >= 10: {'met' if ok_fps else 'NOT met'}; "
            f"sampled at {SAMPLE_HZ}/s)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.first_run", description=__doc__)
    ap.add_argument("--runtime", type=float, default=60.0, help="workload runtime, seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.first_run: needs root (the probes)")
    if shutil.which("tmux") is None:
        raise SystemExit("bench.first_run: needs tmux (sudo ./setup.sh installs it)")
    r = measure(args.runtime)
    print(render(r))
    print("JSON first_run " + json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
