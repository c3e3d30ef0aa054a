"""The bench: every backbone, the same data, the same protocol, one row of results each.

Phase 1 trains a new softmax head on the frozen base. The base's output never changes, so its
pooled features are computed once per split and cached on disk (zoo.features); the head then
trains on those arrays in a blink, and a second bench of the same backbone skips the base
entirely. With `--augment` every epoch shows the base new images, so phase 1 runs end to end.
Phase 2 (`--mode finetune`, the seed's notebook 05) unfreezes the top of the base and trains
the whole model on the images at a tenth of the learning rate.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from zoo import distributed, features, metrics, registry
from zoo.data import Dataset, Split, image_batches
from zoo.errors import ZooError, one_line
from zoo.progress import Progress, no_progress
from zoo.spec import BackboneSpec
from zoo.sweep import Shard, data_fingerprint
from zoo.weights import MODES as WEIGHTS_MODES

MODES = ("features", "finetune")
STRATEGIES = ("default", "mirrored", "multiworker")


@dataclass(frozen=True)
class BenchSettings:
    """How every backbone is trained and measured; the defaults of the fields registry.toml's
    [bench] table names (epochs, batch size, learning rate, seed, mirror) come from there.

    Every field but `cache` can change a result, so all of them go into the settings
    fingerprint that `--resume` compares.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    weights: str = "auto"
    mode: str = "features"
    finetune_epochs: int = 5
    unfreeze: int = 10
    augment: bool = False
    mirror: bool = True
    strategy: str = "default"
    latency_runs: int = 30
    throughput_batches: int = 3
    cache: bool = True

    @classmethod
    def from_registry(cls, **overrides) -> BenchSettings:
        given = {key: value for key, value in overrides.items() if value is not None}
        known = {field.name for field in fields(cls)}
        defaults = {key: value for key, value in registry.bench_defaults().items() if key in known}
        return cls(**{**defaults, **given})

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ZooError(f"--batch-size {self.batch_size}: it must be 1 or more")
        if self.epochs < 0:
            raise ZooError(f"--epochs {self.epochs}: it must be 0 or more")
        if self.finetune_epochs < 0:
            raise ZooError(f"--finetune-epochs {self.finetune_epochs}: it must be 0 or more")
        if not self.learning_rate > 0:
            raise ZooError(f"--learning-rate {self.learning_rate}: it must be above 0")
        if self.mode not in MODES:
            raise ZooError(f"--mode {self.mode}: use one of {', '.join(MODES)}")
        if self.strategy not in STRATEGIES:
            raise ZooError(f"--strategy {self.strategy}: use one of {', '.join(STRATEGIES)}")
        if self.unfreeze < 0:
            raise ZooError(f"--unfreeze {self.unfreeze}: it must be 0 or more")
        if self.latency_runs < 1 or self.throughput_batches < 1:
            raise ZooError("latency_runs and throughput_batches must be 1 or more")


def settings_fingerprint(spec: BackboneSpec, dataset: Dataset, settings: BenchSettings) -> str:
    """What a finished row was measured with: backbone, data files and settings (not `cache`)."""
    data = features.files_fingerprint(dataset.train.files + dataset.test.files)
    parts = {
        "backbone": spec.to_dict(),
        "classes": list(dataset.class_names),
        "data": data,
        "settings": {key: value for key, value in asdict(settings).items() if key != "cache"},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def augmentation():
    """The seed's augmentation, as layers that are active only while training."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(0.2),
            keras.layers.RandomZoom(0.2),
        ],
        name="augmentation",
    )


def _compile(model, learning_rate: float) -> None:
    """The seed's optimizer and loss (labels as class indices)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train_head(train_x, train_y, num_classes: int, settings: BenchSettings, callbacks=(), validation=None):
    """Phase 1 on cached features: the new softmax head, trained as the seed trains it.

    The one place the head's recipe lives; build it inside the strategy's scope.
    """
    from zoo.models import classification_head

    head = classification_head(train_x.shape[1], num_classes)
    _compile(head, settings.learning_rate)
    head.fit(
        np.asarray(train_x),
        np.asarray(train_y),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=list(callbacks),
        validation_data=validation,
    )
    return head


def _labeled_batches(split: Split, spec: BackboneSpec, batch_size: int, seed: int):
    """(images, labels) batches for end-to-end training: shuffled once globally by the seed,
    reshuffled locally every epoch, so no more than a few batches of decoded images are held."""
    import tensorflow as tf

    order = np.random.default_rng(seed).permutation(len(split))
    files = tuple(split.files[i] for i in order)
    labels = np.asarray(split.labels)[order]
    pairs = tf.data.Dataset.zip(
        (image_batches(files, spec.input_size, batch_size, spec.interpolation).unbatch(), tf.data.Dataset.from_tensor_slices(labels))
    )
    pairs = pairs.apply(tf.data.experimental.assert_cardinality(len(split)))  # lost by unbatch()
    return pairs.shuffle(4 * batch_size, seed=seed).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _epoch_progress(step: str, first_epoch: int, epochs: int, progress: Progress):
    import keras

    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: progress(step, epoch + 1 - first_epoch, epochs)
    )


def _predict(forward, files, spec: BackboneSpec, batch_size: int, progress: Progress) -> np.ndarray:
    """Class probabilities for every test image, batch by batch."""
    chunks, done = [], 0
    for batch in image_batches(files, spec.input_size, batch_size, spec.interpolation):
        chunks.append(np.asarray(forward(batch)))
        done += len(chunks[-1])
        progress("test predictions", done, len(files))
    return np.concatenate(chunks)


def _split_features(spec, split: Split, name: str, forward, identity: dict, settings, progress, strategy,
                    mirrored=False):
    """One split's features (of its mirror images if `mirrored`), from the cache when every
    worker has them there; (array, "hit"|"miss"|"off"). With several workers, each extracts its
    share of the files and the shares are gathered into the whole array on every worker."""
    total = len(split)
    name = f"{name}-mirrored" if mirrored else name

    def run(destination: Path):
        files = distributed.share(split.files, strategy)
        batches = image_batches(files, spec.input_size, settings.batch_size, spec.interpolation)
        if mirrored:
            import tensorflow as tf

            batches = batches.map(tf.image.flip_left_right)
        report = lambda done: progress(f"{name} features", done, len(files))  # noqa: E731
        if len(files) == total:
            return features.extract(batches, forward, total, spec.feature_dim, destination, report)
        with tempfile.TemporaryDirectory(prefix="zoo-share-") as folder:
            mine = features.extract(batches, forward, len(files), spec.feature_dim, Path(folder) / "share.npy", report)
            rows = distributed.gather(strategy, np.asarray(mine), total)
        return features.extract([rows], np.asarray, total, spec.feature_dim, destination)

    if not settings.cache:
        with tempfile.TemporaryDirectory(prefix="zoo-features-") as folder:
            return np.array(run(Path(folder) / f"{name}.npy")), "off"
    key = features.feature_key(identity, split.files)
    cached = features.load(spec.name, name, key)
    if distributed.everyone(strategy, cached is not None):
        progress(f"{name} features (cached)", total, total)
        return cached, "hit"
    return features.store(spec.name, name, key, {"images": total}, run), "miss"


def _base_model(spec: BackboneSpec, extractor):
    """The backbone inside the extractor (its one nested Keras model), whose layers fine-tuning unfreezes."""
    import keras

    base = next((layer for layer in extractor.layers if isinstance(layer, keras.Model)), None)
    if base is None:
        raise ZooError(
            f"{spec.name} cannot be fine-tuned: its base is not a Keras model with layers "
            "(e.g. a TF Hub SavedModel); bench it with --mode features"
        )
    return base


def unfreeze_top(base, count: int) -> int:
    """Make the top `count` layers of `base` trainable, BatchNorm excepted (it stays in
    inference mode, as Keras recommends for fine-tuning); returns how many became trainable."""
    import keras

    base.trainable = True
    cut = len(base.layers) - count
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= cut and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(layer.trainable for layer in base.layers)


def _file_mb(path: str | None) -> float | None:
    if path is None:
        return None
    target = Path(path)
    files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def bench_backbone(
    spec: BackboneSpec,
    dataset: Dataset,
    settings: BenchSettings,
    progress: Progress = no_progress,
    strategy=None,
    log_dir: Path | None = None,
) -> dict:
    """Train and measure one backbone; any failure becomes a failed row with a one-line error."""
    row = {
        "backbone": spec.name,
        "family": spec.family,
        "source": spec.source,
        "plugin": spec.plugin,
        "input_size": spec.input_size,
        "params": spec.params,
        "weights": "",
        "weights_note": "",
        "status": "failed",
        "error": "",
        **asdict(settings),
        "settings_fingerprint": settings_fingerprint(spec, dataset, settings),
    }
    start = time.perf_counter()
    try:
        with metrics.PeakMemory() as memory:
            _measure(spec, dataset, settings, progress, row, strategy or distributed.make_strategy("default"), log_dir)
        row["peak_rss_mb"] = memory.peak_bytes / 2**20
        row["status"] = "ok"
    except Exception as exc:  # one backbone failing must not stop the bench
        lost = distributed.lost_worker(exc)
        if lost is not None:  # but a lost worker stops every worker: their collectives are broken
            raise lost from None
        row["error"] = one_line(exc)
    row["total_seconds"] = time.perf_counter() - start
    row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return row


def _feature_identity(spec: BackboneSpec, weights_path: str | None, seed: int) -> dict:
    """Everything besides the image files that a frozen base's features depend on."""
    return {
        "backbone": spec.name,
        "source": spec.source,
        "reference": spec.reference,
        "plugin": spec.plugin,
        "preprocessing": spec.preprocessing_name,
        "input_size": spec.input_size,
        "interpolation": spec.interpolation,
        "weights": features.weights_identity(weights_path, seed),
    }


def _measure(spec, dataset, settings: BenchSettings, progress: Progress, row: dict, strategy, log_dir) -> None:
    """Fill `row` as each step finishes, so a failure keeps what was measured before it."""
    import keras

    from zoo.models import feature_extractor
    from zoo.weights import resolve

    weights = resolve(spec, settings.weights, progress)
    row.update(weights=weights.label, weights_note=weights.note, weights_file_mb=_file_mb(weights.path))
    callbacks = []
    if log_dir is not None:
        shutil.rmtree(log_dir, ignore_errors=True)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False))
    keras.utils.set_random_seed(settings.seed)  # random-init weights are the same on every run
    with strategy.scope():
        extractor = feature_extractor(spec, weights)
    phase1 = _head_end_to_end if settings.augment else _head_on_cached_features
    model, probabilities = phase1(spec, dataset, settings, progress, row, strategy, extractor, callbacks, weights)
    forward = metrics.compiled_forward(model)
    test_y = np.asarray(dataset.test.labels)
    row["top1_frozen"] = metrics.top_k_accuracy(probabilities, test_y, 1)
    if settings.mode == "finetune":
        _fine_tune(spec, dataset, settings, progress, row, strategy, model, extractor, callbacks)
        probabilities = _predict(forward, dataset.test.files, spec, settings.batch_size, progress)

    phases = ("extract_seconds", "head_seconds", "finetune_seconds")
    row["train_seconds"] = sum(row.get(key) or 0.0 for key in phases)
    num_classes = len(dataset.class_names)
    confusion = metrics.confusion_matrix(test_y, probabilities.argmax(axis=1), num_classes)
    row.update(
        top1=metrics.top_k_accuracy(probabilities, test_y, 1),
        top5=metrics.top_k_accuracy(probabilities, test_y, 5),
        test_images=len(test_y),
        per_class_accuracy=dict(zip(dataset.class_names, metrics.per_class_accuracy(confusion))),
        confusion_matrix=confusion.tolist(),
        params=extractor.count_params(),  # the backbone's, comparable across heads and datasets
        trainable_params=sum(int(np.prod(v.shape)) for v in model.trainable_weights),
    )
    batch = next(iter(image_batches(dataset.test.files, spec.input_size, settings.batch_size, spec.interpolation)))
    row["images_per_sec"] = metrics.throughput(forward, batch, settings.throughput_batches, progress)
    row["latency_ms_p50"], row["latency_ms_p95"] = metrics.latency_ms(
        forward, batch[:1], settings.latency_runs, progress
    )
    progress("counting FLOPs", 0, 1)
    row["flops_per_image"] = metrics.flops_per_image(model)


def _head_on_cached_features(spec, dataset, settings, progress, row, strategy, extractor, callbacks, weights):
    """Phase 1 the fast way: features once (or from the cache), then the head on the arrays.
    Returns the whole classifier (extractor + the trained head) and the test probabilities."""
    import keras

    start = time.perf_counter()
    extract = metrics.compiled_forward(extractor)
    identity = _feature_identity(spec, weights.path, settings.seed)
    views = (False, True) if settings.mirror else (False,)
    train = [_split_features(spec, dataset.train, "train", extract, identity, settings, progress, strategy, m)
             for m in views]
    test = [_split_features(spec, dataset.test, "test", extract, identity, settings, progress, strategy, m)
            for m in views]
    row["feature_cache"] = ", ".join(sorted({status for _, status in train + test}))
    row["extract_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.tile(dataset.train.labels, len(views))
    test_y = np.asarray(dataset.test.labels)
    callbacks = [*callbacks, _epoch_progress("head epochs", 0, settings.epochs, progress)]
    with strategy.scope():
        if settings.strategy == "multiworker":
            head = distributed.train_head(strategy, train_x, train_y, len(dataset.class_names), settings, callbacks)
        else:
            head = train_head(train_x, train_y, len(dataset.class_names), settings, callbacks,
                              validation=(np.asarray(test[0][0]), test_y))
        model = keras.Model(extractor.input, head(extractor.output), name="classifier")
    row["head_seconds"] = time.perf_counter() - start
    # With `mirror`, each test image is scored as the mean over it and its mirror image.
    # A direct call, not head.predict: predict retraces its function for every new head.
    views = [np.asarray(head(np.asarray(x), training=False)) for x, _ in test]
    return model, np.mean(views, axis=0)


def _head_end_to_end(spec, dataset, settings, progress, row, strategy, extractor, callbacks, weights):
    """Phase 1 with augmentation: every epoch runs the frozen base on new random variants of
    the images, inside model.fit, so there is nothing to cache."""
    import keras

    from zoo.models import classification_head

    row.update(feature_cache="off (augment)", extract_seconds=None)
    start = time.perf_counter()
    with strategy.scope():
        head = classification_head(spec.feature_dim, len(dataset.class_names))
        inputs = keras.Input(extractor.input_shape[1:], name="image")
        model = keras.Model(inputs, head(extractor(augmentation()(inputs))), name="classifier")
        _compile(model, settings.learning_rate)
    model.fit(
        _labeled_batches(dataset.train, spec, settings.batch_size, settings.seed),
        epochs=settings.epochs, verbose=0, shuffle=False,  # the pipeline shuffles
        callbacks=[*callbacks, _epoch_progress("epochs (end to end)", 0, settings.epochs, progress)],
    )
    row["head_seconds"] = time.perf_counter() - start
    forward = metrics.compiled_forward(model)
    return model, _predict(forward, dataset.test.files, spec, settings.batch_size, progress)


def _fine_tune(spec, dataset, settings, progress, row, strategy, model, extractor, callbacks) -> None:
    """Phase 2 (the seed's notebook 05): unfreeze the top of the base and keep training the
    whole model on the images at a tenth of the learning rate, numbering epochs on from phase 1."""
    start = time.perf_counter()
    with strategy.scope():
        row["unfrozen_layers"] = unfreeze_top(_base_model(spec, extractor), settings.unfreeze)
        _compile(model, settings.learning_rate / 10)
    model.fit(
        _labeled_batches(dataset.train, spec, settings.batch_size, settings.seed),
        initial_epoch=settings.epochs,
        epochs=settings.epochs + settings.finetune_epochs,
        verbose=0,
        shuffle=False,  # the pipeline shuffles
        callbacks=[*callbacks, _epoch_progress("fine-tune epochs", settings.epochs, settings.finetune_epochs, progress)],
    )
    row["finetune_seconds"] = time.perf_counter() - start


def run_bench(
    specs: list[BackboneSpec],
    dataset: Dataset,
    settings: BenchSettings,
    out_dir: Path,
    resume: bool = False,
    progress: Callable[[str, str, int, int], None] = lambda backbone, step, done, total: None,
    finished: Callable[[dict, bool], None] = lambda row, reused: None,
    shard: Shard | None = None,
    strategy=None,
) -> list[dict]:
    """Bench `specs` one after another, writing the results after each, so Ctrl-C loses only
    the backbone in flight. With `resume`, finished rows of the same settings are kept as they are;
    rows of backbones not benched now stay in the file too. `shard` (the part of a sweep these
    specs are) is recorded for `zoo report --merge`.

    With several workers every one benches every backbone, its share of the work each (see
    zoo.distributed); only the chief reads and writes `out_dir`, and decides what --resume keeps.
    """
    from zoo import report

    strategy = strategy or distributed.make_strategy(settings.strategy)
    chief = distributed.is_chief(strategy)
    meta = {
        "environment": {**metrics.environment(), "strategy": settings.strategy,
                        "replicas": strategy.num_replicas_in_sync, "workers": distributed.worker(strategy)[1]},
        "dataset": {"root": str(dataset.root), "classes": list(dataset.class_names),
                    "train_images": len(dataset.train), "test_images": len(dataset.test),
                    "fingerprint": data_fingerprint(dataset.root, dataset.train.files + dataset.test.files)},
    }
    if shard is not None:
        meta["shard"] = asdict(shard)
    portable = {key: value for key, value in meta["dataset"].items() if key != "root"}
    distributed.agree(strategy, "backbones, data or settings", json.dumps(
        [[spec.name for spec in specs], portable, {**asdict(settings), "cache": None}], sort_keys=True))
    resumed = resume and chief and (out_dir / "results.json").is_file()
    earlier = report.read_results(out_dir)["backbones"] if resumed else []
    names = {spec.name for spec in specs}
    rows = [row for row in earlier if row.get("backbone") not in names]
    finished_before = {row["backbone"]: row for row in earlier if row.get("status") == "ok"}
    reusable = [
        spec.name in finished_before
        and finished_before[spec.name].get("settings_fingerprint") == settings_fingerprint(spec, dataset, settings)
        for spec in specs
    ]
    for spec, reuse in zip(specs, distributed.chief_says(strategy, reusable)):
        if reuse:
            if chief:
                rows.append(finished_before[spec.name])
                finished(finished_before[spec.name], True)
            continue
        report_step = lambda step, done, total, name=spec.name: progress(name, step, done, total)  # noqa: E731
        log_dir = out_dir / "tensorboard" / spec.name if chief else None
        row = bench_backbone(spec, dataset, settings, report_step, strategy, log_dir)
        rows.append(row)
        if chief:
            report.write_results(out_dir, rows, meta)
        finished(row, False)
    return rows


def validate_weights_mode(mode: str, count: int) -> None:
    """Before any work: --weights is a mode or an existing path, and a path is for one backbone."""
    if mode in WEIGHTS_MODES:
        return
    if not Path(mode).expanduser().exists():
        close = difflib.get_close_matches(mode, WEIGHTS_MODES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ZooError(f"--weights {mode}: no such file; {hint}give auto, imagenet, none or a weights path")
    if count != 1:
        raise ZooError(f"--weights {mode}: a file path can be given for one backbone only")
