"""The bench: every backbone, the same data, the same protocol, one row of results each.

Phase 1 trains a new softmax head on the frozen base. The base's output never changes, so its
pooled features are computed once per split and cached on disk (zoo.features); the head then
trains on those arrays in a blink, and a second bench of the same backbone skips the base
entirely. With `--augment` every epoch shows the base new images, so phase 1 runs end to end.
Phase 2 (`--mode finetune`, the seed's notebook 05) unfreezes the top of the base and trains
the whole model on the images at a tenth of the learning rate.

This module orchestrates; the settings (zoo.settings), the training recipe (zoo.recipe), the
data pipelines (zoo.data), the measurements (zoo.metrics) and the row (zoo.row) live apart.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo import board, distributed, ensemble, export, features, metrics, plots, recipe, runtime
from zoo.data import Dataset, Split, decoded_batches, first_batch, image_batches, keep_decoded, labeled_batches
from zoo.errors import ZooError, one_line
from zoo.progress import Progress, no_progress, prefixed
from zoo.row import BenchRow
from zoo.settings import BenchSettings, result_settings, settings_fingerprint
from zoo.spec import BackboneSpec, file_stem
from zoo.sweep import Shard, data_fingerprint, dataset_difference, settings_difference
from zoo.validation import CrossValidation, cross_validate, stratified_folds
from zoo.weights import ResolvedWeights

__all__ = ["BenchSettings", "bench_backbone", "run_bench"]


@dataclass(frozen=True)
class _Run:
    """What every phase of one backbone's bench works with."""

    spec: BackboneSpec
    dataset: Dataset
    settings: BenchSettings
    progress: Progress
    strategy: Any
    weights: ResolvedWeights
    extractor: Any  # images → pooled features, base frozen
    callbacks: tuple[Any, ...]  # e.g. TensorBoard, for every model.fit

    @functools.cached_property
    def identity(self) -> dict:
        """What the extractor's features depend on: the key of its cached features and model."""
        return features.identity(self.spec, self.extractor)

    @functools.cached_property
    def extraction(self) -> runtime.Extraction:
        """images → features through the runtime --runtime chooses (zoo.runtime), on its first call."""
        identity = self.identity if self.settings.cache else None
        return runtime.Extraction(self.spec.name, self.extractor, self.settings, self.strategy, identity, self.progress)

    def labeled_train_batches(self) -> Any:
        spec, settings = self.spec, self.settings
        return labeled_batches(
            self.dataset.train, spec.input_size, settings.batch_size, settings.seed, spec.interpolation
        )

    def fit_callbacks(self, step: str, first_epoch: int, epochs: int) -> list[Any]:
        """The run's callbacks plus one reporting `step` after each epoch, counted from `first_epoch`."""
        import keras

        def report(epoch: int, logs: Any) -> None:
            self.progress(step, epoch + 1 - first_epoch, epochs)

        return [*self.callbacks, keras.callbacks.LambdaCallback(on_epoch_end=report)]


def _predict(forward: Any, run: _Run) -> np.ndarray:
    """Class probabilities for every test image, batch by batch."""
    spec, files = run.spec, run.dataset.test.files
    chunks, done = [], 0
    for batch in image_batches(files, spec.input_size, run.settings.batch_size, spec.interpolation):
        chunks.append(np.asarray(forward(batch)))
        done += len(chunks[-1])
        run.progress("test predictions", done, len(files))
    return np.concatenate(chunks)


def _split_features(
    run: _Run, split: Split, name: str, forward: Any, mirrored: bool, identity: dict, notes: list[str]
) -> tuple[np.ndarray, str]:
    """One split's features (of its mirror images if `mirrored`), from the cache when every
    worker has them there; (array, "hit"|"miss"|"off"). With several workers, each extracts its
    share of the files and the shares are gathered into the whole array on every worker. A
    damaged entry is recomputed, with a line in `notes`."""
    spec, settings, total = run.spec, run.settings, len(split)
    name = f"{name}-mirrored" if mirrored else name

    def extract(destination: Path) -> np.ndarray:
        files = distributed.share(split.files, run.strategy)
        decoded = decoded_batches(files, spec.input_size, settings.batch_size, spec.interpolation, run.progress)
        batches = (batch[:, :, ::-1] if mirrored else batch for batch in decoded)  # uint8: cast as they go in
        step = f"{name} features"
        if len(files) == total:
            return features.extract(batches, forward, total, spec.feature_dim, destination, run.progress, step)
        with tempfile.TemporaryDirectory(prefix="zoo-share-") as folder:
            mine = features.extract(
                batches, forward, len(files), spec.feature_dim, Path(folder) / "share.npy", run.progress, step
            )
            rows = distributed.gather(run.strategy, np.asarray(mine), total)
        return features.extract([rows], np.asarray, total, spec.feature_dim, destination)

    def uncached() -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="zoo-features-") as folder:
            return np.array(extract(Path(folder) / f"{name}.npy"))

    if not settings.cache:
        return uncached(), "off"
    key = features.feature_key(identity, split.files)
    try:
        cached = features.load(spec.name, name, key, (total, spec.feature_dim))
    except features.DamagedEntry as exc:
        cached = None
        notes.append(str(exc))
    everywhere = distributed.everyone(run.strategy, cached is not None)  # every worker must ask
    if cached is not None and everywhere:
        run.progress(f"{name} features (cached)", total, total)
        return cached, "hit"
    meta = {"images": total, "dataset": features.dataset_name(run.dataset.root)}
    try:
        return features.store(spec.name, name, key, meta, extract), "miss"
    except features.Unwritable as exc:
        notes.append(str(exc))
        return uncached(), "off"


def _head_on_cached_features(run: _Run, row: BenchRow) -> tuple[Any, np.ndarray, CrossValidation | None]:
    """Phase 1 the fast way: features once (or from the cache), then the head on the arrays.
    Returns the whole classifier (extractor + the trained head) and the test probabilities."""
    import keras

    dataset, settings = run.dataset, run.settings
    start = time.perf_counter()
    extract = run.extraction  # its batches give the row's images/s (_speed)
    identity = run.identity if settings.cache else {}
    views = (False, True) if settings.mirror else (False,)
    notes: list[str] = []
    train, test = (
        [_split_features(run, split, name, extract, mirrored, identity, notes) for mirrored in views]
        for split, name in ((dataset.train, "train"), (dataset.test, "test"))
    )
    row.feature_cache = ", ".join(sorted({status for _, status in train + test}))
    row.feature_cache_note = "; ".join(dict.fromkeys(notes))  # an unwritable cache, said once for every split
    shares = [len(distributed.share(split.files, run.strategy)) for split in (dataset.train, dataset.test)]
    mine = sum(share for share, views_of in zip(shares, (train, test)) for _, status in views_of if status != "hit")
    row.worker_images = distributed.each(run.strategy, mine)
    row.extract_seconds = time.perf_counter() - start
    _speed(run, row, extract, identity)
    row.runtime, row.runtime_note = extract.runtime, extract.note  # None: nothing ran
    start = time.perf_counter()
    train_views = [x for x, _ in train]  # the arrays as cached: the head reads their rows, no copy
    callbacks = run.fit_callbacks("head epochs", 0, settings.epochs)
    classes = len(dataset.class_names)
    with run.strategy.scope():
        if settings.strategy == "multiworker":  # each replica trains on its share of every batch
            train_y = np.tile(dataset.train.labels, len(views))
            head = distributed.train_head(
                run.strategy, np.concatenate(train_views), train_y, classes, settings, callbacks
            )
        else:
            scored = (np.asarray(test[0][0]), np.asarray(dataset.test.labels))
            head = recipe.train_head(train_views, dataset.train.labels, classes, settings, callbacks, validation=scored)
        model = keras.Model(run.extractor.input, head(run.extractor.output), name="classifier")
    row.head_seconds = time.perf_counter() - start
    validation = None
    if settings.folds and settings.mode == "features":  # fine-tuning would outdate the heads it scores
        start = time.perf_counter()
        # Every worker holds all the features, so each cross-validates on its own, to the same result.
        validation = cross_validate(train_views, dataset.train.labels, classes, settings, run.progress)
        row.val_top1, row.val_top1_std = validation.top1, validation.top1_std
        row.val_log_loss = metrics.log_loss(validation.probabilities, np.asarray(dataset.train.labels))
        row.validation_seconds = time.perf_counter() - start
    # With `mirror`, each test image is scored as the mean over it and its mirror image; the
    # classifier kept (and exported) sees the image alone, and is scored so too.
    labels = np.asarray(dataset.test.labels)
    row.top1_one_view = metrics.top_k_accuracy(recipe.predict_views(head, [test[0][0]]), labels, 1)
    return model, recipe.predict_views(head, [x for x, _ in test]), validation


def _head_end_to_end(run: _Run, row: BenchRow) -> tuple[Any, np.ndarray, None]:
    """Phase 1 with augmentation: nothing to cache, the base sees new images every epoch."""
    row.feature_cache, row.extract_seconds = "off (augment)", None
    start = time.perf_counter()
    model = recipe.train_end_to_end(
        run.extractor,
        len(run.dataset.class_names),
        run.labeled_train_batches(),
        run.settings,
        run.strategy,
        run.fit_callbacks("epochs (end to end)", 0, run.settings.epochs),
    )
    row.head_seconds = time.perf_counter() - start
    return model, _predict(metrics.compiled_forward(model), run), None


def _fine_tune(run: _Run, row: BenchRow, model: Any) -> None:
    """Phase 2: the top of the base unfrozen, the whole model trained on the images."""
    settings = run.settings
    start = time.perf_counter()
    row.unfrozen_layers = recipe.fine_tune(
        model,
        recipe.base_model(run.spec, run.extractor),
        run.labeled_train_batches(),
        settings,
        run.strategy,
        run.fit_callbacks("fine-tune epochs", settings.epochs, settings.finetune_epochs),
    )
    row.finetune_seconds = time.perf_counter() - start


def _speed(run: _Run, row: BenchRow, forward: Any, identity: dict) -> None:
    """The row's images/s and single-image latency, through the forward pass that extracted the
    features (a runtime.Extraction; else the model, trained end to end). Images/s come from the
    extraction's own batches, and latency from the record of an earlier bench of this
    architecture on this machine where there is one; when every split was cached, the backbone
    does not run at all: all three figures are those recorded. Separate runs only for what
    neither gives (too few batches, no record)."""
    settings = run.settings
    extraction = forward if isinstance(forward, runtime.Extraction) else None
    machine = {"cpu": metrics.cpu_model(), "cpus": os.cpu_count(), "runtime": settings.runtime}
    speed_of = {"architecture": identity.get("architecture")}  # not the weights: they do not change speed
    key = features.key(speed_of, batch_size=settings.batch_size, **machine) if identity else ""
    recorded = features.recall("speed", key) if key else None
    if recorded is not None and extraction is not None and not extraction.calls:
        row.images_per_sec, row.latency_ms_p50, row.latency_ms_p95 = recorded
        row.speed_from = "cache"
        return
    row.images_per_sec = extraction.images_per_sec() if extraction is not None else None
    if row.images_per_sec is not None and recorded is not None:
        row.latency_ms_p50, row.latency_ms_p95 = recorded[1:]
        row.speed_from = "extraction+cache"
    else:
        spec, test = run.spec, run.dataset.test.files
        batch = first_batch(test, spec.input_size, settings.batch_size, spec.interpolation).astype(np.float32)
        if extraction is not None:  # timed as chosen, not in the middle of auto's trial
            extraction.settle_on(batch)
        row.speed_from = "extraction"
        if row.images_per_sec is None:
            row.images_per_sec = metrics.throughput(forward, batch, settings.throughput_batches, run.progress)
            row.speed_from = "runs"
        row.latency_ms_p50, row.latency_ms_p95 = metrics.latency_ms(
            forward, batch[:1], settings.latency_runs, run.progress
        )
    if key:
        features.remember("speed", key, [row.images_per_sec, row.latency_ms_p50, row.latency_ms_p95], run.spec.name)


#: keep(classifier, metadata) → where it was kept (relative to --out), or None.
Keep = Callable[[Any, dict], str | None]


def _measure(
    row: BenchRow,
    spec: BackboneSpec,
    dataset: Dataset,
    settings: BenchSettings,
    progress: Progress,
    strategy: Any,
    log_dir: Path | None,
    keep: Keep | None,
    predictions: Path | None = None,
) -> None:
    """Fill `row` as each step finishes, so a failure keeps what was measured before it;
    then hand the trained classifier and its metadata to `keep`."""
    import keras

    from zoo.models import seeded_feature_extractor
    from zoo.weights import resolve

    weights = resolve(spec, settings.weights, progress)
    row.weights, row.weights_note = weights.label, weights.note
    row.weights_file_mb = metrics.size_mb(weights.path)
    callbacks = []
    if log_dir is not None:
        shutil.rmtree(log_dir, ignore_errors=True)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False))
    with strategy.scope():
        extractor = seeded_feature_extractor(spec, weights, settings.seed)
    run = _Run(spec, dataset, settings, progress, strategy, weights, extractor, tuple(callbacks))
    phase1 = _head_end_to_end if settings.augment else _head_on_cached_features
    model, probabilities, validation = phase1(run, row)
    if validation is not None and predictions is not None:  # what the ensemble is made of
        ensemble.Predictions(validation.folds, validation.probabilities, probabilities).save(predictions)
    test_y = np.asarray(dataset.test.labels)
    row.top1_frozen = metrics.top_k_accuracy(probabilities, test_y, 1)
    if settings.mode == "finetune":
        _fine_tune(run, row, model)
        probabilities = _predict(metrics.compiled_forward(model), run)

    phases = (row.extract_seconds, row.head_seconds, row.finetune_seconds)
    row.train_seconds = sum(seconds or 0.0 for seconds in phases)
    confusion = metrics.confusion_matrix(test_y, probabilities.argmax(axis=1), len(dataset.class_names))
    row.top1 = metrics.top_k_accuracy(probabilities, test_y, 1)
    if settings.mode == "finetune" or row.top1_one_view is None:  # scored on the images alone already
        row.top1_one_view = row.top1
    row.top5 = metrics.top_k_accuracy(probabilities, test_y, 5)
    row.test_images = len(test_y)
    row.test_predictions = probabilities.argmax(axis=1).tolist()  # per image, for the paired test
    row.per_class_accuracy = dict(zip(dataset.class_names, metrics.per_class_accuracy(confusion)))
    row.confusion_matrix = confusion.tolist()
    row.params = extractor.count_params()  # the backbone's, comparable across heads and datasets
    row.trainable_params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    if row.images_per_sec is None:  # trained end to end: nothing was extracted
        _speed(run, row, metrics.compiled_forward(model), {})
    progress("counting FLOPs", 0, 1)
    count_flops = lambda: metrics.flops_per_image(model)  # noqa: E731
    # FLOPs depend on the architecture alone: counted once per architecture, kept in the cache.
    digest = features.architecture_digest(model) if settings.cache else ""
    row.flops_per_image = features.remembered("flops", digest, count_flops, spec.name) if digest else count_flops()
    if log_dir is not None:
        board.finish(log_dir, row)
    if keep is not None:
        progress("saving the classifier", 0, 1)
        scores = {
            "top1": row.top1,
            "top1_one_view": row.top1_one_view,  # what this classifier scores: it sees each image alone
            "top5": row.top5,
            "test_images": row.test_images,
            "dataset": features.dataset_name(dataset.root),
        }
        meta = export.metadata(spec, weights, extractor, dataset.class_names, asdict(settings), scores)
        row.classifier = keep(model, meta)


def bench_backbone(
    spec: BackboneSpec,
    dataset: Dataset,
    settings: BenchSettings,
    progress: Progress = no_progress,
    strategy: Any = None,
    log_dir: Path | None = None,
    keep: Keep | None = None,
    predictions: Path | None = None,
) -> BenchRow:
    """Train and measure one backbone; any failure becomes a failed row with a one-line error.
    `keep` receives the trained classifier and its metadata (zoo.export.metadata)."""
    row = BenchRow.start(spec, settings, settings_fingerprint(spec, dataset, settings))
    start = time.perf_counter()
    strategy = strategy or distributed.make_strategy("default")
    try:
        with metrics.PeakMemory() as memory:
            _measure(row, spec, dataset, settings, progress, strategy, log_dir, keep, predictions)
        row.peak_rss_mb = memory.peak_bytes / 2**20
        row.status = "ok"
    except Exception as exc:  # one backbone failing must not stop the bench
        lost = distributed.lost_worker(exc)
        if lost is not None:  # but a lost worker stops them all: their collectives are broken
            raise lost from None
        row.error = one_line(exc)
        row.traceback = "".join(traceback.format_exception(exc))
    row.finish(time.perf_counter() - start)
    return row


def release_models(later: list[BackboneSpec]) -> None:
    """Free what the last backbone built (Keras' global state, its models and traced graphs)
    and the decoded images no `later` backbone reads, so memory does not grow from one backbone
    to the next in `--all`."""
    import keras

    keras.backend.clear_session(free_memory=True)
    keep_decoded({spec.input_size for spec in later})
    with contextlib.suppress(OSError, AttributeError):  # glibc only: hand freed heap pages back to the system
        ctypes.CDLL(None).malloc_trim(0)


def _keeper(out_dir: Path, spec: BackboneSpec, settings: BenchSettings, classifiers: dict | None) -> Keep:
    """Saves a trained classifier under out_dir/models/ (all of it after fine-tuning, which
    changed the base; else its head) and hands it to `classifiers`."""

    def keep(model: Any, meta: dict) -> str:
        relative = f"models/{file_stem(spec.name)}"
        export.save_trained(out_dir / relative, model, meta, whole=settings.mode == "finetune")
        if classifiers is not None:
            classifiers[spec.name] = model
        return relative

    return keep


def _remove_row_files(out_dir: Path, name: str) -> None:
    """What a bench wrote into `out_dir` for the row of `name`: classifier, log, predictions, plot.
    A name that is a path (`../../x`) is refused (file_stem) before anything is removed."""
    for folder in (
        out_dir / "models" / file_stem(name),
        board.log_folder(out_dir, name),
        out_dir / "tensorboard" / name,  # a `:` name's log folder as zoo named it before board.log_folder
    ):
        shutil.rmtree(folder, ignore_errors=True)
    for path in (ensemble.predictions_path(out_dir, name), out_dir / plots.confusion_file(name)):
        path.unlink(missing_ok=True)


def remove_rows_files(out_dir: Path, rows: list[dict]) -> None:
    """What an earlier bench or merge wrote into `out_dir` for its `rows`, the ensemble's model too."""
    for row in rows:
        _remove_row_files(out_dir, row["backbone"])
    shutil.rmtree(out_dir / export.ENSEMBLE_FOLDER, ignore_errors=True)


def _clear_earlier_bench(out_dir: Path) -> None:
    """Remove what an earlier bench's rows left in `out_dir` (results, classifiers, predictions,
    plots, TensorBoard logs), so a new bench there shows none of them; only what those rows name."""
    from zoo import report

    try:
        earlier = report.read_results(out_dir)["backbones"]
    except ZooError:  # none, or not zoo's: nothing of zoo's to remove
        return
    remove_rows_files(out_dir, earlier)
    for written in ("results.json", "results.csv", "results.md", "report.html", report.PLOT):
        (out_dir / written).unlink(missing_ok=True)


def _mixed_table(out_dir: Path, saved: dict, kept: list[dict], dataset: dict, settings: BenchSettings) -> str:
    """Why `--resume` must not keep the rows `kept` (of backbones not benched now) from the results
    `saved` in `out_dir`: another dataset, or other settings, would mix in one table; or ''."""
    if not kept:
        return ""
    fix = "bench into another --out, or drop --resume to start over"
    difference = dataset_difference(saved.get("dataset"), dataset)
    if difference:
        return f"--resume: {out_dir} holds results on another dataset ({difference}); {fix}"
    for row in kept:
        difference = settings_difference(row, asdict(settings))
        if difference:
            return (
                f"--resume: {row['backbone']} in {out_dir} was benched with other settings ({difference}); "
                f"name it too, to bench it again, or {fix}"
            )
    return ""


def run_bench(
    specs: list[BackboneSpec],
    dataset: Dataset,
    settings: BenchSettings,
    out_dir: Path,
    resume: bool = False,
    progress: Progress = no_progress,
    finished: Callable[[dict, bool], None] = lambda row, reused: None,
    classifiers: dict[str, Any] | None = None,
    shard: Shard | None = None,
    strategy: Any = None,
    ensemble_size: int = 3,
    note: Callable[[str], None] = lambda line: None,
) -> list[dict]:
    """Bench `specs` one after another, writing the results after each, so Ctrl-C loses only
    the backbone in flight (the plot of every row is drawn once, at the end, or when Ctrl-C
    cuts the bench short). Steps are reported as "BACKBONE: step". With `resume`, finished rows
    of the same settings are kept as they are; rows of backbones not benched now stay in the file too.
    `shard` (the part of a sweep these specs are) is recorded for `zoo report --merge`.

    Each trained classifier is saved under `out_dir/models/BACKBONE/` (zoo.export.save_trained)
    and, given a `classifiers` dict, also put in it by backbone name.

    With several workers each benches every backbone, doing its share of the work (zoo.distributed);
    only the chief reads and writes `out_dir` (results, TensorBoard, models), and it decides what
    --resume keeps.

    The ensemble row (zoo.ensemble, `ensemble_size` members at most; 0: none) comes last, kept
    under `out_dir/models/ensemble/` (zoo.export.save_ensemble); when there is none, `note`
    hears why in one line.
    """
    from zoo import report

    if ensemble_size:
        ensemble.validate_ensemble_size(ensemble_size)
    if settings.folds:  # a --folds too large for train/ fails now, not in every row
        stratified_folds(dataset.train.labels, settings.folds, settings.seed)

    strategy = strategy or distributed.make_strategy(settings.strategy)
    chief = distributed.is_chief(strategy)
    meta: dict[str, Any] = {
        **report.provenance(),
        "environment": {
            **metrics.environment(),
            "strategy": settings.strategy,
            "replicas": strategy.num_replicas_in_sync,
            "workers": distributed.worker(strategy)[1],
        },
        "dataset": {
            "root": features.dataset_name(dataset.root),  # absolute: export --quantize int8 finds it anywhere
            "classes": list(dataset.class_names),
            "train_images": len(dataset.train),
            "test_images": len(dataset.test),
            "fingerprint": data_fingerprint(dataset.root, dataset.train.files + dataset.test.files),
            "test_labels": [int(label) for label in dataset.test.labels],
            "train_labels": [int(label) for label in dataset.train.labels],  # a merge's ensemble is chosen on them
        },
    }
    if shard is not None:
        meta["shard"] = asdict(shard)
    meta["ensemble_size"] = ensemble_size  # a merge of shards makes the ensemble this bench would
    same_work = [[spec.name for spec in specs], {**meta["dataset"], "root": None}, result_settings(asdict(settings))]
    distributed.agree(strategy, "backbones, data or settings", json.dumps(same_work, sort_keys=True))
    resumed = resume and chief and (out_dir / "results.json").is_file()
    if chief and not resumed:
        _clear_earlier_bench(out_dir)
    saved = report.read_results(out_dir) if resumed else {"backbones": []}
    earlier = saved["backbones"]
    names = {spec.name for spec in specs}
    rows = [row for row in earlier if row.get("backbone") not in names and row.get("kind") != ensemble.KIND]
    refusal = _mixed_table(out_dir, saved, rows, meta["dataset"], settings)
    if distributed.chief_says(strategy, [bool(refusal)])[0]:
        raise ZooError(refusal or "the chief refused --resume; its output says why")
    benched: list[dict] = []
    finished_before = {row["backbone"]: row for row in earlier if row.get("status") == "ok"}
    reusable = [
        spec.name in finished_before
        and finished_before[spec.name].get("settings_fingerprint") == settings_fingerprint(spec, dataset, settings)
        for spec in specs
    ]
    reuses = distributed.chief_says(strategy, reusable)
    runtime.convert_ahead([spec for spec, reuse in zip(specs, reuses) if not reuse], settings, progress)
    try:
        for index, (spec, reuse) in enumerate(zip(specs, reuses)):
            if reuse:
                if chief:
                    rows.append(finished_before[spec.name])
                    benched.append(finished_before[spec.name])
                    finished(finished_before[spec.name], True)
                continue
            log_dir = board.log_folder(out_dir, spec.name) if chief else None
            keep = _keeper(out_dir, spec, settings, classifiers) if chief else None
            predictions = ensemble.predictions_path(out_dir, spec.name) if chief else None
            if chief:  # a row's files are its own or none
                _remove_row_files(out_dir, spec.name)
            step = prefixed(progress, spec.name)
            row = bench_backbone(spec, dataset, settings, step, strategy, log_dir, keep, predictions).to_dict()
            benched.append(row)
            release_models(specs[index + 1 :])
            rows.append(row)
            if chief:  # the rows before have their confusion matrices drawn already; the plot of all, at the end
                written = {**meta, "finished_at": report.now()}
                report.write_results(out_dir, rows, written, drawn={spec.name}, plot=False)
            finished(row, False)
    except KeyboardInterrupt:
        if chief and (out_dir / "results.json").is_file():  # the rows finished get their plot too
            report.write_reports(out_dir, report.read_results(out_dir), drawn=set())
        raise
    if chief:
        shutil.rmtree(out_dir / export.ENSEMBLE_FOLDER, ignore_errors=True)  # an earlier bench's
        combined = ensemble.build(benched, out_dir, dataset, settings, ensemble_size)
        if isinstance(combined, str):
            note(f"No ensemble row: {combined}.")
            meta["no_ensemble"] = combined  # so `zoo export RESULTS ensemble` can say why
        else:
            combined["classifier"] = export.save_ensemble(out_dir, combined, benched)
            rows.append(combined)
        drawn = set() if isinstance(combined, str) else {combined["backbone"]}  # the others are drawn
        report.write_results(out_dir, rows, {**meta, "finished_at": report.now()}, drawn=drawn)
    return rows
