"""The one exception type users see: its message is the whole story, on one line."""


class ZooError(Exception):
    """A problem the user can fix; the CLI prints its message alone, without a traceback.

    Messages say what is wrong and how to fix it, in one line.
    """
