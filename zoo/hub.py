"""TF Hub's download protocol: a handle resolved to a local SavedModel, cached as tensorflow_hub does.

`hub.KerasLayer` is a Keras 2 (`tf_keras`) layer and cannot live in a Keras 3 model, and the
`tensorflow_hub` package depends on `tf-keras`, which pulls the full `tensorflow` package in
beside `tensorflow-cpu`. So zoo does not use it: it speaks the hub's small download protocol
itself (`<handle>?tf-hub-format=compressed` is a .tar.gz of the SavedModel; tfhub.dev and
Kaggle Models both serve it) and caches each model where `tensorflow_hub` would, in
`$TFHUB_CACHE_DIR/<sha1 of the handle>/`, so the two share one cache. The `hub` source kind
(zoo.sources.hub) builds the Keras model around it.

A handle is a tfhub.dev URL, a Kaggle Models URL, or a local SavedModel folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from zoo import download
from zoo.cache import cache_dir, env_folder
from zoo.errors import ZooError
from zoo.progress import Progress, no_progress

SAVED_MODEL_FILE = "saved_model.pb"


def _url(handle: str) -> str | None:
    """The handle as an http(s) URL, or None for a local path."""
    if handle.startswith(("kaggle.com/", "www.kaggle.com/")):
        return "https://" + handle
    return handle if handle.startswith(("http://", "https://")) else None


def _local(handle: str) -> Path:
    return Path(handle.removeprefix("file://")).expanduser()


def cache_root() -> Path:
    """`$TFHUB_CACHE_DIR` (shared with tensorflow_hub), else zoo's cache folder; not created
    here, so looking a model up never writes."""
    return env_folder("TFHUB_CACHE_DIR", cache_dir("tfhub_modules", create=False))


def cached_path(handle: str) -> Path:
    """Where the SavedModel of `handle` is cached, named as tensorflow_hub names it."""
    return cache_root() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def check_saved_model(path: Path, what: str) -> Path:
    """`path` if it is a SavedModel folder, else a ZooError naming `what` it was meant to be."""
    if not (path / SAVED_MODEL_FILE).is_file():
        raise ZooError(f"{what} {path} is not a SavedModel folder (no {SAVED_MODEL_FILE} in it)")
    return path


def locate(handle: str) -> tuple[Path | None, str]:
    """(local SavedModel or None, where it is or how it would be fetched): no network."""
    if _url(handle) is None:
        path = _local(handle)
        return (path, "local SavedModel") if (path / SAVED_MODEL_FILE).is_file() else (None, "missing")
    if (cached_path(handle) / SAVED_MODEL_FILE).is_file():
        return cached_path(handle), "hub cache"
    return None, "download"


def compressed_url(handle: str) -> str:
    """The URL of the handle's SavedModel as a .tar.gz, per the TF Hub hosting protocol ('' if local)."""
    url = _url(handle)
    if url is None:
        return ""
    if url.endswith((".tar.gz", ".tgz")):
        return url
    return url + ("&" if "?" in url else "?") + "tf-hub-format=compressed"


def _fetch(handle: str, progress: Progress) -> Path:
    """Download and unpack the handle's SavedModel; the cache folder appears whole or not at all."""
    final = cached_path(handle)
    archive = final.with_name(final.name + ".tar.gz")
    try:
        download.fetch(compressed_url(handle), archive, progress=progress)
    except download.DownloadError as exc:
        raise ZooError(
            f"cannot download TF Hub model {exc}; to fix: run `zoo weights fetch` on "
            f"a connected machine and copy its TFHUB_CACHE_DIR folder {final.name}/, "
            "give a SavedModel folder with --weights PATH, or bench the keras variant (--source keras)"
        ) from None
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        check_saved_model(staging, f"the archive of {handle} unpacks to")
        os.replace(staging, final)
    except (tarfile.TarError, OSError) as exc:
        raise ZooError(
            f"TF Hub archive of {handle} cannot be unpacked: {exc}; download it again, or give "
            "the SavedModel folder itself as the handle"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return final


def resolve(handle: str, progress: Progress = no_progress) -> tuple[Path, str]:
    """(local SavedModel folder, where it came from) for a handle, downloading when needed."""
    path, origin = locate(handle)
    if path is not None:
        return path, origin
    if _url(handle) is None:
        raise ZooError(
            f"TF Hub handle {handle} is neither a URL (tfhub.dev, kaggle.com/models) nor a SavedModel folder"
        )
    return _fetch(handle, progress), f"downloaded from {compressed_url(handle)}"
