"""Privilege and data safety of `iotrace trace`: under sudo the command runs as
the invoking user and the files belong to them; no shell sees the command's
arguments; only what was asked for is traced, and `--all` traces everything
but iotrace itself.

sudo is simulated the way iotrace sees it: root with SUDO_UID/SUDO_GID of a
real unprivileged account (`nobody`).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from e2e_util import iotrace, needs_root

from iotrace import events, session

pytestmark = [pytest.mark.e2e, needs_root]

WHOAMI = textwrap.dedent(
    """
    import json, os, sys
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    with open("/dev/zero", "rb", buffering=0) as f:
        for _ in range(29):
            f.read(29)
    print(json.dumps({
        "argv": sys.argv[1:],
        "uid": status["Uid"].split(), "gid": status["Gid"].split(),
        "groups": status["Groups"].split(), "home": os.environ.get("HOME"),
        "fds": fds,
    }))
    """
)

NASTY = ["; touch /tmp/iotrace-pwned", "$(id)", "`id`", "*", "a b", "'\"", "|", "&&", "\n", ""]


@pytest.fixture
def nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' account on this machine")


def test_under_sudo_the_command_runs_as_the_user_with_verbatim_argv(tmp_path, nobody):
    tmp_path.chmod(0o755)
    out = tmp_path / "u.trace"
    env = {**os.environ, "SUDO_UID": str(nobody.pw_uid), "SUDO_GID": str(nobody.pw_gid)}
    proc = iotrace(
        "trace", "--no-tui", "-o", str(out), "--", sys.executable, "-c", WHOAMI, *NASTY,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("{"))
    me = json.loads(line)
    uid, gid = str(nobody.pw_uid), str(nobody.pw_gid)
    assert me["uid"] == [uid] * 4  # real, effective, saved, filesystem
    assert me["gid"] == [gid] * 4
    want_groups = sorted(map(str, os.getgrouplist(nobody.pw_name, nobody.pw_gid)))
    assert sorted(me["groups"]) == want_groups  # root's groups dropped
    assert "0" not in me["groups"]
    assert me["home"] == nobody.pw_dir
    # No shell: every argument arrives exactly as given, nothing expanded or run.
    assert me["argv"] == NASTY
    assert not os.path.exists("/tmp/iotrace-pwned")
    # No descriptor of iotrace (BPF programs, maps, the trace file) leaks in.
    leaked = [t for t in me["fds"].values() if "bpf" in t or str(out) in t]
    assert leaked == []
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    t = session.load(out)
    assert t.complete
    reads = t.events[(t.events["kind"] == events.Kind.SYSCALL) & (t.events["size"] == 29)]
    assert len(reads) == 29
    # An export made under sudo belongs to the user too.
    csv = tmp_path / "u.csv"
    exp = iotrace("export", str(out), "--format", "csv", "-o", str(csv), env=env)
    assert exp.returncode == 0, exp.stderr
    assert csv.stat().st_uid == nobody.pw_uid


READER = (
    "import time\n"
    "f = open('/dev/zero', 'rb', buffering=0)\n"
    "while True:\n"
    "    f.read({size}); time.sleep(0.005)\n"
)


def _reader(size: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", READER.format(size=size)], stdin=subprocess.DEVNULL
    )


def _stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait()


def _sizes(t: session.Trace) -> dict[int, set[int]]:
    sc = t.events[t.events["kind"] == events.Kind.SYSCALL]
    out: dict[int, set[int]] = {}
    for pid, size in zip(sc["pid"].tolist(), sc["size"].tolist(), strict=True):
        out.setdefault(size, set()).add(pid)
    return out


def test_only_the_asked_for_process_is_traced_and_all_must_be_asked(tmp_path):
    wanted, bystander = _reader(71), _reader(73)
    try:
        time.sleep(0.3)
        out = tmp_path / "p.trace"
        proc = iotrace("trace", "--no-tui", "-p", str(wanted.pid), "-d", "1", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        t = session.load(out)
        sizes = _sizes(t)
        assert sizes.get(71) == {wanted.pid}
        assert 73 not in sizes  # the bystander's reads are not recorded
        assert {tk.pid for tk in t.tasks} == {wanted.pid}
        assert t.meta["trace_all"] is False

        every = tmp_path / "all.trace"
        run = subprocess.Popen(
            [sys.executable, "-m", "iotrace", "trace", "--no-tui", "--all", "-d", "1",
             "-o", str(every)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        assert "Tracing all processes" in err
        t = session.load(every)
        sizes = _sizes(t)
        assert wanted.pid in sizes.get(71, set()) and bystander.pid in sizes.get(73, set())
        assert t.meta["trace_all"] is True and t.meta["options"]["trace_all"] is True
        # iotrace never records itself (its drain would feed on its own writes).
        assert run.pid not in set(t.events["pid"].tolist())
    finally:
        _stop(wanted)
        _stop(bystander)
