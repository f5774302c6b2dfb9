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

from bench.common import Gated, Recording, compile_c, emit_json
from iotrace import events, session


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--overflow", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.pipeline loads BPF programs: run it as root")
    exe = compile_c("readloop")
    # calibrate: how many traced calls fit in the asked time
    probe_n = 200_000
    with tempfile.TemporaryDirectory() as d:
        rec = Recording(Path(d) / "cal.trace")
        g = Gated([str(exe), "-n", str(probe_n)])
        rec.add(g.pid)
        ns = float(g.go().split()[1])
        rec.stop()
    n = int(args.seconds * 1e9 / ns)
    opts: dict[str, Any] = {}
    if args.overflow:
        opts = {"ringbuf_bytes": 1 << 20}
        opts["drain_interval_s"] = 0.25
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
        g = Gated([str(exe), "-n", str(n)])
        rec.add(g.pid)
        t0 = time.monotonic()
        ns = float(g.go().split()[1])
        storm_s = time.monotonic() - t0
        stats = rec.stop()
        stop.set()
        size = out.stat().st_size
        t = session.load(out)
        reads = int((t.events["kind"] == events.Kind.SYSCALL).sum())
        lost_rows = t.events[t.events["kind"] == events.Kind.LOST]
    rate = n / storm_s
    cap = stats["events"] / stats["drain_cpu_s"] if stats["drain_cpu_s"] else float("inf")
    warm = [m for s, m in samples if s >= 2.0] or [m for _, m in samples]
    print(f"storm: {n:,} read() calls in {storm_s:.2f} s = {rate / 1e6:.2f} M events/s "
          f"({ns:.0f} ns/call traced)")  # fmt: skip
    print(f"recorded {reads:,} calls; lost {stats['lost_total']:,} "
          f"({len(lost_rows)} LOST records covering {int(lost_rows['size'].sum()):,})")  # fmt: skip
    print(f"drain thread: {stats['drain_cpu_s']:.2f} CPU-s for {stats['events']:,} events "
          f"= {cap / 1e6:.2f} M events per CPU-second (target >= 1.5)")  # fmt: skip
    print(f"trace file: {size / 2**20:.1f} MiB, {size / max(reads, 1):.1f} bytes/event")
    if warm:
        print(f"tracer RSS after warm-up: first {warm[0]:.1f} MiB, max {max(warm):.1f} MiB, "
              f"last {warm[-1]:.1f} MiB")  # fmt: skip
    emit_json(
        "pipeline",
        {
            "calls": n,
            "storm_s": storm_s,
            "events_per_s": rate,
            "recorded": reads,
            "lost": stats["lost_total"],
            "drain_events_per_cpu_s": cap,
            "bytes_per_event_file": size / max(reads, 1),
            "rss_first_mib": warm[0] if warm else None,
            "rss_max_mib": max(warm) if warm else None,
            "overflow": args.overflow,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
