"""What the Pilot tests share: running an async test without an asyncio
pytest plugin, and reading the dashboard's header line."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test without an asyncio pytest plugin."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def header(app: Any) -> str:
    return str(app.dashboard.query_one("#header").render())
