"""Fetching one file over HTTP(S): bounded in time, visible, checked, then moved into place.

Not `keras.utils.get_file`, because it cannot do what offline-first use needs: it calls
`urlretrieve` without a timeout (a stalled server hangs the bench for ever), writes straight
to the final name (a killed transfer leaves a truncated file that later looks cached), draws
Keras' own progress bar rather than reporting to ours, and silently re-downloads over a cached
file whose hash differs. urllib (which honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY) and
hashlib do the work here in a few lines.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from zoo import config
from zoo.errors import ZooError
from zoo.progress import Progress, no_progress

CHUNK_BYTES = 1 << 16


class DownloadError(ZooError):
    """The transfer itself failed (offline, 404, stalled, cut short); nothing was saved."""


def timeout_seconds() -> float:
    """How long a download may wait on the server (setting weights.timeout_seconds)."""
    return config.get("weights.timeout_seconds")


def _reason(exc: BaseException) -> str:
    """Why a transfer failed, in a few words."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_seconds():g} s (setting weights.timeout_seconds, ZOO_DOWNLOAD_TIMEOUT)"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the transfer broke off after {len(exc.partial)} more bytes"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0]


def fetch(
    url: str,
    target: Path,
    check: Callable[[Path], None] | None = None,
    progress: Progress = no_progress,
) -> Path:
    """Download `url` to `target` through `target.part`; `check` vets the file before the move.

    The `.part` file is overwritten by the next attempt, so one left by a killed transfer
    never counts as cached. If the transfer or `check` fails, only the `.part` file is removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    step = f"downloading {target.name}"
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout_seconds()) as response:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                progress(step, done, total)
                with open(partial, "wb") as handle:
                    while chunk := response.read(CHUNK_BYTES):
                        handle.write(chunk)
                        done += len(chunk)
                        progress(step, done, total)
            if total and done != total:
                raise DownloadError(f"{url}: the transfer broke off at {done} of {total} bytes")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise DownloadError(f"{url}: {_reason(exc)}") from None
        if check is not None:
            check(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target
