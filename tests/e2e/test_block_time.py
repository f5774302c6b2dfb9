"""Block-device time inside calls (issue 13 item 4), with the real block probes:
an O_DIRECT read is charged the time its requests spent at the device, a
re-read of pages just read through the page cache is charged none.

The file lives on a real block device: O_DIRECT needs one and a tmpfs has no
block layer at all. /var/tmp is on the root disk on this VM (`lsblk`: vda is
/); the fixture fails, rather than skips, when it is not."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_util import compile_prog, iotrace, needs_root

from iotrace import blocktime, session

pytestmark = [pytest.mark.e2e, needs_root]

MIB = 4


@pytest.fixture(scope="module")
def traced() -> Iterator[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="iotrace-block-", dir="/var/tmp"))
    try:
        if os.major(os.stat(tmp).st_dev) == 0:
            pytest.fail(f"{tmp} is on no block device (tmpfs?): the O_DIRECT read needs one")
        data = tmp / "data"
        with open(data, "wb") as f:
            f.write(os.urandom(MIB << 20))
            os.fsync(f.fileno())  # its writeback now, not during the traced run
        exe = compile_prog("direct_then_cached", tmp)
        out = tmp / "block.trace"
        proc = iotrace(
            "trace", "--no-tui", "--block-time", "-o", str(out), "--", str(exe), str(data)
        )
        assert proc.returncode == 0, proc.stderr
        fds = dict(kv.split("=") for kv in proc.stdout.split("\n")[-2].split())
        trace = session.load(out)
        report = iotrace("report", "--json", str(out))
        assert report.returncode == 0, report.stderr
        text = iotrace("report", str(out))
        yield {
            "trace": trace,
            "direct": int(fds["direct"]),
            "cached": int(fds["cached"]),
            "json": json.loads(report.stdout),
            "text": text.stdout,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stats(t: dict[str, Any]) -> blocktime.BlockStats:
    trace = t["trace"]
    stats = blocktime.block_stats([trace.events], traced=blocktime.traced(trace))
    (pid,) = {int(p) for p in t["json"]["block"]}
    return stats[pid]


def test_o_direct_reads_show_their_device_time(traced):
    st = _stats(traced)
    direct = [c for c in st.calls if c.fd == traced["direct"]]
    # 4 MiB in 256 KiB preads: 16 reads with data, each at the device
    assert len(direct) == 16
    assert all(c.name == "pread64" and 0 < c.device_ns <= c.dur_ns for c in direct)
    assert st.bytes >= MIB << 20 and st.requests >= 16
    assert st.latency_us()["p50"] is not None


def test_a_cached_re_read_shows_none(traced):
    st = _stats(traced)
    assert not [c for c in st.calls if c.fd == traced["cached"]]
    # the re-read's 16 preads (and its EOF read) did no block I/O
    assert st.cache_hit_share is not None and st.cache_hit_share > 0.5


def test_report_says_it(traced):
    doc = next(iter(traced["json"]["block"].values()))
    assert doc["data_calls_with_block_io"] >= 16 and doc["device_time_share"] > 0
    assert doc["device_latency_us"]["p99"] >= doc["device_latency_us"]["p50"] > 0
    assert doc["slowest"]["fd"] == traced["direct"]
    text = " ".join(traced["text"].split())  # unwrapped
    assert "device: " in text and "of it at the device" in text
    assert traced["trace"].meta["probes"]["block"] == blocktime.TRACED
