"""Expected failures and their exit codes.

`iotrace.cli.main` turns any `IotraceError` into one line on stderr and its
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DATA = 65
"""A trace file that cannot be read (sysexits EX_DATAERR)."""
EXIT_SOFTWARE = 70
"""The BPF program failed to compile or load (sysexits EX_SOFTWARE)."""
EXIT_IO = 74
"""An output file could not be written (sysexits EX_IOERR)."""
EXIT_NOPERM = 77
"""Not enough privilege to trace (sysexits EX_NOPERM)."""
EXIT_INTERRUPTED = 130


class IotraceError(Exception):
    """An expected failure: printed as one line, never as a traceback."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(IotraceError):
    exit_code = EXIT_USAGE


class PrivilegeError(IotraceError):
    exit_code = EXIT_NOPERM


class BpfError(IotraceError):
    exit_code = EXIT_SOFTWARE


class TraceFileError(IotraceError):
    exit_code = EXIT_DATA


class OutputError(IotraceError):
    exit_code = EXIT_IO


class WorkloadError(IotraceError):
    """A workload failed (bad options, data verification, setup)."""

    exit_code = EXIT_FAILURE
