"""Event pipeline: a single-thread read() storm recorded in full.

Prints the storm's event rate, records lost (target 0), the drain thread's
capacity (events per CPU-second it used; target >= 1.5 M/s) and the tracer's
resident memory sampled through the storm (target: flat after warm-up).
With --overflow, a tiny ring and a slow drain show what happens past the
limit: the loss is counted and lands in the trace as LOST records.

    sudo .venv/bin/python -m bench.pipeline [--seconds 10] [--overflow]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Gated, Recording, compile_c, publish, require_root
from iotrace import events, session


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(seconds: float, procs: int, overflow: bool, fold: bool = True) -> dict[str, Any]:
    """`procs` single-thread storms side by side for about `seconds`, recorded by one
    tracer; with `overflow`, a 1 MiB ring drained every 250 ms; without `fold`, no
    repeat is folded into a run record however full the ring gets."""
    exe = compile_c("readloop")
    # calibrate: how many traced calls fit in the asked time
    probe_n = 200_000
    with tempfile.TemporaryDirectory() as d:
        rec = Recording(Path(d) / "cal.trace")
        g = Gated([str(exe), "-n", str(probe_n)])
        rec.add(g.pid)
        ns = float(g.go().split()[1])
        rec.stop()
    # On a machine with fewer CPUs than storms, each storm runs slower.
    share = min(1.0, (os.cpu_count() or 1) / procs)
    n = int(seconds * 1e9 / ns * share)
    opts: dict[str, Any] = {}
    if not fold:
        # every call a record of its own: what the drain itself can take
        opts["fold_at_fill"] = 2.0
    if overflow:
        opts.update(ringbuf_bytes=1 << 20, drain_interval_s=0.25)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(0.5):
            samples.append((time.monotonic() - t0, rss_mib()))

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "storm.trace"
        rec = Recording(out, **opts)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        storms = [Gated([str(exe), "-n", str(n)]) for _ in range(procs)]
        for g in storms:
            rec.add(g.pid)
        t0 = time.monotonic()
        for g in storms:
            g.release()
        for g in storms:
            g.output()
        storm_s = time.monotonic() - t0
        stats = rec.stop()
        stop.set()
        size = out.stat().st_size
        c = session.tally(out)
    calls = n * procs
    recorded = c.calls
    records = c.events
    warm = [m for s, m in samples if s >= 2.0] or [m for _, m in samples]
    cap = stats["events"] / stats["drain_cpu_s"] if stats["drain_cpu_s"] else float("inf")
    return {
        "procs": procs,
        "calls": calls,
        "storm_s": storm_s,
        "events_per_s": calls / storm_s,
        "recorded": recorded,
        "records": records,
        "fold": fold,
        "runs": c.kinds.get(events.Kind.SYSCALL_RUN, 0),
        "lost": int(stats["lost_total"]),
        "lost_records": c.kinds.get(events.Kind.LOST, 0),
        "lost_in_records": c.lost_in_records,
        "drain_cpu_s": stats["drain_cpu_s"],
        "drain_events_per_cpu_s": cap,
        "file_bytes": size,
        "bytes_per_event_file": size / max(records, 1),
        "rss_first_mib": warm[0] if warm else None,
        "rss_max_mib": max(warm) if warm else None,
        "rss_last_mib": warm[-1] if warm else None,
        "overflow": overflow,
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        f"storm: {r['procs']} x single-thread read() loop, {r['calls']:,} calls in "
        f"{r['storm_s']:.2f} s = {r['events_per_s'] / 1e6:.2f} M events/s"
        + (
            " (1 MiB ring drained every 250 ms: past the limit on purpose)" if r["overflow"] else ""
        ),
        f"counted {r['recorded']:,} of {r['calls']:,} calls in {r['records']:,} records "
        f"({r['runs']:,} run records; folding {'on' if r['fold'] else 'off'}); "
        f"lost {r['lost']:,} ({r['lost_records']} LOST records covering "
        f"{r['lost_in_records']:,})",
        f"drain and file threads: {r['drain_cpu_s']:.2f} CPU-s = "
        f"{r['drain_events_per_cpu_s'] / 1e6:.2f} M records per CPU-second (target >= 10)",
        f"trace file: {r['file_bytes'] / 2**20:.1f} MiB, "
        f"{r['bytes_per_event_file']:.1f} bytes/record",
    ]
    if r["rss_first_mib"] is not None:
        lines.append(
            f"tracer RSS after warm-up: first {r['rss_first_mib']:.1f} MiB, max "
            f"{r['rss_max_mib']:.1f} MiB, last {r['rss_last_mib']:.1f} MiB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=1, help="storms side by side (default 1)")
    ap.add_argument("--overflow", action="store_true")
    ap.add_argument("--no-fold", action="store_true", help="never fold repeats into run records")
    args = ap.parse_args(argv)
    require_root("pipeline")
    r = measure(args.seconds, args.procs, args.overflow, fold=not args.no_fold)
    return publish("pipeline", render(r), r)


if __name__ == "__main__":
    raise SystemExit(main())
