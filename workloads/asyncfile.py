"""The driver shared by the asynchronous file workloads (libaio, io_uring,
posix-aio): `iodepth` requests in flight on one data file, each in its own
slot of a page-aligned buffer, reaped in batches, checked in batches, and
resubmitted at once with fresh offsets.

An engine only knows how to queue a batch of slots and reap completions; the
bookkeeping here is all numpy over arrays indexed by slot, so Python work per
batch is a few vectorised calls, not a loop over requests.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

import numpy as np
from iotrace.workloads import libc
from iotrace.workloads.datafile import BlockChecker
from iotrace.workloads.engine import Context
from iotrace.workloads.measure import Role
from iotrace.workloads.offsets import Offsets, OffsetStream

from iotrace.errors import WorkloadError


class Engine(Protocol):
    def queue(self, slots: np.ndarray, offsets: np.ndarray) -> None:
        """Start reads of bs bytes at offsets into the buffer slots (may defer the syscall)."""

    def reap(self, min_nr: int) -> tuple[np.ndarray, np.ndarray]:
        """Submit what is queued, wait for >= min_nr completions: (slots, results)."""

    def close(self) -> None: ...


def request_limit(ctx: Context) -> int | None:
    """Exact number of requests from --number-ios / --size, None when time-bound."""
    opts = ctx.opts
    limits = []
    if opts.number_ios is not None:
        limits.append(opts.number_ios)
    if opts.size is not None:
        limits.append(max(1, opts.size // opts.bs))
    return min(limits) if limits else None


class AsyncFileLoop:
    def __init__(self, ctx: Context, role: Role, path: str, depth: int) -> None:
        opts = ctx.opts
        self.ctx, self.role, self.depth = ctx, role, depth
        self.bs = opts.bs
        self.limit = request_limit(ctx)
        self.total_ops = self.limit
        self.buf = libc.AlignedBuffer(depth, opts.bs)
        self.checker = BlockChecker(opts.bs, path, depth)
        self.offsets = OffsetStream(Offsets(opts.filesize, opts.bs, opts.rw, opts.seed))
        self.slot_off = np.zeros(depth, dtype=np.uint64)
        self.slot_t = np.zeros(depth, dtype=np.int64)
        self.min_nr = min(opts.iodepth_batch_complete_min, depth)

    def run(self, engine: Engine) -> None:
        ctx, role, bs = self.ctx, self.role, self.bs
        clock, monotonic = time.perf_counter_ns, time.monotonic
        limit = self.limit if self.limit is not None else -1
        blocks = self.buf.blocks
        submitted = 0
        inflight = 0
        first = self.depth if limit < 0 else min(self.depth, limit)
        slots = np.arange(first, dtype=np.int64)
        offs = self.offsets.take(first)
        self.slot_off[slots] = offs
        self.slot_t[slots] = clock()
        engine.queue(slots, offs)
        submitted += first
        inflight += first
        stopping = False
        progress = ctx.progress
        while inflight:
            done, res = engine.reap(min(self.min_nr, inflight))
            t = clock()
            k = len(done)
            if k == 0:
                continue
            if (res != bs).any():
                bad = int(np.flatnonzero(res != bs)[0])
                raise _failed(int(res[bad]), bs, int(self.slot_off[done[bad]]))
            self.checker.check(blocks[done], self.slot_off[done])
            role.lat.add_many(t - self.slot_t[done])
            inflight -= k
            role.ops += k
            role.bytes += k * bs
            if not stopping:
                now = monotonic()
                stopping = ctx.expired(now)
                progress.update(now, ctx.start, role.ops)
            if stopping:
                continue
            n = k if limit < 0 else min(k, limit - submitted)
            if n <= 0:
                continue
            again = done[:n]
            offs = self.offsets.take(n)
            self.slot_off[again] = offs
            self.slot_t[again] = clock()
            engine.queue(again, offs)
            submitted += n
            inflight += n

    def close(self) -> None:
        self.buf.close()


def _failed(res: int, bs: int, off: int) -> WorkloadError:
    if res < 0:
        return WorkloadError(f"read at offset {off} failed: {os.strerror(-res)}")
    return WorkloadError(f"read at offset {off} returned {res} bytes, expected {bs}")
