"""Request offsets in the data file: random (seeded) or sequential, made in
chunks with numpy so the hot loops only index into a ready array."""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 14


class Offsets:
    def __init__(self, filesize: int, bs: int, rw: str, seed: int) -> None:
        self.bs = bs
        self.nblocks = filesize // bs
        self.random = rw == "randread"
        self._rng = np.random.default_rng(seed)
        self._next_block = 0

    def chunk(self, n: int = CHUNK) -> np.ndarray:
        """The next n byte offsets (uint64), each a multiple of bs."""
        if self.random:
            blocks = self._rng.integers(0, self.nblocks, size=n, dtype=np.uint64)
        else:
            blocks = (np.arange(n, dtype=np.uint64) + np.uint64(self._next_block)) % np.uint64(
                self.nblocks
            )
            self._next_block = (self._next_block + n) % self.nblocks
        return blocks * np.uint64(self.bs)


class OffsetStream:
    """Offsets handed out n at a time, refilled in chunks."""

    def __init__(self, offsets: Offsets) -> None:
        self._src = offsets
        self._buf = offsets.chunk()
        self._pos = 0

    def take(self, n: int) -> np.ndarray:
        if self._pos + n > len(self._buf):
            self._buf = np.concatenate([self._buf[self._pos :], self._src.chunk(max(CHUNK, n))])
            self._pos = 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def take_list(self, n: int) -> list[int]:
        return [int(x) for x in self.take(n).tolist()]
