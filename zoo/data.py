"""Image-folder datasets: `train/<class>/*` and `test/<class>/*`, as Keras' image_dataset_from_directory reads them.

Files are listed and checked up front, so a stray `.DS_Store` or a non-image is skipped and
counted before training starts rather than crashing TensorFlow's decoder mid-epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Split:
    """The image files of one split and the class index of each."""

    files: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Dataset:
    """A train/test pair over the same classes; `skipped` counts files that are not images."""

    root: Path
    class_names: tuple[str, ...]
    train: Split
    test: Split
    skipped: int = 0


def _is_image(path: Path) -> bool:
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.name.startswith(".")
        and path.is_file()
        and path.stat().st_size > 0
    )


def _class_folders(split_dir: Path) -> dict[str, Path]:
    folders = {p.name: p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if not folders:
        raise ZooError(f"{split_dir} has no class folders; put images in {split_dir}/<class>/")
    return folders


def load_dataset(root: str | Path) -> Dataset:
    """List a dataset folder, or raise a ZooError that says what is wrong with it."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ZooError(f"--data {root}: no such folder; give a folder with train/ and test/ inside")
    for name in SPLITS:
        if not (root / name).is_dir():
            raise ZooError(f"--data {root} has no {name}/ folder; lay it out as {name}/<class>/*.jpg")
    train_classes, test_classes = (_class_folders(root / name) for name in SPLITS)
    if set(train_classes) != set(test_classes):
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise ZooError(
            f"--data {root}: train/ and test/ classes differ (only in train: {only_train or '-'}; "
            f"only in test: {only_test or '-'}); give both splits the same class folders"
        )
    class_names = tuple(sorted(train_classes))
    splits, skipped = [], 0
    for folders in (train_classes, test_classes):
        files, labels = [], []
        for label, name in enumerate(class_names):
            entries = sorted(p for p in folders[name].iterdir() if not p.is_dir())
            images = [p for p in entries if _is_image(p)]
            skipped += len(entries) - len(images)
            if not images:
                raise ZooError(f"{folders[name]} has no images; add some or remove the folder")
            files += [str(p) for p in images]
            labels += [label] * len(images)
        splits.append(Split(tuple(files), tuple(labels)))
    return Dataset(root, class_names, splits[0], splits[1], skipped)


def image_batches(files: tuple[str, ...], size: int, batch_size: int):
    """A tf.data pipeline of float32 0..255 RGB images resized to size×size, in file order."""
    import tensorflow as tf

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return tf.image.resize(tf.cast(image, tf.float32), (size, size))

    return (
        tf.data.Dataset.from_tensor_slices(list(files))
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
