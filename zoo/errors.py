"""The one exception type users see: its message is the whole story, on one line."""


class ZooError(Exception):
    """A problem the user can fix; the CLI prints its message alone, without a traceback.

    Messages say what is wrong and how to fix it, in one line.
    """


def one_line(exc: BaseException) -> str:
    """An exception as one line: a ZooError's message, else its type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ZooError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
