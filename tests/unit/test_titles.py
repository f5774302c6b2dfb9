"""Process titles: what a server wrote over its argv, read from a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest
from iotrace.tracer.tasks import proc_title


def _proc(tmp: Path, pid: int, cmdline: bytes) -> Path:
    (tmp / str(pid)).mkdir()
    (tmp / str(pid) / "cmdline").write_bytes(cmdline)
    return tmp


@pytest.mark.parametrize(
    ("cmdline", "comm", "title"),
    [
        (b"postgres: checkpointer " + b" " * 60, "postgres", "checkpointer"),
        (b"postgres: walwriter ", "postgres", "walwriter"),
        (b"nginx: worker process\0\0", "nginx", "worker process"),
        (b"/usr/lib/postgresql/15/bin/postgres\0-D\0/data\0", "postgres", ""),
        (b"python3\0-c\0print('a: b')\0", "python3", ""),
        (b"sshd: root@pts/0", "sshd", "root@pts/0"),
    ],
)
def test_title_set_over_argv(tmp_path, cmdline, comm, title):
    assert proc_title(7, comm, _proc(tmp_path, 7, cmdline)) == title


def test_gone_process_has_no_title(tmp_path):
    assert proc_title(8, "x", tmp_path) == ""
