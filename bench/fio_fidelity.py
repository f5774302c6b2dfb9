"""Workload fidelity: iotrace's built-in workloads against fio, side by side.

Same data file, 4 KiB random reads, O_DIRECT, same depth and duration, one
after the other in one run:

    psync depth 1     <->  iotrace workload sync-blocking --file-reads N
    libaio depth 32   <->  iotrace workload libaio --iodepth 32
    io_uring depth 32 <->  iotrace workload io_uring --iodepth 32
    posixaio depth 32 <->  iotrace workload posix-aio --iodepth 32

Each case runs `--rounds` rounds of fio, iotrace, iotrace, fio, each run a
quarter of the round, so both sides get `--runtime` seconds in total and a
load that drifts during the case (other jobs on a shared machine) weighs on
both alike. Prints IOPS for both and the ratio iotrace/fio (target >= 0.9
each), then one JSON line. Without fio it says so and still measures
iotrace's side.

    .venv/bin/python -m bench.fio_fidelity [--runtime 5] [--rounds 2] [--fio PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from iotrace.workloads import datafile

TARGET = 0.9
FILESIZE = 256 << 20

# (label, fio ioengine, depth, iotrace workload, its options)
CASES: list[tuple[str, str, int, str, list[str]]] = [
    ("psync", "psync", 1, "sync-blocking", ["--file-reads", "1000000000"]),
    ("libaio", "libaio", 32, "libaio", ["--iodepth", "32"]),
    ("io_uring", "io_uring", 32, "io_uring", ["--iodepth", "32"]),
    ("posixaio", "posixaio", 32, "posix-aio", ["--iodepth", "32"]),
]


_CLI = "import sys; from iotrace.cli import main; sys.exit(main(sys.argv[1:]))"


def run_fio(fio: str, path: str, engine: str, depth: int, runtime: float) -> float:
    out = subprocess.run(
        [fio, "--name=fidelity", f"--filename={path}", "--readonly", "--bs=4k",
         "--rw=randread", "--direct=1", f"--ioengine={engine}", f"--iodepth={depth}",
         f"--runtime={round(runtime * 1000)}ms", "--time_based", "--output-format=json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"fio {engine} failed: {out.stderr.strip().splitlines()[-1:]}")
    # fio may print warnings before the JSON document.
    doc = json.loads(out.stdout[out.stdout.index("{") :])
    return float(doc["jobs"][0]["read"]["iops"])


def run_iotrace(name: str, options: list[str], runtime: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CLI, "workload", name, *options,
         "--bs", "4k", "--rw", "randread", "--filesize", str(FILESIZE),
         "--runtime", f"{runtime:g}", "--output-format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"iotrace workload {name} failed: {out.stderr.strip()}")
    return dict(json.loads(out.stdout))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.fio_fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runtime", type=float, default=5.0, help="seconds per side and case")
    p.add_argument("--rounds", type=int, default=2, help="fio/iotrace/iotrace/fio rounds per case")
    p.add_argument("--fio", default="fio", help="fio executable (default: fio on PATH)")
    args = p.parse_args(argv)

    fio = shutil.which(args.fio)
    if fio is None:
        print(
            f"fio not found ({args.fio!r}): install it (apt-get install fio) to compare; "
            "measuring iotrace's side only"
        )
    # The very file the workloads read (built now if missing), so both read the same bytes.
    directory = datafile.choose_data_dir(None, os.environ.get("HOME"))
    path = datafile.ensure_data_file(directory, FILESIZE).path
    print(
        f"4 KiB random reads, O_DIRECT, {args.runtime:g}s per side in {args.rounds} rounds, "
        f"file {path}"
    )
    print(
        f"{'engine':<10} {'depth':>5} {'fio IOPS':>10} {'iotrace IOPS':>13} {'ratio':>7}  workload",
        flush=True,
    )
    results = []
    rounds = max(1, args.rounds)
    each = args.runtime / (2 * rounds)
    for label, engine, depth, name, options in CASES:
        # fio, iotrace, iotrace, fio, per round: a load that drifts during the case
        # (other jobs on the machine) weighs on both sides alike.
        fio_runs, our_runs = [], []
        for _ in range(rounds):
            if fio:
                fio_runs.append(run_fio(fio, path, engine, depth, each))
            our_runs.append(run_iotrace(name, options, each))
            our_runs.append(run_iotrace(name, options, each))
            if fio:
                fio_runs.append(run_fio(fio, path, engine, depth, each))
        fio_iops = sum(fio_runs) / len(fio_runs) if fio_runs else None
        res = our_runs[-1]
        ours = sum(float(r["iops"]) for r in our_runs) / len(our_runs)
        ratio = ours / fio_iops if fio_iops else None
        results.append({
            "engine": label, "depth": depth, "workload": name, "fio_iops": fio_iops,
            "iotrace_iops": ours, "ratio": None if ratio is None else round(ratio, 3),
            "iotrace_lat_us_p50": res["lat_us"].get("p50"), "iotrace_cpu_s": res["cpu_s"],
            "verified": all(r["verified"] for r in our_runs),
            "ok": None if ratio is None else ratio >= TARGET,
        })  # fmt: skip
        fio_txt = f"{fio_iops:10.0f}" if fio_iops else f"{'-':>10}"
        ratio_txt = f"{ratio:7.2f}" if ratio is not None else f"{'n/a':>7}"
        print(f"{label:<10} {depth:>5} {fio_txt} {ours:13.0f} {ratio_txt}  {name}", flush=True)
    ratios = [r["ratio"] for r in results if r["ratio"] is not None]
    if ratios:
        low = sum(1 for r in ratios if r < TARGET)
        print(
            f"target iotrace/fio >= {TARGET}: "
            + ("all met" if not low else f"{low} of {len(ratios)} below")
        )
    print(
        json.dumps(
            {
                "bench": "fio_fidelity",
                "runtime_s": args.runtime,
                "rounds": rounds,
                "fio": fio,
                "target": TARGET,
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
