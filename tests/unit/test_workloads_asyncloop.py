"""The async file driver (libaio, io_uring) against a fake engine: exact counts,
every read checked once and before its buffer slot is reused, failures named."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from iotrace.workloads.asyncfile import AsyncFileLoop
from iotrace.workloads.datafile import DataMismatch, file_words
from iotrace.workloads.measure import Progress, Role
from iotrace.workloads.options import parse

from iotrace.errors import WorkloadError

BS = 4096


class FakeEngine:
    """Completes what was submitted in a shuffled order, a random number per reap,
    writing the file's bytes for each request's offset into its slot on completion
    (like the device), unless told to corrupt one or cut one short."""

    def __init__(self, loop: AsyncFileLoop, seed: int, bad: str = "", bad_at: int = -1) -> None:
        self.blocks = loop.buf.blocks
        self.slot_offsets = np.zeros(loop.nslots, dtype=np.uint64)
        self.rng = np.random.default_rng(seed)
        self.queued: list[int] = []
        self.inflight: list[int] = []
        self.offsets: Counter[int] = Counter()
        self.completed = 0
        self.bad, self.bad_at = bad, bad_at

    def queue(self, slots: np.ndarray, offsets: np.ndarray) -> None:
        for s, off in zip(slots.tolist(), offsets.tolist(), strict=True):
            assert s not in self.inflight and s not in self.queued, "slot reused in flight"
            self.slot_offsets[s] = off
            self.offsets[off] += 1
            self.queued.append(s)

    def flush(self) -> None:
        self.inflight += self.queued
        self.queued = []

    def reap(self, min_nr: int) -> tuple[np.ndarray, np.ndarray]:
        self.flush()
        assert 1 <= min_nr <= len(self.inflight)
        k = int(self.rng.integers(min_nr, len(self.inflight) + 1))
        self.rng.shuffle(self.inflight)
        done, self.inflight = self.inflight[:k], self.inflight[k:]
        res = np.full(k, BS, dtype=np.int32)
        for i, s in enumerate(done):
            words = file_words(int(self.slot_offsets[s]), BS)
            if self.completed == self.bad_at and self.bad == "corrupt":
                words = words.copy()
                words[5] ^= 1
            if self.completed == self.bad_at and self.bad == "short":
                res[i] = 512
            self.blocks[s] = words.view(np.uint8)
            self.completed += 1
        return np.array(done, dtype=np.int64), res

    def close(self) -> None:
        pass


def _loop(argv: list[str]) -> AsyncFileLoop:
    opts, _ = parse(argv)
    ctx: Any = SimpleNamespace(
        opts=opts, progress=Progress(None, None, None), start=0.0, expired=lambda now: False
    )
    assert opts.iodepth is not None
    return AsyncFileLoop(ctx, Role("file"), "data.bin", opts.iodepth)


@pytest.mark.parametrize(("depth", "count", "seed"), [(32, 1009, 1), (4, 97, 2), (1, 13, 3)])
def test_exactly_count_requests_each_checked_once_before_its_slot_is_reused(
    depth: int, count: int, seed: int
) -> None:
    loop = _loop(["--iodepth", str(depth), "--number-ios", str(count), "--filesize", "1m"])
    engine = FakeEngine(loop, seed)
    checked: Counter[int] = Counter()
    check = loop.checker.check

    def counting_check(blocks: np.ndarray, offsets: np.ndarray) -> None:
        check(blocks, offsets)
        checked.update(int(o) for o in offsets.tolist())

    loop.checker.check = counting_check  # type: ignore[method-assign]
    loop.run(engine)
    assert loop.role.ops == count == engine.completed == sum(engine.offsets.values())
    # Every offset read was checked exactly as often as it was read: a slot reused
    # before its check would lose its first offset here.
    assert checked == engine.offsets
    assert loop.role.lat.count == count and loop.role.bytes == count * BS


def test_a_corrupted_block_fails_the_run_with_its_offset() -> None:
    loop = _loop(["--iodepth", "8", "--number-ios", "300", "--filesize", "1m"])
    with pytest.raises(DataMismatch, match=r"at byte \d+ \(block at \d+\)"):
        loop.run(FakeEngine(loop, 4, bad="corrupt", bad_at=150))


def test_a_short_read_fails_the_run_with_its_offset() -> None:
    loop = _loop(["--iodepth", "8", "--number-ios", "300", "--filesize", "1m"])
    with pytest.raises(WorkloadError, match=r"read at offset \d+ returned 512 bytes"):
        loop.run(FakeEngine(loop, 5, bad="short", bad_at=150))
