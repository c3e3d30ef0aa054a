"""Where zoo keeps what it can rebuild: converted weights, sample data, extracted features."""

from __future__ import annotations

import os
from pathlib import Path

from zoo.errors import ZooError


def env_folder(variable: str, default: Path) -> Path:
    """The folder environment variable `variable` names (`default` when unset or empty); a
    ZooError when it names something else, so a mistake is said rather than silently ignored."""
    value = os.environ.get(variable)
    path = Path(value).expanduser() if value else default
    if value and path.exists() and not path.is_dir():
        raise ZooError(f"{variable}={value} is a file, not a folder; point it at a folder, or unset it")
    above = next((parent for parent in path.parents if parent.exists()), None)  # a folder can be made there?
    if value and above is not None and not above.is_dir():
        raise ZooError(f"{variable}={value} is inside {above}, a file, not a folder; point it at a folder, or unset it")
    return path


def cache_dir(*parts: str, create: bool = True) -> Path:
    """A folder under `$ZOO_CACHE_DIR` (default `~/.cache/zoo`), created on first use unless
    `create` is False (for look-ups that must not write, such as `zoo list`)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo"
    path = env_folder("ZOO_CACHE_DIR", default).joinpath(*parts)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZooError(
                f"cannot create zoo's cache folder {path} ({exc.strerror or exc}); set ZOO_CACHE_DIR "
                "to a folder you can write"
            ) from None
    return path
