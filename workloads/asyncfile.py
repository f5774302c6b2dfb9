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
    slot_offsets: np.ndarray
    """The offset each buffer slot was last queued at, indexed by slot (the engine's
    own per-slot request records: iocb or SQE), kept until the slot is queued again."""

    def queue(self, slots: np.ndarray, offsets: np.ndarray) -> None:
        """Start reads of bs bytes at offsets into the buffer slots (may defer the syscall)."""

    def flush(self) -> None:
        """Make sure what is queued has been submitted (no waiting)."""

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


VERIFY_BATCH = 64
"""Completed slots are checked (and their latencies logged) this many at a time."""


class AsyncFileLoop:
    """`depth` requests in flight over 2 x (depth + VERIFY_BATCH) buffer slots.

    The spare slots let a reaped batch be replaced by new requests *before*
    its data is checked, and let checks run over VERIFY_BATCH blocks at once,
    so the device works on the next batch while Python does the bookkeeping,
    and the fixed cost of each numpy call is shared by many requests.
    """

    def __init__(self, ctx: Context, role: Role, path: str, depth: int) -> None:
        opts = ctx.opts
        self.ctx, self.role, self.depth = ctx, role, depth
        # Free slots never run short: in flight <= depth, awaiting a check < VERIFY_BATCH
        # plus one reaped batch (<= depth), and a refill takes <= depth.
        self.nslots = 2 * (depth + VERIFY_BATCH)
        self.bs = opts.bs
        self.limit = request_limit(ctx)
        self.total_ops = self.limit
        self.buf = libc.AlignedBuffer(self.nslots, opts.bs)
        self.checker = BlockChecker(opts.bs, path, VERIFY_BATCH + depth)
        self.offsets = OffsetStream(Offsets(opts.filesize, opts.bs, opts.rw, opts.seed))
        self.slot_off = np.zeros(self.nslots, dtype=np.uint64)
        self.slot_res = np.zeros(self.nslots, dtype=np.int64)
        self.slot_t = np.zeros(self.nslots, dtype=np.int64)
        self.slot_done = np.zeros(self.nslots, dtype=np.int64)
        self.min_nr = min(opts.iodepth_batch_complete_min, depth)

    def run(self, engine: Engine) -> None:
        ctx, role = self.ctx, self.role
        clock, monotonic, expired = time.perf_counter_ns, time.monotonic, ctx.expired
        queue, flush, reap, take = engine.queue, engine.flush, engine.reap, self.offsets.take
        limit = self.limit if self.limit is not None else -1
        # The engine keeps each slot's offset in its request record; read back at check time.
        self.slot_off = engine.slot_offsets
        slot_res, slot_t, slot_done = self.slot_res, self.slot_t, self.slot_done
        # Free slots as a stack (free[:top]); reaped slots wait in pend[:npend] for checking.
        free = np.arange(self.nslots, dtype=np.int64)[::-1].copy()
        top = self.nslots
        pend = np.empty(self.nslots, dtype=np.int64)
        npend = 0
        first = self.depth if limit < 0 else min(self.depth, limit)
        top -= first
        slot_t[free[top : top + first]] = clock()
        queue(free[top : top + first], take(first))
        flush()
        submitted = inflight = first
        min_nr = self.min_nr
        stopping = False
        progress = ctx.progress
        try:
            while inflight:
                done, res = reap(min_nr if inflight >= min_nr else inflight)
                t = clock()
                k = len(done)
                if k == 0:
                    continue
                inflight -= k
                # Refill before anything else: the device gets the new requests at once,
                # and the bookkeeping of the reaped ones runs while they are in flight.
                now = monotonic()
                if not stopping:
                    stopping = expired(now)
                n = 0 if stopping else (k if limit < 0 else min(k, limit - submitted))
                if n > 0:
                    top -= n
                    again = free[top : top + n]  # free[top:] is rewritten only by _settle
                    slot_t[again] = clock()
                    queue(again, take(n))
                    flush()
                    submitted += n
                    inflight += n
                # Results are checked with the data, VERIFY_BATCH at a time (_settle).
                slot_res[done] = res
                slot_done[done] = t
                pend[npend : npend + k] = done
                npend += k
                role.ops += k
                progress.update(now, ctx.start, role.ops)
                if npend >= VERIFY_BATCH or top < VERIFY_BATCH:
                    top = self._settle(pend[:npend], free, top)
                    npend = 0
        finally:
            # What was reaped is checked even when the run ends early.
            self._settle(pend[:npend], free, top)

    def _settle(self, done: np.ndarray, free: np.ndarray, top: int) -> int:
        """Check the results and blocks of reaped slots, log their latencies, free them."""
        k = len(done)
        if k:
            bs = self.bs
            res = self.slot_res[done]
            if (res != bs).any():
                bad = int(np.flatnonzero(res != bs)[0])
                raise _failed(int(res[bad]), bs, int(self.slot_off[done[bad]]))
            self.checker.check(self.buf.blocks[done], self.slot_off[done])
            self.role.lat.add_many(self.slot_done[done] - self.slot_t[done])
            self.role.bytes += k * bs
            free[top : top + k] = done
        return top + k

    def close(self) -> None:
        self.buf.close()


def _failed(res: int, bs: int, off: int) -> WorkloadError:
    if res < 0:
        return WorkloadError(f"read at offset {off} failed: {os.strerror(-res)}")
    return WorkloadError(f"read at offset {off} returned {res} bytes, expected {bs}")
