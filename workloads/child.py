"""The workload process the launcher starts: `python -m iotrace.workloads.child`.

Protocol on the report fd (one JSON object per line):
  {"ready": true, "pids": [...], "fds": {...}}   set-up done, now waiting for SIGUSR1
  {"unavailable": "why"}                          this machine cannot run it (exit 0)
  {"error": "why"}                                failed (exit 1)
  {"result": {...}}                               finished (exit 0)

The wait for release is `sigtimedwait` on SIGUSR1 (rt_sigtimedwait), not a read,
poll or select, so a tracer that adds our pids while we wait sees nothing of it.
"""

from __future__ import annotations

import signal

# Before any import can start a thread (numpy's OpenBLAS starts one): a thread
# created with the release signal unblocked takes the launcher's process-directed
# SIGUSR1 whenever the main thread is not inside sigtimedwait (between reporting
# "ready" and waiting), and its default action kills the workload (exit -10).
# Threads inherit the mask, so blocking it here covers every one of them.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

import argparse  # noqa: E402
import ctypes  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from iotrace.workloads import engine  # noqa: E402
from iotrace.workloads.datafile import Unavailable  # noqa: E402

from iotrace.errors import IotraceError  # noqa: E402

assert engine.RELEASE_SIGNAL == signal.SIGUSR1


def _wait_release(parent: int) -> None:
    while True:
        if signal.sigtimedwait({engine.RELEASE_SIGNAL}, 1.0) is not None:
            return
        if os.getppid() != parent:
            # The launcher went away without releasing us: nobody wants the run.
            os._exit(3)


_PR_SET_PDEATHSIG = 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="iotrace.workloads.child", add_help=False)
    p.add_argument("--report-fd", type=int, required=True)
    p.add_argument("--parent", type=int, required=True)
    p.add_argument("name")
    ns, rest = p.parse_known_args(argv)
    fd = ns.report_fd
    os.set_inheritable(fd, False)
    # If iotrace dies (even by SIGKILL) the workload must not run on unobserved:
    # the kernel sends SIGTERM, which stops it like `Launched.stop()` does.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != ns.parent:  # it died before the request took effect
        return 1

    def ready(pids: list[int], fds: dict[str, int]) -> None:
        engine.write_line(fd, {"ready": True, "pids": pids, "fds": fds})
        _wait_release(ns.parent)

    # engine.run stops on SIGTERM while it runs and ignores it once measuring is
    # over; what it restores at its end is this, so the result is written whole.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        result = engine.run(
            ns.name, rest, home=os.environ.get("HOME"), progress_stream=None, on_ready=ready
        )
    except engine.Stopped:
        engine.write_line(fd, {"error": "stopped before it was released"})
        return 1
    except Unavailable as exc:
        engine.write_line(fd, {"unavailable": str(exc)})
        return 0
    except IotraceError as exc:
        engine.write_line(fd, {"error": str(exc)})
        return 1
    except OSError as exc:
        engine.write_line(fd, {"error": f"{exc.strerror or exc}"})
        return 1
    engine.write_line(fd, {"result": result})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skip interpreter teardown: parked threads and pending signals are irrelevant now.
    os._exit(code)
