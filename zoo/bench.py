"""The bench: every backbone, the same data, the same protocol, one row of results each.

Feature extraction as the seed does it, with one saving: the base is frozen, so its output
never changes; it runs once over each split, and the head trains on those features.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from zoo import registry
from zoo.data import Dataset, image_batches
from zoo.errors import ZooError, one_line
from zoo.spec import BackboneSpec
from zoo.weights import MODES


@dataclass(frozen=True)
class BenchSettings:
    """How every backbone is trained and measured; defaults come from registry.toml."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    weights: str = "auto"

    @classmethod
    def from_registry(cls, **overrides) -> BenchSettings:
        given = {key: value for key, value in overrides.items() if value is not None}
        return cls(**{**registry.bench_defaults(), **given})

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ZooError(f"--batch-size {self.batch_size}: it must be 1 or more")
        if self.epochs < 0:
            raise ZooError(f"--epochs {self.epochs}: it must be 0 or more")
        if not self.learning_rate > 0:
            raise ZooError(f"--learning-rate {self.learning_rate}: it must be above 0")


Progress = Callable[[str, int, int], None]


def _no_progress(step: str, done: int, total: int) -> None:
    """The default progress callback: (step name, items done, items in all)."""


def _extract(extractor, files, size, batch_size, step: str, progress: Progress) -> np.ndarray:
    """Run the frozen base once over `files`, batch by batch."""
    chunks, done = [], 0
    for batch in image_batches(files, size, batch_size):
        chunks.append(np.asarray(extractor(batch, training=False)))
        done += len(chunks[-1])
        progress(step, done, len(files))
    return np.concatenate(chunks)


def _images_per_sec(extractor, batch, repeats: int = 3) -> float:
    """Forward passes per second over one batch, after a warm-up pass."""
    extractor(batch, training=False)
    start = time.perf_counter()
    for _ in range(repeats):
        extractor(batch, training=False)
    return repeats * len(batch) / (time.perf_counter() - start)


def _train_head(train_x, train_y, num_classes, settings: BenchSettings, progress: Progress):
    import keras

    from zoo.models import classification_head

    keras.utils.set_random_seed(settings.seed)
    head = classification_head(train_x.shape[1], num_classes)
    head.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    report = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: progress("training head", epoch + 1, settings.epochs)
    )
    head.fit(
        train_x,
        keras.utils.to_categorical(train_y, num_classes),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[report],
    )
    return head


def _top_k(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def bench_backbone(
    spec: BackboneSpec,
    dataset: Dataset,
    settings: BenchSettings,
    progress: Progress = _no_progress,
) -> dict:
    """Train a head on `spec`'s frozen features and measure it; failures become a failed row."""
    row = {
        "backbone": spec.name,
        "family": spec.family,
        "source": spec.source,
        "plugin": spec.plugin,
        "params": spec.params,
        "input_size": spec.input_size,
        "weights": "",
        "weights_note": "",
        "status": "failed",
        "error": "",
        "top1": None,
        "top5": None,
        "images_per_sec": None,
        "extract_seconds": None,
        "train_seconds": None,
        **asdict(settings),
    }
    try:
        row.update(_measure(spec, dataset, settings, progress, row))
        row["status"] = "ok"
    except Exception as exc:  # one backbone failing must not stop the bench
        row["error"] = one_line(exc)
    return row


def _measure(spec, dataset, settings, progress: Progress, row: dict) -> dict:
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    weights = resolve(spec, settings.weights, progress)
    row.update(weights=weights.label, weights_note=weights.note)
    extractor = feature_extractor(spec, weights)
    size, batch_size = spec.input_size, settings.batch_size

    start = time.perf_counter()
    train_x = _extract(extractor, dataset.train.files, size, batch_size, "train features", progress)
    test_x = _extract(extractor, dataset.test.files, size, batch_size, "test features", progress)
    extract_seconds = time.perf_counter() - start

    start = time.perf_counter()
    num_classes = len(dataset.class_names)
    head = _train_head(train_x, np.array(dataset.train.labels), num_classes, settings, progress)
    train_seconds = time.perf_counter() - start

    probabilities = np.asarray(head(test_x, training=False))
    test_y = np.array(dataset.test.labels)
    first_batch = next(iter(image_batches(dataset.test.files, size, batch_size)))
    return {
        "top1": _top_k(probabilities, test_y, 1),
        "top5": _top_k(probabilities, test_y, min(5, num_classes)),
        "images_per_sec": _images_per_sec(extractor, first_batch),
        "extract_seconds": extract_seconds,
        "train_seconds": train_seconds,
    }


def validate_weights_mode(mode: str, count: int) -> None:
    """A weights file path only makes sense for one backbone."""
    if mode not in MODES and count != 1:
        raise ZooError(f"--weights {mode}: a file path can be given for one backbone only")
