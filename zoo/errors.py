"""The one exception type users see: its message is the whole story, on one line."""

import re


class ZooError(Exception):
    """A problem the user can fix; the CLI prints its message alone, without a traceback.

    Messages say what is wrong and how to fix it, in one line.
    """


def one_line(exc: BaseException) -> str:
    """An exception as one line: a ZooError's message, else its type and first line (the last,
    for a TensorFlow graph error, whose first is `in user code:`)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if isinstance(exc, ZooError):
        return text
    if text.endswith("in user code:") and len(lines) > 1:  # TensorFlow's graph errors say their cause last
        cause = lines[-1]
        return cause if re.match(r"^[A-Z]\w*(Error|Exception): ", cause) else f"{type(exc).__name__}: {cause}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
