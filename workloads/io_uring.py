"""io_uring workloads: `io_uring` (O_DIRECT file), `io_uring-buffered` (page
cache, started cold, every 2nd request forced to an io-wq worker by default)
and `io_uring-socket` (recv on paced sockets).

File reads, the way fio drives io_uring: every completion in the CQ ring is
reaped (no syscall), its slot refilled with a new SQE at once, and the refills
submitted `--iodepth-batch-submit` (default 2) per `io_uring_enter(to_submit,
0, GETEVENTS)`; each of those calls also posts what finished meanwhile, so the
loop only waits (`io_uring_enter(0, min_complete, GETEVENTS)`) when the ring
is empty. The reaped data is checked after the refill, while the device works.
Sockets submit and wait in the same call. `--force_async N` marks every Nth
request IOSQE_ASYNC, which sends it to an io-wq kernel worker (fio's option of
the same name).
"""

from __future__ import annotations

import time

import numpy as np
from iotrace.workloads import libc
from iotrace.workloads.asyncfile import AsyncFileLoop, request_limit
from iotrace.workloads.datafile import StreamChecker, drop_cache
from iotrace.workloads.engine import Context
from iotrace.workloads.measure import Role
from iotrace.workloads.registry import DEFAULT_IODEPTH, DEFAULT_IODEPTH_BATCH_SUBMIT
from iotrace.workloads.uring import IORING_OP_READ, IORING_OP_RECV, IOSQE_ASYNC, Ring

from iotrace.errors import WorkloadError

BUFFERED_FORCE_ASYNC = 2
"""io_uring-buffered's default --force_async."""


class UringFile:
    """The AsyncFileLoop engine: READ requests on one file.

    One SQE per buffer slot, filled once (fd, buffer address, length,
    user_data = slot); a request only writes its offset and pushes the
    slot's SQE index onto the SQ ring.
    """

    def __init__(
        self,
        ring: Ring,
        fd: int,
        nslots: int,
        buf_address: int,
        bs: int,
        force_async: int,
        batch: int,
    ) -> None:
        if ring.sq_entries < nslots:
            raise ValueError(f"ring of {ring.sq_entries} SQEs for {nslots} slots")
        self.ring = ring
        sqes = ring.sqes
        # The kernel does not modify SQEs, so these stay as written.
        sqes["opcode"] = IORING_OP_READ
        sqes["fd"] = fd
        sqes["len"] = bs
        sqes["flags"] = 0
        ids = np.arange(ring.sq_entries, dtype=np.uint64)
        sqes["user_data"] = ids
        sqes["addr"] = np.uint64(buf_address) + ids * np.uint64(bs)
        self._off, self._flags = sqes["off"], sqes["flags"]
        self.slot_offsets = self._off
        self.force_async = force_async
        self.batch = batch
        self._seq = 0
        self.async_marked = 0

    def queue(self, slots: np.ndarray, offsets: np.ndarray) -> None:
        n = len(slots)
        self._off[slots] = offsets
        if self.force_async:
            mark = (np.arange(self._seq, self._seq + n) % self.force_async) == 0
            self._flags[slots] = np.where(mark, IOSQE_ASYNC, 0)
            self.async_marked += int(mark.sum())
            self._seq += n
        self.ring.push(slots)

    def flush(self) -> None:
        self.ring.submit(self.batch)

    def reap(self, min_nr: int) -> tuple[np.ndarray, np.ndarray]:
        # What the submits already posted is reaped without a syscall; wait only for more.
        if self.ring.ready() < min_nr:
            self.ring.enter(min_nr)
        return self.ring.reap()

    def close(self) -> None:
        self.ring.close()


class UringFileWorkload:
    def __init__(self, ctx: Context, buffered: bool) -> None:
        opts = ctx.opts
        depth = opts.iodepth or DEFAULT_IODEPTH
        direct = ctx.direct()
        fd, df = ctx.open_data_file(direct)
        if not direct:
            # Start cold, so reads really wait for the disk instead of copying from cache.
            drop_cache(fd, df.size)
        role = ctx.role("file")
        role.fds = [fd]
        self.role = role
        self.loop = AsyncFileLoop(ctx, role, df.path, depth)
        self.total_ops = self.loop.total_ops
        ring = Ring(_pow2(self.loop.nslots))
        # Cold buffered reads complete through task work, never io-wq, on current
        # kernels; forcing every 2nd request to a worker shows both paths side by side.
        default_force = BUFFERED_FORCE_ASYNC if buffered else 0
        force = opts.force_async if opts.force_async is not None else default_force
        batch = opts.iodepth_batch_submit or DEFAULT_IODEPTH_BATCH_SUBMIT
        self.engine = UringFile(
            ring, fd, self.loop.nslots, self.loop.buf.address, opts.bs, force, batch
        )

    def run(self, ctx: Context) -> None:
        try:
            self.loop.run(self.engine)
        finally:
            self.role.extra["io_uring_enter"] = self.engine.ring.enters
            if self.engine.force_async:
                self.role.extra["forced_async"] = self.engine.async_marked

    def close(self) -> None:
        self.engine.close()
        self.loop.close()


class UringSocketWorkload:
    """One RECV in flight per paced socket; exactly --number-ios completions with data."""

    def __init__(self, ctx: Context) -> None:
        opts = ctx.opts
        self.nsock = opts.fds
        self.limit = request_limit(ctx)
        self.total_ops = self.limit
        self.channels = [ctx.open_channel("socket") for _ in range(self.nsock)]
        ctx.spawn_producers([None] * self.nsock)
        self.role: Role = ctx.role("socket")
        self.role.fds = [ch.read_fd for ch in self.channels]
        self.checkers = [
            StreamChecker(ch.salt, f"socket {i} (fd {ch.read_fd})")
            for i, ch in enumerate(self.channels)
        ]
        self.buf = libc.AlignedBuffer(self.nsock, opts.bs)
        self.ring = Ring(_pow2(self.nsock))
        sqes = self.ring.sqes
        sqes["opcode"] = IORING_OP_RECV
        sqes["len"] = opts.bs
        sqes["rw_flags"] = 0
        self.fds = np.array(self.role.fds, dtype=np.int32)
        self.slot_t = np.zeros(self.nsock, dtype=np.int64)

    def _queue(self, slots: np.ndarray) -> None:
        n = len(slots)
        idx = self.ring.prepare(n)
        s = slots.astype(np.uint64)
        sqes = self.ring.sqes
        sqes["fd"][idx] = self.fds[slots]
        sqes["addr"][idx] = np.uint64(self.buf.address) + s * np.uint64(self.buf.bs)
        sqes["user_data"][idx] = s
        self.slot_t[slots] = time.perf_counter_ns()
        self.ring.publish(n)

    def run(self, ctx: Context) -> None:
        role = self.role
        limit = self.limit if self.limit is not None else -1
        first = self.nsock if limit < 0 else min(self.nsock, limit)
        self._queue(np.arange(first, dtype=np.int64))
        submitted, inflight, stopping = first, first, False
        try:
            while inflight:
                self.ring.enter(1)
                c = self.ring.completions()
                t = time.perf_counter_ns()
                if not len(c):
                    continue
                slots = c["user_data"].astype(np.int64)
                res = c["res"]
                for slot, got in zip(slots.tolist(), res.tolist(), strict=True):
                    if got <= 0:
                        what = "closed" if got == 0 else f"failed ({-got})"
                        raise WorkloadError(f"recv on socket {slot} {what}")
                    self.checkers[slot].check(self.buf.blocks[slot, :got])
                    role.bytes += got
                role.lat.add_many(t - self.slot_t[slots])
                role.ops += len(slots)
                inflight -= len(slots)
                if not stopping:
                    now = time.monotonic()
                    stopping = ctx.expired(now)
                    ctx.progress.update(now, ctx.start, role.ops)
                if stopping:
                    continue
                n = len(slots) if limit < 0 else min(len(slots), limit - submitted)
                if n > 0:
                    self._queue(slots[:n])
                    submitted += n
                    inflight += n
        finally:
            role.extra["io_uring_enter"] = self.ring.enters

    def close(self) -> None:
        self.ring.close()
        self.buf.close()


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def prepare(ctx: Context) -> UringFileWorkload | UringSocketWorkload:
    if ctx.spec.name == "io_uring-socket":
        return UringSocketWorkload(ctx)
    return UringFileWorkload(ctx, buffered=ctx.spec.name == "io_uring-buffered")
