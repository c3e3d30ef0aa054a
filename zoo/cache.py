"""Where zoo keeps what it can rebuild: converted weights, sample data, extracted features."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str, create: bool = True) -> Path:
    """A folder under `$ZOO_CACHE_DIR` (default `~/.cache/zoo`), created on first use unless
    `create` is False (for look-ups that must not write, such as `zoo list`)."""
    root = os.environ.get("ZOO_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo"
    path = Path(root).expanduser().joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
