"""A terminal that goes away must not hang the dashboard's shutdown."""

import errno
import threading

import pytest
from iotrace.tui.app import make_app
from iotrace.tui.synthetic import make_trace, scripted_source
from iotrace.tui.terminal import ForgivingOutput, TerminalDriver
from textual.drivers._writer_thread import MAX_QUEUED_WRITES, WriterThread


class DeadTerminal:
    """What a closed pty is to its writer: every write fails with EIO."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")

    def flush(self) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def fileno(self) -> int:
        return 2


def _stops(writer: WriterThread) -> bool:
    """Fill the queue past its bound, then stop(), as Textual's shutdown does."""
    done = threading.Event()

    def shut_down() -> None:
        for _ in range(MAX_QUEUED_WRITES * 3):
            writer.write("frame\n")
        writer.stop()
        done.set()

    threading.Thread(target=shut_down, daemon=True).start()
    return done.wait(5.0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_textual_writer_on_a_dead_terminal_hangs_without_it():
    # The failure this module exists for: the writer dies of EIO, its queue fills,
    # and shutdown waits for ever (the thread stays blocked; it is a daemon).
    writer = WriterThread(DeadTerminal())  # type: ignore[arg-type]
    writer.start()
    assert not _stops(writer)


def test_writer_through_forgiving_output_stops_on_a_dead_terminal():
    out = ForgivingOutput(DeadTerminal())  # type: ignore[arg-type]
    writer = WriterThread(out)  # type: ignore[arg-type]
    writer.start()
    assert _stops(writer)
    assert out.gone and out.fileno() == 2


def test_the_dashboard_runs_on_the_forgiving_driver():
    app = make_app(scripted_source(make_trace(1.0), live=False))
    assert app.driver_class is TerminalDriver
