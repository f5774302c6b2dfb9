"""Soak: `iotrace trace` of a tight read() loop for 10 minutes, end to end.

The whole CLI as a user runs it (drain thread, incremental file, counters),
sampled every few seconds from outside: the tracer's resident memory (target:
flat after warm-up), the trace file's size against the size predicted from
its first minute's bytes per event (target: within 10%), records lost and map
evictions (target: none, and never silent: they are in the trace's counters).
The CI suite runs the same at 20 s (tests/e2e/test_reliability.py).

    sudo .venv/bin/python -m bench.soak [--seconds 600]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import compile_c, emit_json
from iotrace import session


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _bytes_per_event(path: Path) -> float:
    """Bytes per event of the file as written so far (its whole chunks)."""
    with tempfile.NamedTemporaryFile(suffix=".trace") as tmp:
        with open(path, "rb") as src:
            data = src.read()
        tmp.write(data)
        tmp.flush()
        _, _, chunks = session.iter_chunks(Path(tmp.name))
        n = sum(len(v) for tag, v in chunks if tag == b"EVTS")
    return len(data) / n if n else 0.0


def soak(seconds: float, every_s: float, out: Path) -> dict[str, Any]:
    exe = compile_c("readloop")
    err_path = out.with_suffix(".stderr")
    with open(err_path, "w+") as err:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "iotrace", "trace", "--no-tui", "-d", f"{seconds:g}",
                "-o", str(out), "--force", "--", str(exe), "-n", str(10**13),
            ],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        while "Tracing " not in err_path.read_text():
            if proc.poll() is not None:
                raise SystemExit(f"bench.soak: iotrace failed: {err_path.read_text()}")
            time.sleep(0.05)
        t0 = time.monotonic()
        samples: list[tuple[float, float, int]] = []
        predict_at = min(60.0, seconds / 4)
        bpe_early = 0.0
        while proc.poll() is None and time.monotonic() - t0 < seconds - 0.5:
            samples.append((time.monotonic() - t0, rss_mib(proc.pid), out.stat().st_size))
            if not bpe_early and samples[-1][0] >= predict_at:
                bpe_early = _bytes_per_event(out)
            time.sleep(every_s)
        stdout, _ = proc.communicate(timeout=seconds + 600)
    # Counted chunk by chunk: ten minutes of records do not fit in memory.
    tally = session.tally(out)
    n, stats, footer, damage = tally.events, tally.stats, tally.footer, tally.damage
    size = out.stat().st_size
    warm = [s for s in samples if s[0] >= min(30.0, seconds / 4)]
    lost = sum(int(v) for v in stats.get("lost", {}).values())
    other = stats.get("other", {}) or {}
    return {
        "seconds": seconds,
        "events": n,
        "events_per_s": round(n / max(samples[-1][0], 1e-9)) if samples else 0,
        "trace_bytes": size,
        "bytes_per_event": round(size / max(n, 1), 2),
        "bytes_per_event_first_minute": round(bpe_early, 2),
        "size_vs_prediction": round(size / (bpe_early * n), 3) if bpe_early else None,
        "rss_mib_after_warmup": round(warm[0][1], 1) if warm else None,
        "rss_mib_last": round(samples[-1][1], 1) if samples else None,
        "rss_mib_max": round(max(s[1] for s in samples), 1) if samples else None,
        "lost": lost,
        "map_evictions": {k: v for k, v in other.items() if v},
        "complete": footer is not None and not damage,
        "exit_code": proc.returncode,
        "last_line": stdout.strip().splitlines()[-1] if stdout.strip() else "",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.soak", description=__doc__)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--every", type=float, default=5.0, help="sampling interval, seconds")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.soak loads BPF programs: run it as root")
    with tempfile.TemporaryDirectory(prefix="iotrace-soak-") as d:
        r = soak(args.seconds, args.every, Path(d) / "soak.trace")
    for k, v in r.items():
        print(f"{k:32} {v}")
    emit_json("soak", r)
    grew = (r["rss_mib_last"] or 0) - (r["rss_mib_after_warmup"] or 0)
    ok = (
        r["complete"]
        and grew < 64
        and r["size_vs_prediction"] is not None
        and abs(r["size_vs_prediction"] - 1) < 0.10
        and not r["map_evictions"]
    )
    print("soak:", "ok" if ok else "NOT OK", f"(memory grew {grew:.1f} MiB after warm-up)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
