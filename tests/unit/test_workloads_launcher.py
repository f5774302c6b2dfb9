"""The launcher: who the workload runs as, and the ready/release gate.

The gate tests use pipe and socket reads only, so they need neither root nor
an O_DIRECT filesystem.
"""

from __future__ import annotations

import os
import time

import pytest
from iotrace.workloads import launcher
from iotrace.workloads.launcher import RunAs, child_env, invoking_user, run_as_for, start

from iotrace.errors import UsageError, WorkloadError


def test_not_root_means_no_privilege_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("SUDO_UID", "1000")
    assert invoking_user() is None


def test_root_under_sudo_runs_workloads_as_the_invoking_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    me = os.getuid()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", str(me or 65534))
    monkeypatch.setenv("SUDO_GID", "4242")
    ra = invoking_user()
    assert ra is not None
    assert ra.uid == (me or 65534) and ra.gid == 4242 and 4242 in ra.groups


def test_root_without_sudo_or_sudo_from_root_stays_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SUDO_UID", raising=False)
    assert invoking_user() is None
    monkeypatch.setenv("SUDO_UID", "0")
    monkeypatch.setenv("SUDO_GID", "0")
    assert invoking_user() is None


def test_run_as_for_a_known_user_has_its_home_and_groups() -> None:
    ra = run_as_for(os.getuid())
    assert ra.home and ra.gid in ra.groups


def test_child_env_belongs_to_the_target_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.setenv("XDG_CACHE_HOME", "/root/.cache")
    env = child_env(RunAs(uid=os.getuid(), gid=os.getgid(), groups=(), home="/home/alice"))
    assert env["HOME"] == "/home/alice"
    assert not any(k.startswith(("SUDO_", "XDG_")) for k in env)


def test_bad_options_fail_before_any_process_starts() -> None:
    with pytest.raises(UsageError):
        start("sync-blocking", ["--iodepth", "4"], run_as=None, duration_s=None)
    with pytest.raises(UsageError):
        start("no-such", [], run_as=None, duration_s=None)


def test_gate_holds_the_tree_until_release_then_counts_are_exact() -> None:
    w = start(
        "sync-blocking",
        ["--pipe-reads", "5", "--socket-reads", "3", "--delay", "1ms"],
        run_as=None,
        duration_s=None,
    )
    try:
        w.wait_ready(60)
        assert w.unavailable == ""
        assert len(w.pids) == 3  # the workload and one producer per stream
        assert set(w.fds) == {"pipe", "socket"}
        time.sleep(0.3)
        assert w.poll() is None  # held at the gate, not running
        w.release()
        assert w.wait(60) == 0
        r = w.result()
    finally:
        w.stop()
        w.close()
    assert r["verified"] is True
    assert r["roles"]["pipe"]["ops"] == 5 and r["roles"]["socket"]["ops"] == 3
    assert r["fds"] == w.fds
    assert {"ops", "iops", "mb_s", "lat_us", "cpu_s", "verified", "fds", "pid"} <= set(r)
    assert {"p50", "p99"} <= set(r["lat_us"])


def test_stop_before_release_ends_the_tree_and_reports_no_result() -> None:
    w = start("poll", ["--number-ios", "5"], run_as=None, duration_s=None)
    try:
        w.wait_ready(60)
        pids = list(w.pids)
        w.stop(timeout=5)
        assert w.poll() is not None
        for pid in pids[1:]:  # producers are gone too (reaped by the workload or init)
            with pytest.raises(ProcessLookupError):
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.05)
        with pytest.raises(WorkloadError):
            w.result()
    finally:
        w.close()


def test_duration_bounds_the_run() -> None:
    w = start("epoll", ["--delay", "1ms"], run_as=None, duration_s=0.5)
    try:
        w.wait_ready(60)
        w.release()
        assert w.wait(30) == 0
        r = w.result()
    finally:
        w.close()
    assert r["settings"]["runtime"] == pytest.approx(0.5)
    assert 0.5 <= r["runtime_s"] < 5 and r["ops"] > 0


def test_launcher_module_exports_the_contract() -> None:
    for name in ("RunAs", "invoking_user", "start", "Launched"):
        assert hasattr(launcher, name)
