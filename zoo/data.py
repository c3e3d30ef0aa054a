"""Image-folder datasets: `train/<class>/*` and `test/<class>/*`, as Keras' image_dataset_from_directory reads them.

A folder laid out wrongly, or one that cannot be read, is a one-line ZooError before anything
runs. As in Keras, a class's images may sit in subfolders of its folder (hidden ones aside). Every file is checked
up front (see zoo.images), so a stray `.DS_Store`, an empty or truncated download is skipped
and counted, rather than crashing TensorFlow's decoder mid-epoch.
"""

from __future__ import annotations

import atexit
import difflib
import hashlib
import os
import shlex
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.cache import cache_dir
from zoo.errors import ZooError
from zoo.features import files_fingerprint
from zoo.images import check_files, decode
from zoo.progress import Progress, no_progress

SPLITS = ("train", "test")
#: Why a file lying in train/ or test/ beside the class folders is left out: it has no class.
NOT_IN_A_CLASS = "not in a class folder"


@dataclass(frozen=True)
class Split:
    """The image files of one split and the class index of each."""

    files: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of the dataset, and why (a short reason shared by files alike)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Dataset:
    """A train/test pair over the same classes, and the files that were left out."""

    root: Path
    class_names: tuple[str, ...]
    train: Split
    test: Split
    skipped: tuple[SkippedFile, ...] = ()
    #: How many of the images sit in subfolders of their class folder.
    nested: int = 0


def _unreadable(exc: OSError) -> ZooError:
    return ZooError(
        f"cannot read {exc.filename} ({exc.strerror or exc}); fix its permissions "
        f"(chmod -R u+rX {shlex.quote(str(exc.filename))}) or move it out of the dataset"
    )


def _class_folders(split_dir: Path) -> tuple[dict[str, Path], list[Path]]:
    """Class name → folder (symlinks followed), and the files lying loose beside them, which belong
    to no class; hidden folders and files (.ipynb_checkpoints, .DS_Store) are neither.
    A broken link is refused: it is most likely a class folder whose target is gone (an unmounted
    drive), which would otherwise drop out of the classes unsaid."""
    try:
        entries = sorted(p for p in split_dir.iterdir() if not p.name.startswith("."))
        folders = {p.name: p for p in entries if p.is_dir()}
    except OSError as exc:
        raise _unreadable(exc) from None
    for path in entries:
        if path.is_symlink() and not path.exists():
            raise ZooError(f"{path} is a broken link (to {os.readlink(path)}); fix it, or remove it from the dataset")
    if not folders:
        raise ZooError(f"{split_dir} has no class folders; put images in {split_dir}/<class>/")
    return folders, [path for path in entries if path.name not in folders]


def _check_layout(root: Path) -> tuple[dict[str, Path], dict[str, Path], list[Path]]:
    """The class folders of train/ and test/, and the files lying loose beside them."""
    if not root.exists():
        raise ZooError(f"--data {root}: no such folder; give a folder with train/ and test/ inside")
    if not root.is_dir():
        raise ZooError(f"--data {root} is a file; give a folder with train/ and test/ inside")
    for name in SPLITS:
        if not (root / name).is_dir():
            raise ZooError(f"--data {root} has no {name}/ folder; lay it out as {name}/<class>/<image>")
    (train, loose_train), (test, loose_test) = (_class_folders(root / name) for name in SPLITS)
    if set(train) != set(test):
        problems = [f"test/ has no {name!r}" for name in sorted(set(train) - set(test))]
        for name in sorted(set(test) - set(train)):
            problems.append(f"train/ has no {name!r}" + _close_name(name, train))
        raise ZooError(
            f"--data {root}: train/ and test/ have different classes: {'; '.join(problems)}; "
            "give both the same class folders"
        )
    for name in sorted(train):
        # labels.txt, which an export writes, holds a class a line; a tab or an escape breaks a table's row
        if name.splitlines() != [name] or has_control_character(name):
            raise ZooError(
                f"--data {root}: class folder {name!r} has a line break, tab or other control character in its "
                "name; rename it in train/ and test/"
            )
    by_trimmed: dict[str, list[str]] = {}
    for name in sorted(train):  # they print alike in every table, their classes told apart by nothing seen
        by_trimmed.setdefault(name.strip(), []).append(name)
    for alike in by_trimmed.values():
        if len(alike) > 1:
            raise ZooError(
                f"--data {root}: class folders {alike[0]!r} and {alike[1]!r} differ only in spaces at the start "
                "or end of their names; rename one of them in train/ and test/"
            )
    if len(train) < 2:
        raise ZooError(
            f"--data {root} has one class, {next(iter(train))!r}; a classifier needs two or more "
            "(it would score 100 %): add class folders to train/ and test/"
        )
    return train, test, loose_train + loose_test


def _close_name(name: str, names: Iterable[str]) -> str:
    """A hint at the class in `names` that `name` may have been meant as. A name that differs only in
    its Unicode normalization (é as one code point or as e and an accent, as macOS writes it) looks
    the same when printed, so that is said."""
    same = [other for other in names if unicodedata.normalize("NFC", other) == unicodedata.normalize("NFC", name)]
    if same:
        return f" (it is {same[0]!r} with its accents encoded differently, NFC and NFD: rename one of the two)"
    close = difflib.get_close_matches(name, names, n=1)
    return f" (is it {close[0]!r}?)" if close else ""


def folder_files(folder: Path) -> list[Path]:
    """Every file in a (class) folder and its subfolders, as Keras reads them, hidden subfolders left
    out; and its symlinked subfolders, not followed (a link to a parent would never end) but listed,
    so the image check says them (zoo.images.LINKED_FOLDER) rather than their images going unsaid."""

    def fail(exc: OSError):
        raise _unreadable(exc)

    found = []
    for parent, subfolders, files in os.walk(folder, onerror=fail):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [Path(parent) / name for name in files]
        found += [Path(parent) / name for name in subfolders if (Path(parent) / name).is_symlink()]
    return sorted(found)


def load_dataset(root: str | Path, progress: Progress = no_progress) -> Dataset:
    """List and check a dataset folder, or raise a ZooError that says what is wrong with it."""
    root = Path(root).expanduser()
    train_folders, test_folders, loose = _check_layout(root)
    class_names = tuple(sorted(train_folders))
    listing = {
        folders[name]: folder_files(folders[name]) for folders in (train_folders, test_folders) for name in class_names
    }
    verdicts = check_files(root, [path for files in listing.values() for path in files], progress)
    splits, nested = [], 0
    for folders in (train_folders, test_folders):
        files, labels = [], []
        for label, name in enumerate(class_names):
            images = [str(path) for path in listing[folders[name]] if not verdicts[path]]
            if not images:
                raise ZooError(
                    f"{folders[name]} has no usable images{_skip_note(listing[folders[name]], verdicts)}; "
                    "add some, or remove this class from both train/ and test/"
                )
            files += images
            nested += sum(Path(image).parent != folders[name] for image in images)
            labels += [label] * len(images)
        splits.append(Split(tuple(files), tuple(labels)))
    skipped = tuple(SkippedFile(str(path), NOT_IN_A_CLASS) for path in loose) + tuple(
        SkippedFile(str(path), reason) for path, reason in verdicts.items() if reason
    )
    return Dataset(root, class_names, splits[0], splits[1], skipped, nested)


def _skip_note(files: list[Path], verdicts: dict[Path, str]) -> str:
    reasons = Counter(verdicts[path] for path in files)
    return f" ({', '.join(f'{count} {reason}' for reason, count in reasons.items())})" if reasons else ""


def skipped_summary(dataset: Dataset) -> str:
    """One line for the user: how many of the dataset's files were skipped, by reason, with examples."""
    return skipped_line((str(Path(item.path).relative_to(dataset.root)), item.reason) for item in dataset.skipped)


def shown_path(path: str) -> str:
    """A file's path as the one-line skipped note and `zoo predict`'s table show it: as it is, or
    escaped as Python writes a string ('a\\nb.jpg') when it holds a line break, a tab or another
    control character, which would break the line or hide what the name is, or bytes that are not
    UTF-8 ('caf\\udce9.jpg'), which a UTF-8 terminal cannot be sent."""
    undecoded = any(unicodedata.category(char) == "Cs" for char in path)
    return repr(path) if undecoded or has_control_character(path) else path


def has_control_character(text: str) -> bool:
    """Whether `text` holds a line break, a tab or another control character (an escape)."""
    return any(unicodedata.category(char) == "Cc" for char in text)


def skipped_line(skipped: Iterable[tuple[str, str]], examples: int = 2) -> str:
    """One line: how many (path, reason) files were skipped, grouped by reason, with examples."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(shown_path(path))
    groups = []
    for reason, paths in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(paths[:examples]) + (", ..." if len(paths) > examples else "")
        groups.append(f"{len(paths)} {reason} ({shown})")
    count = sum(len(paths) for paths in by_reason.values())
    return f"skipped {count} file{'s' * (count != 1)}: {'; '.join(groups)}"


def image_batches(
    files: tuple[str, ...], size: int, batch_size: int, interpolation: str = "bilinear", dtype: str = "float32"
):
    """A tf.data pipeline of RGB images resized to size×size, in file order, as `dtype` (float32
    for a model, uint8 to keep); no batch is larger than `files`.

    Pixels are rounded to whole values in 0..255, as a resized uint8 image holds them, so these
    batches and the decoded images `decoded_batches` shares are the same numbers.
    """
    import tensorflow as tf

    batch_size = max(1, min(batch_size, len(files)))

    def load(path):
        image = tf.cast(decode(tf.io.read_file(path)), tf.float32)
        resized = tf.image.resize(image, (size, size), method=interpolation)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), dtype)

    return (
        # as bytes: a name that is not UTF-8 (Latin-1 from an old camera, say) is a valid path too
        tf.data.Dataset.from_tensor_slices([os.fsencode(file) for file in files])
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


#: Images decoded by `decoded_batches` in this process (each file once per size, ideally).
decoded_count = 0

#: Decoded splits kept in memory, least recently used first: key → the uint8 batches decoding
#: gave, as TensorFlow allocated them (copying them into one array touched every page of a new
#: allocation for the first time, which costs more than the copy).
_in_memory: OrderedDict[str, list[np.ndarray]] = OrderedDict()


def decode_budget() -> int:
    """Bytes of decoded images kept in memory (`$ZOO_DECODE_BUDGET_MB`, default 512); a split
    larger than that is kept on disk instead."""
    try:
        return int(float(os.environ.get("ZOO_DECODE_BUDGET_MB", "512")) * 2**20)
    except (ValueError, OverflowError):  # not a number, or inf
        raise ZooError("ZOO_DECODE_BUDGET_MB must be a number of megabytes, e.g. 512") from None


def _decoded_key(files: tuple[str, ...], size: int, interpolation: str) -> str:
    return hashlib.sha256(f"{files_fingerprint(files)}:{size}:{interpolation}".encode()).hexdigest()[:24]


def _on_disk(key: str) -> Path:
    """This process's own file of decoded images: one left by a killed run is never read, and
    goes with the next bench or `zoo cache clear` (zoo.features.partials)."""
    return cache_dir("decoded") / f"{key}.{os.getpid()}.npy"


def _read_rows(path: Path, count: int, shape: tuple[int, ...], batch_size: int) -> Iterator[np.ndarray]:
    """Batches of rows from a .npy file by plain reads, not a memory map, so what was read does
    not stay in this process's resident memory."""
    row_bytes = int(np.prod(shape))
    with open(path, "rb") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        for start in range(0, count, batch_size):
            rows = min(batch_size, count - start)
            data = np.frombuffer(handle.read(rows * row_bytes), dtype=np.uint8)
            yield data.reshape(rows, *shape)


def keep_decoded(sizes: Collection[int]) -> None:
    """Let go of the decoded images held in memory of every size not in `sizes`: between
    backbones the bench keeps only what a later one will read, so memory does not grow."""
    for key in [key for key, batches in _in_memory.items() if batches[0].shape[1] not in sizes]:
        del _in_memory[key]


def decoded_batches(
    files: tuple[str, ...],
    size: int,
    batch_size: int,
    interpolation: str = "bilinear",
    progress: Progress = no_progress,
) -> Iterator[np.ndarray]:
    """uint8 batches of the files decoded and resized to size×size, in file order; `progress`
    hears of the decoding, the step `decoding images`, when there is any.

    Each file is decoded once per (size, interpolation) in a process, the whole split before its
    first batch is given (decoding beside the forward passes, on the same cores, slowed them by
    more than decoding costs): into memory within `decode_budget()`, else into a file under the
    cache's `decoded/` folder, removed when the process ends. Every pass (the first, the mirror
    view, the next backbone of the same input size) reads it from there.
    """
    files = tuple(files)
    key = _decoded_key(files, size, interpolation)
    if key not in _in_memory and not _on_disk(key).is_file():
        _decode(files, size, batch_size, interpolation, key, progress)
    if key in _in_memory:
        _in_memory.move_to_end(key)
        batches = _in_memory[key]
        if len(batches[0]) != min(batch_size, len(files)):  # decoded in batches of another size
            batches = np.array_split(np.concatenate(batches), range(batch_size, len(files), batch_size))
        yield from batches
    else:
        yield from _read_rows(_on_disk(key), len(files), (size, size, 3), batch_size)


def _decode(
    files: tuple[str, ...], size: int, batch_size: int, interpolation: str, key: str, progress: Progress
) -> None:
    """Decode and resize `files`, kept under `key`: in memory (the least recently used sizes let
    go to make room) when they fit the budget, else on disk."""
    shape = (len(files), size, size, 3)
    nbytes, budget = int(np.prod(shape)), decode_budget()
    if nbytes > budget:
        _decode_to_disk(files, size, batch_size, interpolation, _on_disk(key), progress)
        return
    while _in_memory and sum(b.nbytes for batches in _in_memory.values() for b in batches) + nbytes > budget:
        _in_memory.popitem(last=False)
    _in_memory[key] = list(_decoding(files, size, batch_size, interpolation, progress))


def _decoding(
    files: tuple[str, ...], size: int, batch_size: int, interpolation: str, progress: Progress
) -> Iterator[np.ndarray]:
    """The files decoded and resized, as uint8 batches, each counted in `decoded_count` and
    reported to `progress`."""
    global decoded_count
    done = 0
    for batch in image_batches(files, size, batch_size, interpolation, "uint8"):
        rows = np.asarray(batch)
        decoded_count += len(rows)
        done += len(rows)
        progress("decoding images", done, len(files))
        yield rows


def _decode_to_disk(
    files: tuple[str, ...], size: int, batch_size: int, interpolation: str, path: Path, progress: Progress
) -> None:
    """Decode a split too large for memory into a .npy file by plain writes (not through a memory
    map, whose dirty pages would count in this process's resident memory until the whole split
    was written), removed when the process ends."""
    atexit.register(path.unlink, missing_ok=True)
    try:
        with open(path, "wb") as handle:
            header = {"descr": "|u1", "fortran_order": False, "shape": (len(files), size, size, 3)}
            np.lib.format.write_array_header_1_0(handle, header)  # the magic string too
            for rows in _decoding(files, size, batch_size, interpolation, progress):
                handle.write(rows.tobytes())
    except BaseException:  # half-written: not to be read by a later pass
        path.unlink(missing_ok=True)
        raise


def first_batch(files: tuple[str, ...], size: int, batch_size: int, interpolation: str = "bilinear") -> np.ndarray:
    """The first batch `decoded_batches` gives, decoding no more files than it holds when the
    split is not decoded yet: a tf.data pipeline abandoned half-way can hang when it is freed."""
    files = tuple(files)
    key = _decoded_key(files, size, interpolation)
    if key in _in_memory or _on_disk(key).is_file():
        return next(iter(decoded_batches(files, size, batch_size, interpolation)))
    batches = image_batches(files[:batch_size], size, batch_size, interpolation, "uint8")
    return np.concatenate([np.asarray(batch) for batch in batches])


def labeled_batches(split: Split, size: int, batch_size: int, seed: int, interpolation: str = "bilinear"):
    """(images, labels) batches for end-to-end training: shuffled once globally by the seed,
    reshuffled locally every epoch, so no more than a few batches of decoded images are held."""
    import tensorflow as tf

    order = np.random.default_rng(seed).permutation(len(split))
    files = tuple(split.files[i] for i in order)
    labels = np.asarray(split.labels)[order]
    batch_size = max(1, min(batch_size, len(split)))
    images = image_batches(files, size, batch_size, interpolation).unbatch()
    pairs = tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(labels)))
    pairs = pairs.apply(tf.data.experimental.assert_cardinality(len(split)))  # lost by unbatch()
    return pairs.shuffle(4 * batch_size, seed=seed).batch(batch_size).prefetch(tf.data.AUTOTUNE)
