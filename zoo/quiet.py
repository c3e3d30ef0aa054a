"""Native libraries' notices kept off the terminal.

TensorFlow's and LiteRT's C++ code writes straight to file descriptor 2, ignoring
TF_CPP_MIN_LOG_LEVEL: absl's start-up warning, oneDNN's notice, the TFLite converter's MLIR
diagnostics, "Created TensorFlow Lite XNNPACK delegate", libjpeg's complaints about a damaged
JPEG. Through `zoo bench`'s progress bars they are noise; what matters of them (why a conversion
failed) is in the exception raised, and the image check reads what libjpeg said (zoo.images).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO


@contextmanager
def native_stderr(into: BinaryIO | None = None) -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block, or at the file `into`, to be read
    afterwards (Python's own stderr is flushed first). While `into` captures, Python's stderr, if it
    is fd 2, writes where fd 2 went before: the block may be long, and rich's progress bars go on."""
    sys.stderr.flush()
    python_stderr, saved = sys.stderr, os.dup(2)
    target = os.open(os.devnull, os.O_WRONLY) if into is None else os.dup(into.fileno())
    terminal = None
    if into is not None and _is_fd2(python_stderr):
        # Closed below, not by `with`: it stands in for sys.stderr until then.
        terminal = open(saved, "w", encoding=python_stderr.encoding, errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = terminal
    try:
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved, 2)
        if terminal is not None:
            sys.stderr = python_stderr
            terminal.close()
        os.close(saved)
        os.close(target)


def _is_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor (io.UnsupportedOperation)
        return False
