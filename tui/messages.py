"""Messages the drain thread posts to the app (past tense: they report what happened)."""

from __future__ import annotations

from iotrace.tui.model import Snapshot
from textual.message import Message


class SnapshotTaken(Message):
    """Fresh aggregates. High rate: a newer one replaces an unhandled older one."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotTaken)


class SourceEnded(Message):
    """The source returned None: a replay was fully read, or the recording stopped."""


class SourceFailed(Message):
    """The source raised; `error` is one line for the user."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
