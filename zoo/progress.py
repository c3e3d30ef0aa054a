"""How long steps report progress: a callback the CLI turns into rich progress bars.

Library code stays free of any display: it calls `progress(step, done, total)` and the caller
decides what to show.
"""

from __future__ import annotations

from typing import Callable

#: progress(step name, items or bytes done, how many in all — 0 when unknown).
Progress = Callable[[str, int, int], None]


def no_progress(step: str, done: int, total: int) -> None:
    """The default callback, where nobody is watching."""
