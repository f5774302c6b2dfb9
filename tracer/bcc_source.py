"""The only module that imports bcc.

Compiles and loads the generated program, edits the pid filter, exposes the
ring buffer fd and reads the counters. Everything above it (live draining,
recording, the CLI) sees plain Python values.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from iotrace.tracer import kheaders, program

from iotrace.errors import BpfError
from iotrace.events import MAX_PROBES, RUN_BASE_SHIFT, Flag, Kind, probe_name

# Index of each slot in the BPF `counters` array (common.bpf.c IOT_C_*).
COUNTER_NAMES = (
    "threads_map_full",
    "pids_map_full",
    "aio_map_full",
    "aio_reaped_in_user_space",
    "aio_reaped_without_submit",
    "aio_beyond_loop_bound",
    "uring_map_full",
    "uring_completed_without_submit",
    "posix_aio_map_full",
    "min_latency_map_full",
    "fd_state_full",
    "block_map_full",
    "block_completed_without_issue",
)

_PIDFD_THREAD = os.O_EXCL

# After the off switch is set, a probe already past its guard finishes in
# microseconds; this covers one that was preempted there.
STOP_SETTLE_S = 0.02


def _reaper(fds: list[int]) -> subprocess.Popen[bytes] | None:
    """A process holding copies of the probes' fds until its stdin ends (see
    BpfProgram.detach), or None when it cannot be started."""
    cat = shutil.which("cat") or "/bin/cat"
    try:
        return subprocess.Popen(
            ["iotrace-detach"],
            executable=cat,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=fds,
            start_new_session=True,  # a closing terminal's SIGHUP is not for it
        )
    except OSError:
        return None


"""pidfd_open flag for a pidfd of one thread (Linux 6.9): task storage is per thread."""

# glibc symbol -> BPF function; aio_read64 & co. are aliases at the same address.
POSIX_AIO_UPROBES = (
    ("aio_read", "iot_paio_read", False),
    ("aio_write", "iot_paio_write", False),
    ("aio_return", "iot_paio_return_enter", False),
    ("aio_return", "iot_paio_return_exit", True),
)


def _import_bcc() -> Any:
    kheaders.configure()
    try:
        import bcc
    except ImportError:
        raise BpfError(
            "bcc is not importable: install python3-bpfcc (sudo ./setup.sh does) "
            "and use the venv made with --system-site-packages"
        ) from None
    return bcc


@contextlib.contextmanager
def _captured_stderr() -> Any:
    """Collect what clang/libbpf print on fd 2, so a failure can be summarised
    in one line and the full log kept for --verbose users."""
    buf = io.BytesIO()
    saved = os.dup(2)
    # A file, not a pipe: a verifier log can exceed a pipe's buffer and block.
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield buf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            buf.write(tmp.read())


@dataclass(frozen=True)
class Counters:
    lost: dict[str, int]
    unmatched_exit: dict[str, int]
    unmatched_enter: dict[str, int]
    other: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "lost": self.lost,
            "unmatched_exit": self.unmatched_exit,
            "unmatched_enter": self.unmatched_enter,
            "other": self.other,
        }

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values())


class BpfProgram:
    """A loaded and attached iotrace program."""

    def __init__(self, text: str, ringbuf_bytes: int) -> None:
        bcc = _import_bcc()
        with _captured_stderr() as log:
            try:
                self._bpf = bcc.BPF(text=text)
                err: str | None = None
            except Exception as exc:  # bcc raises bare Exception
                err = str(exc)
        self.log = log.getvalue().decode("utf-8", "replace")
        if err is not None:
            first = next((ln for ln in self.log.splitlines() if "error" in ln.lower()), err).strip()
            if os.environ.get("IOTRACE_DEBUG"):
                sys.stderr.write(self.log)
            raise BpfError(
                f"the BPF program failed to compile or load: {first} "
                "(run 'iotrace doctor'; IOTRACE_DEBUG=1 shows the full log)"
            )
        self.ringbuf_bytes = ringbuf_bytes
        self.min_latency_ns = 0
        """--min-latency's threshold the program was built with (load() sets it)."""
        self._stopped = False
        self._reaper: subprocess.Popen[bytes] | None = None
        self._pids = self._bpf["pids"]
        self.posix_aio_mode = "helper threads only (pread64/pwrite64 on glibc aio threads)"
        if "iot_paio_read" in text:
            self._attach_posix_aio()
        self.fault_mode = "not traced (no exceptions:page_fault_user)"
        if "iot_major_fault" in text:
            self._attach_major_faults(bcc)

    def _attach_major_faults(self, bcc: Any) -> None:
        """The kernel's major-fault perf software event, on every CPU: where a
        major fault ends (faults.bpf.c)."""
        try:
            with _captured_stderr():
                self._bpf.attach_perf_event(
                    ev_type=bcc.PerfType.SOFTWARE,
                    ev_config=bcc.PerfSWConfig.PAGE_FAULTS_MAJ,
                    fn_name="iot_major_fault",
                    sample_period=1,
                    cpu=-1,
                )
        except Exception as exc:  # bcc raises bare Exception
            self.fault_mode = f"not traced (perf event failed: {str(exc)[:80]})"
            return
        self.fault_mode = "major faults (perf software event + exceptions:page_fault_user)"

    def _attach_posix_aio(self) -> None:
        """Uprobes on libc's aio_read/aio_write/aio_return; without them POSIX
        AIO is still seen as the helper threads' calls."""
        try:
            with _captured_stderr():
                for sym, fn, ret in POSIX_AIO_UPROBES:
                    attach = self._bpf.attach_uretprobe if ret else self._bpf.attach_uprobe
                    attach(name="c", sym=sym, fn_name=fn)
        except Exception as exc:
            self.posix_aio_mode = f"helper threads only (uprobes failed: {str(exc)[:80]})"
            return
        self.posix_aio_mode = "uprobes on libc aio_read/aio_write/aio_return + helper threads"

    @property
    def ringbuf_fd(self) -> int:
        return int(self._bpf["events"].map_fd)

    def add_pids(self, pids: Iterable[int]) -> None:
        one = ctypes.c_uint8(1)
        for pid in pids:
            self._pids[ctypes.c_uint32(pid)] = one

    def traced_pids(self) -> list[int]:
        return sorted(int(k.value) for k in self._pids)

    def _sum_percpu(self, name: str, size: int) -> list[int]:
        table = self._bpf[name]
        out = []
        for i in range(size):
            vals = table[ctypes.c_int(i)]
            out.append(int(sum(vals)))
        return out

    def counters(self) -> Counters:
        def named(values: list[int]) -> dict[str, int]:
            return {probe_name(i): v for i, v in enumerate(values) if v}

        other = self._sum_percpu("counters", len(COUNTER_NAMES))
        return Counters(
            lost=named(self._sum_percpu("lost", MAX_PROBES)),
            unmatched_exit=named(self._sum_percpu("unmatched_exit", MAX_PROBES)),
            unmatched_enter=named(self._sum_percpu("unmatched_enter", MAX_PROBES)),
            other={n: v for n, v in zip(COUNTER_NAMES, other, strict=True) if v},
        )

    def below_min_latency(self) -> list[dict[str, int]]:
        """--min-latency: the calls faster than the threshold, which were counted
        and not recorded, per process and syscall op (empty without the option)."""
        out = []
        for k, vals in self._table_items("below"):
            calls = sum(int(v.calls) for v in vals)
            if calls:
                out.append(
                    {
                        "pid": int(k.tgid),
                        "op": int(k.op),
                        "calls": calls,
                        "dur_ns": sum(int(v.dur_ns) for v in vals),
                    }
                )
        return sorted(out, key=lambda r: (r["pid"], r["op"]))

    # The in-flight readers name their values after iotrace.events fields, so
    # user space turns them into NOT_OBSERVED records without a mapping table.
    def aio_in_flight(self) -> list[dict[str, int]]:
        """Linux AIO requests submitted but never reaped."""
        return [
            {
                "key": int(k.iocb),
                "pid": int(k.tgid),
                "tid": int(v.tid),
                "ts_ns": int(v.submit_ns),
                "user_data": int(v.aio_data),
                "size": int(v.nbytes),
                "offset": int(v.offset),
                "fd": int(v.fd),
                "op": int(v.opcode),
            }
            for k, v in self._bpf["aio_inflight"].items()
        ]

    def _table_items(self, name: str) -> list[tuple[Any, Any]]:
        try:
            return list(self._bpf[name].items())
        except KeyError:  # that part of the program was not built on this kernel
            return []

    def posix_aio_in_flight(self) -> list[dict[str, int]]:
        """POSIX AIO requests submitted but never collected with aio_return."""
        return [
            {
                "key": int(k.aiocb),
                "pid": int(k.tgid),
                "tid": int(v.tid),
                "ts_ns": int(v.submit_ns),
                "fd": int(v.fd),
                "size": int(v.nbytes),
                "offset": int(v.offset),
                "op": int(v.opcode),
            }
            for k, v in self._table_items("paio_inflight")
        ]

    def uring_in_flight(self) -> list[dict[str, int]]:
        """io_uring requests submitted whose completion was not seen."""
        return [
            {
                "key": int(k.value),
                "pid": int(v.pid),
                "tid": int(v.tid),
                "ts_ns": int(v.submit_ns),
                "user_data": int(v.user_data),
                "fd": int(v.fd),
                "op": int(v.opcode),
                "flags": int(v.flags),
            }
            for k, v in self._table_items("uring_inflight")
        ]

    def stop(self) -> None:
        """Turn every probe off at once (the IOT_GUARD switch in common.bpf.c):
        from here what the maps and the ring hold is final. A probe that passed
        its guard just before is given a moment to finish."""
        bpf = getattr(self, "_bpf", None)
        if bpf is None or self._stopped:
            return
        bpf["iot_ctl"][ctypes.c_int(0)] = ctypes.c_uint32(1)
        self._stopped = True
        time.sleep(STOP_SETTLE_S)

    def detach(self) -> None:
        """Stop every probe, then take them down without waiting for the kernel.

        Closing a probe's perf event waits for a grace period, and the kernel
        takes those one after another under one lock: 40-70 ms per tracepoint on
        a busy 2-vCPU VM, 3.8 s for 92 probes, so iotrace took seconds to exit
        after its terminal closed. The probes are off already (stop()), so their
        fds are handed to a small reaper process (`cat`, named iotrace-detach,
        in its own session) that holds them until our copies are closed and
        then exits: the kernel's teardown runs in it, after iotrace has gone.
        Keeps the maps: what they hold (requests in flight, runs not yet
        emitted) can still be read."""
        bpf = getattr(self, "_bpf", None)
        if bpf is None:
            return
        self.stop()
        fds = list(bpf.tracepoint_fds.values()) + list(bpf.uprobe_fds.values())
        fds += [fd for per_cpu in bpf.open_perf_events.values() for fd in per_cpu.values()]
        if not fds:
            return
        reaper = _reaper(fds)
        if reaper is None:
            self._close_side_by_side(fds)
        else:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        from bcc import lib

        for name in list(bpf.uprobe_fds):
            # Removes a tracefs uprobe event where bcc had to make one (older
            # kernels); a no-op for the perf-PMU uprobes newer kernels give.
            with contextlib.suppress(Exception):
                lib.bpf_detach_uprobe(name)
        bpf.tracepoint_fds.clear()
        bpf.uprobe_fds.clear()
        bpf.open_perf_events.clear()
        if reaper is not None and reaper.stdin is not None:
            reaper.stdin.close()  # its stdin ends: it exits, and the kernel's teardown begins
            self._reaper = reaper

    @staticmethod
    def _close_side_by_side(fds: list[int]) -> None:
        """Without a reaper: close the fds in parallel (the waits overlap where
        the kernel allows it)."""
        from bcc import lib

        with ThreadPoolExecutor(min(len(fds), 64), thread_name_prefix="iotrace-detach") as ex:
            for f in [ex.submit(lib.bpf_close_perf_event_fd, fd) for fd in fds]:
                with contextlib.suppress(Exception):
                    f.result()

    def pending_runs(self, tids: Iterable[tuple[int, int]]) -> tuple[list[dict[str, int]], int]:
        """Runs that live threads (pid, tid) had folded but not emitted, as the
        records iot_run_flush would have made, and how many threads could not be
        asked (gone meanwhile, or no thread pidfds on this kernel). Call after
        detach(), so that no run changes while it is read."""
        from bcc import lib  # the module is imported already; only the name is new

        fd = lib.bpf_table_fd(self._bpf.module, b"calls")
        leaf_desc = lib.bpf_table_leaf_desc(self._bpf.module, b"calls")
        if fd < 0 or not leaf_desc:
            return [], 0
        leaf_t = self._bpf._decode_table_type(json.loads(leaf_desc))
        value = leaf_t()
        out: list[dict[str, int]] = []
        unasked = 0
        for pid, tid in tids:
            try:
                pidfd = os.pidfd_open(tid, _PIDFD_THREAD if tid != pid else 0)
            except ProcessLookupError:
                continue  # exited: its run was emitted at its exit
            except OSError:
                unasked += 1
                continue
            try:
                key = ctypes.c_int(pidfd)
                if lib.bpf_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value)) != 0:
                    continue  # the thread never made a traced call
            finally:
                os.close(pidfd)
            r = value.run
            if not r.first_ns:
                continue
            row = {
                "ts_ns": int(r.first_ns),
                "end_ns": int(r.last_ns),
                "off_cpu_ns": int(r.off_cpu_ns),
                "runq_ns": int(r.runq_ns),
                "ret": int(r.ret),
                "fd": int(r.fd),
                "size": int(r.size),
                "pid": int(value.id) >> 32,
                "tid": int(value.id) & 0xFFFFFFFF,
                "op": int(r.op),
            }
            if r.count == 1:
                row.update(kind=int(Kind.SYSCALL), offset=int(r.offset))
            else:
                row.update(
                    kind=int(Kind.SYSCALL_RUN),
                    kdone_ns=int(r.dur_ns),
                    offset=int(r.count),
                    key=int(r.min_ns) | int(r.max_ns) << 32,
                    user_data=int(r.hist),
                    flags=int(r.base) << RUN_BASE_SHIFT | (int(Flag.PRESSURE) if r.pressure else 0),
                )
            out.append(row)
        return out, unasked

    def close(self) -> None:
        """Detach every probe and free the maps."""
        bpf = getattr(self, "_bpf", None)
        if bpf is not None:
            self.detach()
            with contextlib.suppress(Exception):
                bpf.cleanup()
            self._bpf = None


def load(opts: program.ProgramOptions) -> BpfProgram:
    prog = BpfProgram(program.build(opts), opts.ringbuf_bytes)
    prog.min_latency_ns = opts.min_latency_ns
    return prog


def check_compile() -> str:
    """Compile, load and attach a trivial tracepoint program; describe what worked.

    Used by `iotrace doctor`. Raises BpfError with a one-line reason."""
    bcc = _import_bcc()
    src = "BPF_RINGBUF_OUTPUT(rb, 1);\nTRACEPOINT_PROBE(syscalls, sys_enter_getpid) { return 0; }\n"
    with _captured_stderr() as log:
        try:
            b = bcc.BPF(text=src)
            b.cleanup()
            err = ""
        except Exception as exc:
            err = str(exc)
    if err:
        text = log.getvalue().decode("utf-8", "replace")
        first = next((ln for ln in text.splitlines() if "error" in ln.lower()), err)
        raise BpfError(f"a trivial BPF program did not compile/load: {first.strip()}")
    version = getattr(bcc, "__version__", "unknown")
    src_dir = os.environ.get("BCC_KERNEL_SOURCE", "running kernel headers")
    return f"bcc {version}; compiled against {src_dir}"


class RawProgram:
    """Any BPF text, loaded and attached as is; for baselines in benchmarks
    (e.g. the empty programs that set the cost floor)."""

    def __init__(self, text: str) -> None:
        bcc = _import_bcc()
        with _captured_stderr() as log:
            try:
                self._bpf = bcc.BPF(text=text)
                err = ""
            except Exception as exc:
                err = str(exc)
        if err:
            raise BpfError(f"baseline program failed: {err}: {log.getvalue()[-300:]!r}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._bpf.cleanup()
