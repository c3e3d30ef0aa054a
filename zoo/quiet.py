"""Native libraries' notices kept off the terminal.

TensorFlow's and LiteRT's C++ code writes straight to file descriptor 2, ignoring
TF_CPP_MIN_LOG_LEVEL: absl's start-up warning, oneDNN's notice, the TFLite converter's MLIR
diagnostics, "Created TensorFlow Lite XNNPACK delegate". Through `zoo bench`'s progress bars
they are noise; what matters of them (why a conversion failed) is in the exception raised.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block (Python's own stderr is flushed first)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
