"""Effect on a traced real program: fio's IOPS traced by iotrace against untraced.

fio, 4 KiB random reads, O_DIRECT, libaio at depth 32 (the target's case) on
the workloads' data file, run untraced, traced, traced, untraced (so a load
that drifts during the run weighs on both alike), each for `--runtime`
seconds. Traced means `iotrace trace --no-tui -- fio ...`, every call and
request recorded into a trace file. Prints IOPS both ways, the ratio
traced/untraced (target >= 0.95), and what the trace holds (records, lost).

    sudo .venv/bin/python -m bench.traced_fio [--runtime 5] [--engine libaio]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from iotrace.workloads import datafile

from bench.common import foreign_bpf_holders, publish, require_root
from iotrace import session

TARGET = 0.95
FILESIZE = 256 << 20


def fio_argv(fio: str, path: str, engine: str, depth: int, runtime: float, out: Path) -> list[str]:
    return [
        fio, "--name=traced", f"--filename={path}", "--readonly", "--bs=4k",
        "--rw=randread", "--direct=1", f"--ioengine={engine}", f"--iodepth={depth}",
        f"--runtime={runtime:g}", "--time_based", "--output-format=json",
        f"--output={out}",
    ]  # fmt: skip


def _iops(out: Path) -> float:
    text = out.read_text()
    doc = json.loads(text[text.index("{") :])  # fio may print notes before the document
    return float(doc["jobs"][0]["read"]["iops"])


def untraced(argv: list[str], out: Path) -> float:
    subprocess.run(argv, check=True, capture_output=True)
    return _iops(out)


def traced(argv: list[str], out: Path, trace: Path) -> tuple[float, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "iotrace", "trace", "--no-tui", "--force", "-o", str(trace),
         "--", *argv],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"bench.traced_fio: iotrace trace failed: {proc.stderr.strip()}")
    t = session.tally(trace)
    return _iops(out), {
        "records": t.events,
        "lost": int(t.stats.get("lost_total", 0)),
        "file_bytes": trace.stat().st_size,
    }


def measure(runtime: float, engine: str, depth: int) -> dict[str, Any]:
    fio = shutil.which("fio")
    if fio is None:
        return {"engine": engine, "depth": depth, "fio": None}
    directory = datafile.choose_data_dir(None, os.environ.get("HOME"))
    path = str(datafile.ensure_data_file(directory, FILESIZE).path)
    with tempfile.TemporaryDirectory() as d:
        out, trace = Path(d) / "fio.json", Path(d) / "fio.trace"
        argv = fio_argv(fio, path, engine, depth, runtime, out)
        plain = [untraced(argv, out)]
        runs = [traced(argv, out, trace), traced(argv, out, trace)]
        plain.append(untraced(argv, out))
    base = sum(plain) / len(plain)
    ours = sum(r[0] for r in runs) / len(runs)
    return {
        "engine": engine,
        "depth": depth,
        "fio": fio,
        "runtime_s": runtime,
        "untraced_iops": base,
        "traced_iops": ours,
        "runs_untraced": plain,
        "runs_traced": [r[0] for r in runs],
        "ratio": ours / base,
        "records_per_run": [r[1]["records"] for r in runs],
        "lost": sum(r[1]["lost"] for r in runs),
        "bytes_per_record": runs[-1][1]["file_bytes"] / max(runs[-1][1]["records"], 1),
        "foreign_bpf": len(foreign_bpf_holders()),
    }


def render(r: dict[str, Any]) -> str:
    if r["fio"] is None:
        return "fio not found: install it (sudo ./setup.sh bench) to measure a traced program"
    return "\n".join(
        [
            f"fio {r['engine']} depth {r['depth']}, 4 KiB random reads, O_DIRECT, "
            f"{r['runtime_s']:g} s per run (untraced, traced, traced, untraced)",
            f"  untraced IOPS {r['untraced_iops']:10.0f}  "
            f"({', '.join(f'{x:.0f}' for x in r['runs_untraced'])})",
            f"  traced IOPS   {r['traced_iops']:10.0f}  "
            f"({', '.join(f'{x:.0f}' for x in r['runs_traced'])})",
            f"  traced/untraced {r['ratio']:.3f} (target >= {TARGET}); records per traced run "
            f"{', '.join(f'{x:,}' for x in r['records_per_run'])}, lost {r['lost']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.traced_fio", description=__doc__)
    ap.add_argument("--runtime", type=float, default=5.0, help="seconds per fio run")
    ap.add_argument("--engine", default="libaio")
    ap.add_argument("--iodepth", type=int, default=32)
    args = ap.parse_args(argv)
    require_root("traced_fio")
    r = measure(args.runtime, args.engine, args.iodepth)
    return publish("traced_fio", render(r), r)


if __name__ == "__main__":
    raise SystemExit(main())
