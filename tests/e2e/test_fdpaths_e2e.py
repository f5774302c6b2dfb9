"""fd -> path on a real program: every call of progs/fdpaths.c names the right
file, through an fd closed and reused, a dup, a dup2, a dirfd-relative open, a
chdir, a pipe, a socketpair, and the stdin it inherited (the attach snapshot)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from e2e_util import compile_prog, iotrace, needs_root, syscalls

from iotrace import events, fdpaths, session

pytestmark = [pytest.mark.e2e, needs_root]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp("fdpaths")
    exe = compile_prog("fdpaths", d)
    data = d / "data"
    (data / "sub").mkdir(parents=True)
    for rel in ("a", "b", "sub/c"):
        (data / rel).write_bytes(b"x" * 64)
    stdin = d / "stdin.txt"
    stdin.write_bytes(b"y" * 64)
    out = d / "fd.trace"
    with stdin.open("rb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "iotrace", "trace", "--no-tui", "-q", "-o", str(out),
             "--", str(exe), str(data)],
            stdin=f, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fds = [int(x) for x in proc.stdout.split()]
    return session.load(out), fds, data, stdin, out


def test_every_call_names_its_file(recorded):
    t, fds, data, stdin, _ = recorded
    a, d, _dirfd, c, pr, pw, s0, s1, fd40 = fds
    pid = next(x.pid for x in t.tasks if x.comm == "fdpaths")
    tables = fdpaths.FdTables(t.tasks)
    paths = tables.paths(t.events)
    ev = t.events
    got = {}
    for i, r in enumerate(ev):
        if r["kind"] == events.Kind.SYSCALL and r["pid"] == pid and 11 <= r["size"] <= 18:
            name = events.SYSCALL_BY_OP[int(r["op"])].name
            got[(name, int(r["fd"]), int(r["size"]))] = paths[i]
    pipe = got[("write", pw, 16)]
    pair = got[("sendto", s0, 17)]
    assert got == {
        ("read", a, 11): f"{data}/a",
        ("read", a, 12): f"{data}/b",  # the same number, closed and reused
        ("pread64", d, 13): f"{data}/b",  # dup
        ("pread64", fd40, 14): f"{data}/b",  # dup2
        ("read", c, 15): f"{data}/sub/c",  # openat(dirfd, "c") after chdir
        ("write", pw, 16): pipe,
        ("read", pr, 16): pipe,
        ("sendto", s0, 17): pair,
        ("recvfrom", s1, 17): pair,
        ("read", 0, 18): str(stdin),  # inherited: from the attach snapshot
    }
    assert pipe is not None and pipe.startswith("pipe#")
    assert pair is not None and pair.endswith("AF_UNIX/stream")
    # nothing the program did was on an fd the trace did not see opened
    mine = syscalls(t, pid)
    assert len(mine) and tables.unknown_calls == 0
    assert tables.incomplete_paths == 0 and not t.stats.get("lost_total")


def test_report_file_table_and_csv_path_column(recorded, tmp_path):
    _, _, data, _, out = recorded
    rep = iotrace("report", str(out))
    assert rep.returncode == 0, rep.stderr
    assert "FILES (data calls by the file their fd named)" in rep.stdout
    js = iotrace("report", "--json", str(out))
    files = {f["path"]: f for f in json.loads(js.stdout)["files"]}
    assert files[f"{data}/b"]["calls"] == 3  # read, pread64 on the dup, on the dup2
    assert files[f"{data}/a"]["calls"] == files[f"{data}/sub/c"]["calls"] == 1
    assert files[f"{data}/a"]["bytes"] == 11
    csv = tmp_path / "fd.csv"
    exp = iotrace("export", str(out), "--format", "csv", "-o", str(csv))
    assert exp.returncode == 0, exp.stderr
    text = csv.read_text()
    assert text.splitlines()[0].count('"path"') == 1 and f'"{data}/b"' in text
