"""Image files into RGB pixels, and the up-front check that a file will decode.

Training and the check share one decoder, `decode`, so a file that passes the check cannot
crash an epoch. TensorFlow decodes JPEG and PNG (16-bit too, scaled to 8-bit); every other
format Pillow reads goes through Pillow: GIF and WebP (Pillow decodes only the first frame, where
TensorFlow would hold every frame of an animation in memory), BMP (whose palette files
TensorFlow decodes into the wrong colours), a TIFF named .jpg. Why decode in the check rather
than something cheaper: Pillow's `verify()` passes truncated JPEGs, and Pillow's decoder passes
PNGs cut inside their last chunk; TensorFlow rejects both mid-epoch.

libjpeg, inside TensorFlow, prints its complaints about a damaged JPEG straight to file
descriptor 2, whatever TensorFlow's log level, on every decode of it: above the bench's progress,
on every pass over the data. So a JPEG it would complain about is skipped. Its segments are walked
first: stray bytes between them, or data cut short, are found without decoding. Damage inside
the compressed data shows only while decoding, so the check captures fd 2 as it decodes; a JPEG
that made libjpeg complain is skipped too, and nothing reaches the terminal.

The check reads a file's header before the file: a huge file that is no image, or an image
file over MAX_FILE_BYTES, is refused without being read. Verdicts are cached under the zoo
cache, keyed by each file's path, size, mtime and whether it can be read, so a rerun decodes only
new or changed files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from zoo import atomic, quiet
from zoo.cache import cache_dir
from zoo.progress import Progress, no_progress

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
JPEG_SIGNATURE = b"\xff\xd8\xff"
#: File signatures TensorFlow's own decoder gets right.
TF_SIGNATURES = (JPEG_SIGNATURE, b"\x89PNG")
#: How a file that is meant to be an image starts, even one cut short (a BMP: see `_starts_like_an_image`).
IMAGE_SIGNATURES = (*TF_SIGNATURES, b"GIF8")
#: The sizes a BMP's second header (its size at bytes 14..18) comes in, by version.
BMP_HEADER_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)
#: Bytes of a file's header read to tell what it holds.
HEADER_BYTES = 40
#: The brands in an ISO media file's `ftyp` box (named at bytes 4..8, its brands after) that name an image format.
_FTYP_BRANDS = {
    "AVIF": (b"avif", b"avis"),  # first: an AVIF lists the HEIF brand mif1 too
    "HEIC": (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"),
    "HEIF": (b"mif1", b"msf1"),
}
#: Larger files are refused unread: no photo is this big, and decoding reads the whole file.
MAX_FILE_BYTES = 256 * 2**20
#: Bump when the check changes, so cached verdicts are not trusted.
CHECK_VERSION = 8
#: Files the check decodes at once, in threads, between two looks at what libjpeg printed: a
#: complaint costs at most this many files decoded again, one at a time, to find whose it was.
BATCH = 256
#: Why a JPEG that decodes, but makes libjpeg complain, is skipped: damage inside its compressed
#: data (`Corrupt JPEG data: premature end of data segment`, `... extraneous bytes before marker 0xd9`).
CORRUPT_DATA = "damaged JPEG (corrupt compressed data)"
#: Why a symlinked folder inside a class folder (or a folder given to `zoo predict`) is left out:
#: it is not followed, as in Keras, and a link to a folder above it would never end.
LINKED_FOLDER = "linked folder (not followed)"
#: How TensorFlow's own log lines start (`W0000 00:00:1795580808.736466   17851 file.cc:412] `);
#: the other lines native code prints while images decode are the decoders' complaints.
_TF_LOG_LINE = re.compile(rb"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")


def _pil_pixels(contents):
    """HxWx3 uint8 RGB from any format Pillow reads (palette, 1-bit, CMYK and alpha included).
    Pillow's warning on a large image is not let through: the check has judged its size already,
    and the warning would print over the bench's progress on every pass."""
    import numpy as np
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(contents.numpy())) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode(contents):
    """A file's bytes (string tensor) → HxWx3 uint8 RGB tensor; works eagerly and in tf.data."""
    import tensorflow as tf

    native = tf.reduce_any([tf.strings.substr(contents, 0, len(signature)) == signature for signature in TF_SIGNATURES])
    image = tf.cond(
        native,
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
        lambda: tf.py_function(_pil_pixels, [contents], tf.uint8),
    )
    image.set_shape([None, None, 3])
    return image


#: A JPEG's marker that ends its entropy-coded data: 0xFF, then neither a stuffed 0x00, a restart
#: marker (which stands inside the data) nor another 0xFF (fill before the marker).
_MARKER_AFTER_DATA = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_damage(contents: bytes) -> str:
    """Why TensorFlow's JPEG decoder (libjpeg) would fail on or complain about this JPEG, as far
    as its segments show ("" when they are whole): its data ends before the end marker
    (`Premature end of JPEG data`), or stray bytes stand between two segments (`Corrupt JPEG
    data: N extraneous bytes before marker`, which libjpeg prints itself, past TensorFlow's log
    settings, on every decode). Damage inside the compressed data shows only when decoding."""
    at = 2  # after the start-of-image marker
    while at + 2 <= len(contents):
        if contents[at] != 0xFF:
            return "damaged JPEG (stray bytes between its segments)"
        while at + 2 < len(contents) and contents[at + 1] == 0xFF:  # fill bytes before a marker
            at += 1
        marker = contents[at + 1]
        if marker == 0xD9:  # end of image
            return ""
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # segments without a length
            at += 2
            continue
        at += 2 + int.from_bytes(contents[at + 2 : at + 4], "big")
        if marker == 0xDA:  # start of scan: its compressed data runs to the next marker
            end = _MARKER_AFTER_DATA.search(contents, at)
            at = end.start() if end else len(contents)
    return "truncated or corrupt"


def _starts_like_an_image(start: bytes) -> bool:
    """Whether a file Pillow cannot open starts as a JPEG, PNG, GIF, BMP or WebP does, so is one cut short
    or damaged. A BMP's signature is two letters, `BM`, that a text file may start with too: a BMP's
    second header must also have a size one of its versions has, where the file reaches it."""
    if start.startswith(b"BM"):
        size = start[14:18]
        return len(size) < 4 or int.from_bytes(size, "little") in BMP_HEADER_SIZES
    if _is_webp(start):
        from PIL import features

        return bool(features.check("webp"))  # else it is a format this Pillow cannot decode
    return start.startswith(IMAGE_SIGNATURES)


def _is_webp(start: bytes) -> bool:
    return start.startswith(b"RIFF") and start[8:12] == b"WEBP"


def _other_format(start: bytes) -> str:
    """The image or document format a file's header shows that is none of JPEG, PNG, GIF and BMP
    ("" when it shows none): a photo saved as HEIC by a phone and renamed .jpg is not "not an image"."""
    if start[4:8] == b"ftyp":
        brands = start[8:HEADER_BYTES]  # the major brand, a version, the compatible brands
        for name, known in _FTYP_BRANDS.items():
            if any(brand in brands for brand in known):
                return name
    if _is_webp(start):
        return "WebP"
    if start.startswith((b"II*\0", b"MM\0*")):
        return "TIFF"
    if start.startswith((b"\xff\x0a", b"\0\0\0\x0cJXL ")):
        return "JPEG XL"
    if start.startswith(b"%PDF"):
        return "PDF"
    return ""


def problem(path: Path) -> str:
    """Why `path` cannot be trained on ("" when it can), as a short reason that groups well."""
    from PIL import Image

    with warnings.catch_warnings():  # a large image is judged here, not warned of on the terminal
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _problem(path, _decode_problem_alone)


def _decode_problem(contents: bytes) -> str:
    """Why decoding these contents fails ("" when it does not)."""
    try:
        decode(contents)
    except Exception:  # TensorFlow and Pillow raise many types for a bad file
        return "truncated or corrupt"
    return ""


def _decode_problem_alone(contents: bytes) -> str:
    """`_decode_problem`, or CORRUPT_DATA where the decoder succeeds but libjpeg complains. What it
    prints is read from fd 2, the whole process's: no other decode may run meanwhile."""
    with tempfile.TemporaryFile() as said:
        with _capturing(said):
            reason = _decode_problem(contents)
        complained = _complained(said)
    return reason or (CORRUPT_DATA if complained else "")


def _problem(path: Path, decode_problem: Callable[[bytes], str] = _decode_problem) -> str:
    """`problem(path)`, its contents decoded by `decode_problem`: by default without watching what
    the decoder prints, as `check_files` decodes many files at once and watches them together."""
    from PIL import Image

    if path.name.startswith("."):
        return "hidden file"
    if path.is_symlink() and path.is_dir():
        return LINKED_FOLDER
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image file type"
    if not path.is_file():
        return "broken link" if path.is_symlink() else "not a file"
    try:
        with open(path, "rb") as handle:
            start = handle.read(HEADER_BYTES)
            if not start:
                return "empty file"
            handle.seek(0)
            try:
                with Image.open(handle):  # reads the header only
                    pass
            except Image.DecompressionBombError:
                return "too large"
            except Exception:  # Pillow raises several types; a file cut inside its header still starts like an image
                if _starts_like_an_image(start):
                    return "truncated or corrupt"
                other = _other_format(start)
                return f"{other} file zoo cannot decode: convert it to JPEG or PNG" if other else "not an image"
            if os.fstat(handle.fileno()).st_size > MAX_FILE_BYTES:
                return "too large"
            handle.seek(0)
            contents = handle.read()
    except OSError:
        return "unreadable"
    if contents.startswith(JPEG_SIGNATURE) and (damage := _jpeg_damage(contents)):
        return damage  # before decoding: TensorFlow's decoder would print its complaint
    return decode_problem(contents)


def _cache_file(root: Path) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode(errors="surrogateescape")).hexdigest()[:20]
    return cache_dir("scans") / f"v{CHECK_VERSION}-{key}.json"


def _stamp(path: Path) -> list[int]:
    """What a cached verdict holds for: the file's size, mtime and whether it can be read (chmod
    changes no mtime, and a file made readable, or unreadable, since needs a new verdict)."""
    try:
        stat = path.stat()
    except OSError:  # a broken link: stamp the link itself
        stat = path.lstat()
    return [stat.st_size, stat.st_mtime_ns, int(os.access(path, os.R_OK))]


def _read_cache(cache: Path) -> dict:
    """The cached verdicts; a damaged cache (unreadable, not JSON, not a dict) is an empty one."""
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def _write_cache(cache: Path, entries: dict) -> None:
    """Replace the cache atomically; a cache that cannot be written only costs a rescan."""
    with contextlib.suppress(OSError):
        atomic.write_text(cache, json.dumps(entries))


def check_files(root: Path, files: list[Path], progress: Progress = no_progress) -> dict[Path, str]:
    """`problem()` of each file under `root`, decoding only files that changed since the last check."""
    from PIL import Image

    cache = _cache_file(root)
    cached = _read_cache(cache)
    keys = {path: path.relative_to(root).as_posix() for path in files}
    entries = {}  # relative path → [*stamp, reason]
    todo = []
    for path, key in keys.items():
        stamp = _stamp(path)
        entry = cached.get(key)
        if isinstance(entry, list) and entry[:-1] == stamp and isinstance(entry[-1], str):
            entries[key] = cached[key]
        else:
            entries[key] = stamp
            todo.append(path)
    if todo:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                _check(todo, progress, lambda path, reason: entries[keys[path]].append(reason))
        finally:  # on Ctrl-C too: keep the verdicts reached so far
            _write_cache(cache, {key: entry for key, entry in entries.items() if isinstance(entry[-1], str)})
    return {path: entries[key][-1] for path, key in keys.items()}


def _check(files: list[Path], progress: Progress, verdict: Callable[[Path, str], None]) -> None:
    """verdict(file, problem(file)) for each file, decoding several at once with fd 2 captured,
    BATCH files at a time. A file that passes once something was printed in its batch may be the
    one libjpeg complained about: if it did complain, each such file is checked again, alone."""
    for start in range(0, len(files), BATCH):
        batch, doubtful = files[start : start + BATCH], []
        with tempfile.TemporaryFile() as said:
            with _capturing(said):
                pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))
                try:
                    for done, (path, reason) in enumerate(zip(batch, pool.map(_problem, batch)), start + 1):
                        if reason or not os.fstat(said.fileno()).st_size:  # no decode has printed yet
                            verdict(path, reason)
                        else:
                            doubtful.append(path)
                        progress("checking images", done, len(files))
                finally:  # on Ctrl-C too: stop at once (the decodes under way print into `said`)
                    pool.shutdown(cancel_futures=True)
            complained = _complained(said)
        for path in doubtful:
            verdict(path, problem(path) if complained else "")


def _capturing(said: BinaryIO) -> contextlib.AbstractContextManager[None]:
    """`quiet.native_stderr(said)`, TensorFlow imported first: its import prints notices of its own."""
    import tensorflow  # noqa: F401

    return quiet.native_stderr(said)


def _complained(said: BinaryIO) -> bool:
    """Whether a decoder (libjpeg) complained in what native code printed into `said`. TensorFlow's
    own log lines there, printed only when its log level lets them through (--debug), are passed on."""
    said.seek(0)
    complained = False
    for line in said.read().splitlines(keepends=True):
        if _TF_LOG_LINE.match(line):
            sys.stderr.write(line.decode(errors="replace"))
        elif line.strip():
            complained = True
    return complained
