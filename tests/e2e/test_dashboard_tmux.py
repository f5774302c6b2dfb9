"""The dashboard in a real terminal: `iotrace run` with real probes inside tmux
at 160x48; keys are sent and the screen is read back with capture-pane."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iotrace import events, session

pytestmark = pytest.mark.e2e

IOTRACE = str(Path(sys.executable).with_name("iotrace"))
MODELS = ("sync-blocking", "sync-nonblocking", "async-blocking", "async-nonblocking")


class Tmux:
    def __init__(self, name: str, command: str) -> None:
        self.name = name
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        # COLUMNS/LINES inherited from a test runner would override the pane's size.
        command = f"unset COLUMNS LINES; {command}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "48", command],
            check=True,
        )
        # A detached session can start at the server's default size: insist.
        subprocess.run(["tmux", "resize-window", "-t", name, "-x", "160", "-y", "48"], check=True)

    def screen(self) -> str:
        out = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        )
        return out.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if re.search(pattern, text):
                return text
            time.sleep(0.25)
        raise AssertionError(f"{pattern!r} never appeared; last screen:\n{text}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def span_s(screen: str) -> float:
    """The span the timeline axis shows, in seconds."""
    m = re.search(r"^span ([\d.]+) (s|ms)", screen, re.M)
    assert m, screen
    return float(m.group(1)) * (1.0 if m.group(2) == "s" else 1e-3)


def lane_cells(screen: str) -> list[str]:
    """The cells of every thread lane (lines starting with ' comm tid')."""
    return [ln[25:] for ln in screen.splitlines() if re.match(r"^ \S+ \d+ ", ln)]


@pytest.fixture
def tmux_ok() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to load the BPF programs")
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (setup.sh installs it)")


def test_run_dashboard_in_tmux_then_view(tmux_ok, tmp_path):
    trace = tmp_path / "dash.trace"
    done = tmp_path / "exit-code"
    env = f"BCC_KERNEL_SOURCE={os.environ.get('BCC_KERNEL_SOURCE', '/tmp/kh/tree')}"
    cmd = f"cd {tmp_path} && {env} {IOTRACE} run -d 20 -o {trace}; echo $? > {done}; sleep 600"
    tm = Tmux("iotrace-e2e-dash", cmd)
    try:
        # A scoreboard row and lanes for each of the four models appear.
        for model in MODELS:
            tm.wait_for(rf"(?m)^ \S+\s+{re.escape(model)}\s", 60)
        screen = tm.wait_for(r"in flight", 30)
        for group in ("▾ sync-blocking", "▾ sync-nonblocking", "▾ epoll", "▾ io_uring"):
            assert group in screen
        assert "● LIVE" in screen
        # ... and move: the lanes change between two looks a second apart.
        first = lane_cells(tm.screen())
        time.sleep(1.5)
        second = lane_cells(tm.screen())
        assert first and second and first != second
        # Pause freezes the lanes while recording goes on.
        tm.keys("space")
        paused = tm.wait_for(r"PAUSED \(recording goes on\)", 10)
        # On a busy machine a frame paints what its time budget allows and
        # marks the rest '?' (lanes.PENDING) for the next frames to finish:
        # finishing the picture is not movement, so wait for it first.
        deadline = time.monotonic() + 10
        while any("?" in c for c in lane_cells(paused)) and time.monotonic() < deadline:
            time.sleep(0.25)
            paused = tm.screen()
        frozen = lane_cells(paused)
        time.sleep(1.5)
        assert lane_cells(tm.screen()) == frozen
        tm.keys("space")
        tm.wait_for("● LIVE", 10)
        # Zoom in: the span shown on the axis halves (cells sit on a 5 ms grid,
        # so spans are within a few per cent of 10 s and 5 s).
        before = span_s(tm.screen())
        assert 9.5 <= before <= 10.5
        tm.keys("+")
        deadline = time.monotonic() + 10
        while span_s(tm.screen()) > 6 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert 4.5 <= span_s(tm.screen()) <= 5.5
        # Quit: the trace is saved and the command exits 0.
        tm.keys("q")
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert done.exists(), tm.screen()
        assert done.read_text().strip() == "0"
        assert trace.exists() and trace.stat().st_size > 0
    finally:
        tm.close()

    # The saved trace replays in `iotrace view`, without root privileges needed.
    tv = Tmux("iotrace-e2e-view", f"{IOTRACE} view {trace}; sleep 600")
    try:
        screen = tv.wait_for("REPLAY", 60)
        for model in MODELS:
            screen = tv.wait_for(rf"(?m)^ \S+\s+{re.escape(model)}\s", 60)
        assert lane_cells(screen)
        tv.keys("q")
    finally:
        tv.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _has_footer(trace: Path) -> bool:
    """The END. chunk is on disk (the footer is the file's last chunk)."""
    try:
        with open(trace, "rb") as f:
            f.seek(max(trace.stat().st_size - (1 << 16), 0))
            return b"END." in f.read()
    except OSError:
        return False


@pytest.mark.parametrize("moment", ["during the run", "right after q", "during the summary"])
def test_closing_the_terminal_ends_iotrace_within_2_s_with_a_whole_trace(tmux_ok, tmp_path, moment):
    """The terminal goes away (tmux kill-session: SIGHUP, a dead pty) at any point
    of a dashboard run: iotrace (the recorder) and its dashboard process are gone
    within 2 s, the workloads stopped, the probes detached, the trace complete."""
    from test_reliability import (
        assert_gone,
        assert_progs_gone,
        descendants,
        held_prog_ids,
        start_time,
    )

    from iotrace import session

    trace = tmp_path / "closed.trace"
    env = f"BCC_KERNEL_SOURCE={os.environ.get('BCC_KERNEL_SOURCE', '/tmp/kh/tree')}"
    name = f"iotrace-e2e-close-{moment.split()[-1]}"
    tm = Tmux(name, f"cd {tmp_path} && {env} {IOTRACE} run -o {trace}; sleep 30")
    killed = False
    try:
        for model in MODELS:
            tm.wait_for(rf"(?m)^ \S+\s+{re.escape(model)}\s", 90)
        pane = int(
            subprocess.run(
                ["tmux", "display", "-p", "-t", name, "#{pane_pid}"],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        tree = descendants(pane)
        recorder = next(p for p in tree if held_prog_ids(p))
        progs = held_prog_ids(recorder)
        below = descendants(recorder)
        dashboards = [p for p in below if "iotrace.tui.follow" in _cmdline(p)]
        assert len(dashboards) == 1, {p: _cmdline(p) for p in below}
        time.sleep(3.0)
        if moment != "during the run":
            tm.keys("q")
            if moment == "right after q":
                time.sleep(0.5)
            else:
                deadline = time.monotonic() + 30
                while not _has_footer(trace) and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert _has_footer(trace)
        alive_at_kill = start_time(recorder) is not None
        t0 = time.monotonic()
        tm.close()
        killed = True
        while start_time(recorder) is not None and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        took = time.monotonic() - t0
    finally:
        if not killed:
            tm.close()
    print(f"{moment}: iotrace alive at the kill: {alive_at_kill}; gone after {took:.2f} s")
    assert took <= 2.0, f"iotrace still ran {took:.1f} s after its terminal closed"
    assert_gone(below, within_s=0.5)  # workloads and the dashboard
    assert_progs_gone(progs)
    t = session.load(trace)
    assert t.complete, t.damage
    assert len(t.events) > 0


def test_the_default_run_with_its_dashboard_loses_nothing(tmux_ok, tmp_path):
    """A new user's first command, as they run it: `iotrace run` with the live
    dashboard in a real terminal, the four default workloads to their own end.
    Every call is in the trace, as its own record or counted in a run record."""
    trace = tmp_path / "first.trace"
    done = tmp_path / "exit-code"
    cmd = f"cd {tmp_path} && {IOTRACE} run -o {trace}; echo $? > {done}; sleep 600"
    tm = Tmux("iotrace-e2e-first", cmd)
    try:
        screen = tm.wait_for(r"■ ENDED", 120)
        assert re.search(r"\blost 0\b", screen), screen
        for model in MODELS:
            assert re.search(rf"(?m)^ \S+\s+{re.escape(model)}\s", screen), screen
        tm.keys("q")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert done.exists() and done.read_text().strip() == "0", tm.screen()
    finally:
        tm.close()
    t = session.load(trace)
    assert t.complete
    lost = t.events[t.events["kind"] == events.Kind.LOST]
    assert int(lost["size"].sum()) == 0
    assert not any(t.stats.get("lost", {}).values())
    # the EAGAIN storm of the sync-nonblocking workload was folded, not dropped
    runs_ = t.events[t.events["kind"] == events.Kind.SYSCALL_RUN]
    assert len(runs_) > 0 and int(runs_["offset"].sum()) > 10 * len(runs_)
