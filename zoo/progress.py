"""How long steps report progress: a callback the CLI turns into rich progress bars.

Library code stays free of any display: it calls `progress(step, done, total)` and the caller
decides what to show. This is the one progress signature in zoo; a caller that runs steps for
several things (the bench, one backbone after another) names each step with `prefixed`.
"""

from __future__ import annotations

from collections.abc import Callable

#: progress(step name, items or bytes done, how many in all — 0 when unknown).
Progress = Callable[[str, int, int], None]


def no_progress(step: str, done: int, total: int) -> None:
    """The default callback, where nobody is watching."""


def prefixed(progress: Progress, name: str) -> Progress:
    """`progress` with every step reported as "NAME: step", so one display follows many things."""

    def report(step: str, done: int, total: int) -> None:
        progress(f"{name}: {step}", done, total)

    return report
