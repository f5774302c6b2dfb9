"""Verifiable data: patterns, checks that fail loudly, the data directory and file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from iotrace.workloads import datafile
from iotrace.workloads.datafile import (
    BlockChecker,
    DataMismatch,
    StreamChecker,
    ensure_data_file,
    file_words,
    stream_bytes,
    stream_salt,
)

BS = 4096


def _read_blocks(path: str, offsets: list[int]) -> np.ndarray:
    with open(path, "rb") as f:
        rows = []
        for off in offsets:
            f.seek(off)
            rows.append(np.frombuffer(f.read(BS), dtype=np.uint8))
    return np.stack(rows)


def test_block_content_is_derived_from_its_offset() -> None:
    words = file_words(8192, BS)
    assert int(words[0]) == 8192 + datafile.FILE_SALT
    assert int(words[1]) - int(words[0]) == 8
    # A block of zeros never passes.
    with pytest.raises(DataMismatch):
        BlockChecker(BS, "f", 1).check_one(np.zeros(BS, dtype=np.uint8), 0)


def test_data_file_blocks_check_and_a_corrupted_block_is_reported(tmp_path: Path) -> None:
    df = ensure_data_file(str(tmp_path), 64 * BS)
    assert os.path.getsize(df.path) == 64 * BS
    checker = BlockChecker(BS, df.path, 64)
    offsets = [i * BS for i in range(64)]
    checker.check(_read_blocks(df.path, offsets), np.array(offsets, dtype=np.uint64))
    assert checker.checked == 64

    with open(df.path, "r+b") as f:  # flip one byte inside block 17
        f.seek(17 * BS + 100)
        b = f.read(1)
        f.seek(17 * BS + 100)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(DataMismatch) as exc:
        checker.check(_read_blocks(df.path, offsets), np.array(offsets, dtype=np.uint64))
    msg = str(exc.value)
    assert f"at byte {17 * BS + 96}" in msg and f"block at {17 * BS}" in msg
    assert df.path in msg and "--clean" in msg


def test_a_block_from_the_wrong_offset_fails() -> None:
    block = file_words(BS, BS).view(np.uint8)
    BlockChecker(BS, "f", 1).check_one(block, BS)
    with pytest.raises(DataMismatch):
        BlockChecker(BS, "f", 1).check_one(block, 2 * BS)


def test_data_file_is_reused_while_unchanged_and_rebuilt_when_the_manifest_differs(
    tmp_path: Path,
) -> None:
    df = ensure_data_file(str(tmp_path), 16 * BS)
    ino = os.stat(df.path).st_ino
    assert ensure_data_file(str(tmp_path), 16 * BS).path == df.path
    assert os.stat(df.path).st_ino == ino  # reused, not rewritten
    Path(df.path + ".json").write_text('{"pattern_version": 0}')
    ensure_data_file(str(tmp_path), 16 * BS)
    assert os.stat(df.path).st_ino != ino  # rebuilt


@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=30))
def test_stream_checks_any_split_of_the_stream(sizes: list[int]) -> None:
    salt = stream_salt(7, 0)
    whole = stream_bytes(0, sum(sizes), salt)
    checker = StreamChecker(salt, "pipe")
    pos = 0
    for n in sizes:
        checker.check(whole[pos : pos + n].tobytes())
        pos += n
    assert checker.position == sum(sizes)


def test_stream_mismatch_names_the_position() -> None:
    salt = stream_salt(1, 0)
    data = bytearray(stream_bytes(0, 64, salt).tobytes())
    data[40] ^= 1
    with pytest.raises(DataMismatch, match="stream byte 40"):
        StreamChecker(salt, "the pipe").check(bytes(data))


def test_streams_of_different_producers_differ() -> None:
    a, b = stream_salt(1, 0), stream_salt(1, 1)
    with pytest.raises(DataMismatch):
        StreamChecker(a, "pipe").check(stream_bytes(0, 64, b).tobytes())


def test_data_dir_candidates_prefer_the_users_cache(tmp_path: Path) -> None:
    assert datafile.candidate_dirs(str(tmp_path), 1000) == [
        str(tmp_path / ".cache" / "iotrace"),
        "/var/tmp/iotrace-1000",
    ]
    assert datafile.candidate_dirs("/nonexistent", 65534) == ["/var/tmp/iotrace-65534"]


def test_private_dir_is_0700_and_a_wrong_owner_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "home" / ".cache" / "iotrace"
    datafile._make_private_dir(str(d))
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    d.chmod(0o755)
    datafile._make_private_dir(str(d))  # an existing one of ours is tightened
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OSError, match="not a directory"):
        datafile._make_private_dir(str(f))


def test_clean_removes_the_users_data_dir(tmp_path: Path) -> None:
    d = tmp_path / ".cache" / "iotrace"
    datafile._make_private_dir(str(d))
    ensure_data_file(str(d), 4 * BS)
    removed = datafile.clean(str(tmp_path))
    assert str(d) in removed and not d.exists()


def test_explicit_directory_without_o_direct_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(datafile, "direct_io_works", lambda d: f"O_DIRECT refused on {d} (x)")
    with pytest.raises(datafile.Unavailable, match="O_DIRECT refused"):
        datafile.choose_data_dir(str(tmp_path), None)
