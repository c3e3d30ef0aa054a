"""The feature cache: a frozen base's pooled features over one split, computed once, kept on disk.

A frozen base maps the same image to the same features every epoch and every bench, so zoo runs
it once per split and streams the result, batch by batch, into a `.npy` file under
`cache_dir("features")`. The key names everything the features depend on (backbone, source,
weights, preprocessing, image size, and each file's path, size and mtime), so a second bench of
the same backbone and data reads the array back instead of running the base again.

Nothing here imports TensorFlow: `zoo cache list|clear` stays instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from zoo import atomic
from zoo.cache import cache_dir
from zoo.progress import Progress, no_progress

#: Bump when the layout or the meaning of cached arrays changes: old entries stop matching.
FORMAT = 1


def files_fingerprint(files: Iterable[str]) -> str:
    """A cheap hash of a list of files: path, size and mtime of each, in order."""
    digest = hashlib.sha256()
    for name in files:
        stat = os.stat(name)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def weights_identity(path: str | None, seed: int) -> str:
    """What the base's weights are: a file by path, size and mtime, or random init from `seed`."""
    if path is None:
        return f"random:seed={seed}"
    stat = os.stat(path)
    return f"file:{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}"


def feature_key(identity: dict, files: Iterable[str]) -> str:
    """The cache key of one split's features: the backbone's identity plus the files' fingerprint."""
    parts = {"format": FORMAT, **identity, "files": files_fingerprint(files)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _paths(backbone: str, split: str, key: str) -> tuple[Path, Path]:
    stem = f"{backbone.replace(':', '_')}-{split}-{key}"
    folder = cache_dir("features")
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def load(backbone: str, split: str, key: str) -> np.ndarray | None:
    """The cached features for this key, memory-mapped read-only, or None when there are none."""
    array_path, meta_path = _paths(backbone, split, key)
    if not (array_path.is_file() and meta_path.is_file()):
        return None
    try:
        return np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):  # a damaged entry is a miss; the next store replaces it
        return None


def extract(
    batches: Iterable,
    forward: Callable,
    count: int,
    dim: int,
    destination: Path,
    progress: Progress = no_progress,
    step: str = "features",
) -> np.ndarray:
    """Run `forward` over `batches` and stream the rows into a new .npy file at `destination`.

    Memory holds one batch at a time. The file appears only when complete (temp + rename), so an
    interrupted extraction never leaves a cache entry that looks valid.
    """
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(count, dim))
        done = 0
        for batch in batches:
            rows = np.asarray(forward(batch), dtype=np.float32)
            array[done : done + len(rows)] = rows
            done += len(rows)
            progress(step, done, count)
        if done != count:
            raise RuntimeError(f"extracted {done} feature rows, expected {count}")
        array.flush()
        del array
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return np.load(destination, mmap_mode="r")


def store(backbone: str, split: str, key: str, meta: dict, run: Callable[[Path], np.ndarray]) -> np.ndarray:
    """Extract into the cache entry for `key` with `run(destination)`, then record its meta data."""
    array_path, meta_path = _paths(backbone, split, key)
    features = run(array_path)
    record = {"backbone": backbone, "split": split, "key": key, "created": time.time(), **meta}
    record.update(count=int(features.shape[0]), dim=int(features.shape[1]))
    atomic.write_text(meta_path, json.dumps(record, indent=1))
    return features


def entries() -> list[dict]:
    """Every cache entry's meta data plus its size in bytes, newest first."""
    found = []
    for meta_path in cache_dir("features", create=False).glob("*.json"):
        array_path = meta_path.with_suffix(".npy")
        try:
            record = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        record["bytes"] = array_path.stat().st_size if array_path.is_file() else 0
        found.append(record)
    return sorted(found, key=lambda record: -record.get("created", 0))


def clear(backbone: str | None = None) -> tuple[int, int]:
    """Delete cached features (of one backbone, or everything); returns (files removed, bytes freed)."""
    folder = cache_dir("features")
    if backbone is None:
        doomed = [path for path in folder.iterdir() if path.is_file()]
    else:
        doomed = []
        for record in entries():
            if record.get("backbone") == backbone:
                array_path, meta_path = _paths(backbone, record["split"], record["key"])
                doomed += [array_path, meta_path]
    removed = freed = 0
    for path in doomed:
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
            removed += 1
    return removed, freed
