"""A minimal io_uring through the raw syscalls and mmap'd rings.

liburing's helpers are static inline functions, not exported symbols, so
ctypes cannot call them; the ring protocol is simple enough to drive from
numpy views of the shared memory: write SQEs, publish the SQ tail, call
`io_uring_enter(to_submit, min_complete, GETEVENTS)`, read CQEs between the
CQ head and tail, publish the new head. x86-64 and arm64 order these plain
stores well enough for the kernel's acquire loads because each numpy call
finishes before the next begins and the tail store comes last.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
from iotrace.workloads import libc
from iotrace.workloads.datafile import Unavailable

IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_ENTER_GETEVENTS = 1 << 0
IORING_SETUP_COOP_TASKRUN = 1 << 8
IORING_SETUP_SINGLE_ISSUER = 1 << 12
IORING_SETUP_DEFER_TASKRUN = 1 << 13
# Newest first; older kernels refuse unknown flags. COOP_TASKRUN: completions are
# posted when the submitting task next leaves the kernel (any syscall, including
# the submits), without an interrupt. fio adds DEFER_TASKRUN (posted only inside
# io_uring_enter(GETEVENTS)); measured side by side on the reference VM, this
# Python loop, which spends microseconds between its calls, got 7-10% more IOPS
# at depth 32 without it.
_SETUP_FLAG_SETS = (
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
    IORING_SETUP_COOP_TASKRUN,
    0,
)
IOSQE_ASYNC = 1 << 4
IORING_OP_READ = 22
IORING_OP_RECV = 27

SQE = np.dtype(
    [
        ("opcode", "u1"),
        ("flags", "u1"),
        ("ioprio", "<u2"),
        ("fd", "<i4"),
        ("off", "<u8"),
        ("addr", "<u8"),
        ("len", "<u4"),
        ("rw_flags", "<u4"),
        ("user_data", "<u8"),
        ("buf_index", "<u2"),
        ("personality", "<u2"),
        ("splice_fd_in", "<i4"),
        ("addr3", "<u8"),
        ("pad2", "<u8"),
    ]
)
CQE = np.dtype([("user_data", "<u8"), ("res", "<i4"), ("flags", "<u4")])
assert SQE.itemsize == 64 and CQE.itemsize == 16
_MASK32 = 0xFFFF_FFFF


def _disabled_reason(err: int) -> str:
    try:
        with open("/proc/sys/kernel/io_uring_disabled", encoding="ascii") as f:
            level = f.read().strip()
    except OSError:
        level = "?"
    base = f"io_uring_setup failed: {os.strerror(err)}"
    if err in (1, 13, 38):  # EPERM, EACCES, ENOSYS
        return f"{base} (kernel.io_uring_disabled={level}, or blocked by seccomp)"
    return base


class Ring:
    """One io_uring instance with numpy views of its SQ, CQ and SQE array."""

    def __init__(self, entries: int) -> None:
        for setup_flags in _SETUP_FLAG_SETS:
            params = (ctypes.c_uint32 * 30)()
            params[2] = setup_flags
            fd = libc.syscall(libc.IO_URING_SETUP, entries, ctypes.addressof(params), 0, 0, 0, 0)
            if fd >= 0 or libc.errno_now() != 22:  # EINVAL: flags this kernel lacks
                break
        if fd < 0:
            raise Unavailable(_disabled_reason(libc.errno_now()))
        self.setup_flags = setup_flags
        self.fd = fd
        p = list(params)
        self.sq_entries, self.cq_entries, features = p[0], p[1], p[5]
        sq_off, cq_off = p[10:20], p[20:30]
        sq_size = sq_off[6] + self.sq_entries * 4
        cq_size = cq_off[5] + self.cq_entries * CQE.itemsize
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        if features & IORING_FEAT_SINGLE_MMAP:
            sq_size = cq_size = max(sq_size, cq_size)
        self._sq_map = mmap.mmap(fd, sq_size, flags=flags, prot=prot, offset=IORING_OFF_SQ_RING)
        if features & IORING_FEAT_SINGLE_MMAP:
            self._cq_map = self._sq_map
        else:
            self._cq_map = mmap.mmap(fd, cq_size, flags=flags, prot=prot, offset=IORING_OFF_CQ_RING)
        self._sqe_map = mmap.mmap(
            fd, self.sq_entries * SQE.itemsize, flags=flags, prot=prot, offset=IORING_OFF_SQES
        )
        sq32 = np.frombuffer(self._sq_map, dtype=np.uint32)
        cq32 = np.frombuffer(self._cq_map, dtype=np.uint32)
        self._sq32, self._cq32 = sq32, cq32
        self._sq_tail_i = sq_off[1] // 4
        self.sq_mask = int(sq32[sq_off[2] // 4])
        self._cq_head_i, self._cq_tail_i = cq_off[0] // 4, cq_off[1] // 4
        self.cq_mask = int(cq32[cq_off[2] // 4])
        # The SQ array maps ring positions to SQE indexes; identity, set once.
        array = sq32[sq_off[6] // 4 : sq_off[6] // 4 + self.sq_entries]
        array[:] = np.arange(self.sq_entries, dtype=np.uint32)
        self._sq_array = array
        self.sqes = np.frombuffer(self._sqe_map, dtype=SQE)
        self.cqes = np.frombuffer(self._cq_map, dtype=CQE, count=self.cq_entries, offset=cq_off[5])
        self._cq_ud = self.cqes["user_data"].view(np.int64)
        self._cq_res = self.cqes["res"]
        self._sq_tail = int(sq32[self._sq_tail_i])
        self._cq_head = int(cq32[self._cq_head_i])
        self._pending = 0
        self._ar = np.arange(max(self.sq_entries, self.cq_entries), dtype=np.uint64)
        self.enters = 0

    def prepare(self, count: int) -> np.ndarray:
        """SQE indexes (into self.sqes) of the next `count` free submission slots."""
        return (np.uint64(self._sq_tail) + self._ar[:count]) & np.uint64(self.sq_mask)

    def publish(self, count: int) -> None:
        """Make the `count` SQEs filled after prepare() visible to the kernel."""
        self._sq_tail = (self._sq_tail + count) & _MASK32
        self._sq32[self._sq_tail_i] = self._sq_tail
        self._pending += count

    def push(self, sqe_indexes: np.ndarray) -> None:
        """Queue already-filled SQEs, by index, at the SQ tail and publish them.

        A caller that keeps one SQE per buffer slot (filled once) only writes
        the offsets and these indexes per request.
        """
        n = len(sqe_indexes)
        t = self._sq_tail & self.sq_mask
        if t + n <= self.sq_entries:
            self._sq_array[t : t + n] = sqe_indexes
        else:
            k = self.sq_entries - t
            self._sq_array[t:] = sqe_indexes[:k]
            self._sq_array[: n - k] = sqe_indexes[k:]
        self.publish(n)

    def reap(self) -> tuple[np.ndarray, np.ndarray]:
        """Copy out and consume every completion available now: (user_data, res)."""
        tail = int(self._cq32[self._cq_tail_i])
        n = (tail - self._cq_head) & _MASK32
        h = self._cq_head & self.cq_mask
        if h + n <= self.cq_entries:
            ud, res = self._cq_ud[h : h + n].copy(), self._cq_res[h : h + n].copy()
        else:
            k = self.cq_entries - h
            ud = np.concatenate([self._cq_ud[h:], self._cq_ud[: n - k]])
            res = np.concatenate([self._cq_res[h:], self._cq_res[: n - k]])
        self._cq_head = tail
        self._cq32[self._cq_head_i] = tail
        return ud, res

    def enter(self, min_complete: int) -> None:
        """Submit what is published and wait for at least min_complete completions."""
        flags = IORING_ENTER_GETEVENTS if min_complete else 0
        while True:
            ret = libc.syscall_ints(
                libc.IO_URING_ENTER, self.fd, self._pending, min_complete, flags, 0, 0
            )
            self.enters += 1
            if ret >= 0:
                self._pending -= ret
                return
            err = libc.errno_now()
            if err not in (4, 11, 16):  # EINTR, EAGAIN, EBUSY: retry
                raise OSError(err, f"io_uring_enter: {os.strerror(err)}")

    def submit(self, batch: int) -> None:
        """Submit what is published, at most `batch` SQEs per io_uring_enter, without waiting.

        Each call also passes IORING_ENTER_GETEVENTS with min_complete 0, as fio
        does: requests that finished meanwhile are posted to the CQ ring on the
        way out (with DEFER_TASKRUN only then), so the next reap finds them
        without a syscall.
        """
        fd, call, enter_nr = self.fd, libc.syscall_ints, libc.IO_URING_ENTER
        while self._pending:
            ret = call(enter_nr, fd, min(self._pending, batch), 0, IORING_ENTER_GETEVENTS, 0, 0)
            self.enters += 1
            if ret >= 0:
                self._pending -= ret
                continue
            err = libc.errno_now()
            if err not in (4, 11, 16):  # EINTR, EAGAIN, EBUSY: retry
                raise OSError(err, f"io_uring_enter: {os.strerror(err)}")

    def ready(self) -> int:
        """How many completions wait in the CQ ring now (no syscall)."""
        return (int(self._cq32[self._cq_tail_i]) - self._cq_head) & _MASK32

    def completions(self) -> np.ndarray:
        """Copy out and consume every CQE available now."""
        tail = int(self._cq32[self._cq_tail_i])
        n = (tail - self._cq_head) & _MASK32
        if n == 0:
            return self.cqes[:0].copy()
        idx = (np.uint64(self._cq_head) + self._ar[:n]) & np.uint64(self.cq_mask)
        out = self.cqes[idx]
        self._cq_head = tail
        self._cq32[self._cq_head_i] = tail
        return out

    def close(self) -> None:
        for name in ("sqes", "cqes", "_sq32", "_cq32", "_sq_array", "_cq_ud", "_cq_res"):
            if hasattr(self, name):
                delattr(self, name)
        for m in {id(x): x for x in (self._sqe_map, self._cq_map, self._sq_map)}.values():
            try:
                m.close()
            except BufferError:
                continue
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
