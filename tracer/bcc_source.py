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
import sys
import tempfile
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
    "fd_state_full",
)

_PIDFD_THREAD = os.O_EXCL
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

    def detach(self) -> None:
        """Detach every probe but keep the maps: what they still hold (requests in
        flight, runs not yet emitted) is then final and can be read."""
        bpf = getattr(self, "_bpf", None)
        if bpf is None:
            return
        from bcc import lib

        # Closing a probe's perf event waits for an RCU grace period (~35 ms here):
        # one after another, 80 probes took 2.6 s at the end of every run. Closed
        # side by side the waits overlap: 0.08 s. (ctypes calls drop the GIL.)
        tracepoint_fds = list(bpf.tracepoint_fds.values())
        uprobes = list(bpf.uprobe_fds)
        jobs = [lambda fd=fd: lib.bpf_close_perf_event_fd(fd) for fd in tracepoint_fds]
        jobs += [lambda name=name: bpf.detach_uprobe_event(name) for name in uprobes]
        if jobs:
            with ThreadPoolExecutor(min(len(jobs), 64), thread_name_prefix="iotrace-detach") as ex:
                for f in [ex.submit(job) for job in jobs]:
                    with contextlib.suppress(Exception):
                        f.result()
        bpf.tracepoint_fds.clear()

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
    return BpfProgram(program.build(opts), opts.ringbuf_bytes)


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
