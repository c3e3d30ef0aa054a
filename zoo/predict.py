"""Classify images with a classifier zoo trained: a `.keras` file, a SavedModel folder or a
`.tflite` file (run in the LiteRT interpreter), each found with the zoo.json an export or a bench
wrote beside it. A model without zoo.json still predicts, its classes named by index.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo import export
from zoo.errors import ZooError
from zoo.progress import Progress, no_progress

#: Images per forward pass.
BATCH = 16


@dataclass
class Classifier:
    """A loaded classifier: call it on a float32 batch of 0..255 RGB images for probabilities."""

    path: Path
    kind: str  # keras, savedmodel, tflite
    forward: Callable[[np.ndarray], np.ndarray]
    input_size: int
    class_names: list[str]
    interpolation: str = "bilinear"
    meta: dict | None = None  # zoo.json, when there is one
    model: Any = None  # the Keras model, for .keras files and bench folders

    def __call__(self, images: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(self.forward(np.asarray(images, np.float32)))
        if not np.isfinite(probabilities).all():
            raise ZooError(f"{self.path} gives NaN or inf, not probabilities; export it again from a working bench")
        return probabilities


def _locate(path: Path) -> tuple[Path, str, Path | None]:
    """(model path, kind, folder holding its zoo.json or None) for what the user named."""
    if not path.exists():
        raise ZooError(f"{path}: no such file or folder; give a .keras, .tflite or SavedModel folder zoo exported")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            meta = next((p for p in (path, path.parent) if (p / export.METADATA).is_file()), None)
            return path, "savedmodel", meta
        if (path / export.METADATA).is_file():
            model = export.read_metadata(path).get("model", "")
            if model in export.KEPT:
                return path, "bench", path
            return _locate(path / model)
        if (path / "results.json").is_file():  # a bench's --out: its classifiers are inside
            raise ZooError(
                f"{path} is a bench's results folder; give one of its classifiers ({path / 'models'}/BACKBONE), "
                f"or export the best first: zoo export {shlex.quote(str(path))}"
            )
        raise ZooError(f"{path} is a folder with neither a SavedModel nor a {export.METADATA}: not a zoo model")
    kind = {".keras": "keras", ".tflite": "tflite"}.get(path.suffix.lower())
    if path.name == "results.json":
        raise ZooError(f"{path} is a bench's results file; give the folder it is in ({path.parent})")
    if kind is None:
        raise ZooError(f"{path}: not a model zoo reads; give a .keras file, a .tflite file or a SavedModel folder")
    meta = path.parent if (path.parent / export.METADATA).is_file() else None
    if meta is not None and export.read_metadata(meta).get("model") != path.name:
        meta = None  # that zoo.json describes another file of the folder
    return path, kind, meta


def load(path: str | Path, num_threads: int | None = None) -> Classifier:
    """The classifier at `path`: an export folder or its model, a `.keras` file, a SavedModel
    folder, a `.tflite` file, or a bench's `models/BACKBONE` (or `models/ensemble`) folder.
    `num_threads` is for TFLite."""
    target, kind, meta_folder = _locate(Path(path).expanduser())
    meta = export.read_metadata(meta_folder) if meta_folder is not None else None
    if meta is not None and kind != "bench":
        export.check_model_file(target, meta)
    model = None
    if kind == "bench":
        model, meta = export.load_trained(target)
        forward, input_size = _keras_forward(model), meta["input_size"]
        kind = "keras"
    elif kind == "keras":
        model = load_keras(target, meta)
        shape = model.input_shape
        if not (isinstance(shape, tuple) and len(shape) == 4 and shape[-1] == 3 and shape[1] and shape[1] == shape[2]):
            hint = " (a bench's head: give its folder, models/BACKBONE)" if target.name == export.HEAD else ""
            raise ZooError(f"{target} takes input of shape {shape}, not (batch, size, size, 3) images{hint}")
        forward, input_size = _keras_forward(model), int(shape[1])
    elif kind == "savedmodel":
        forward, input_size = _saved_model(target)
    else:
        from zoo import tflite

        runner = tflite.Runner(target, num_threads)
        forward, input_size = runner, runner.input_shape[0]
    if meta is not None and meta.get("input_size") not in (None, input_size):
        raise ZooError(f"{target} takes {input_size} px images but its {export.METADATA} says {meta['input_size']}")
    probe = forward(np.zeros((1, input_size, input_size, 3), np.float32))
    count = int(np.asarray(probe).shape[-1])
    names = list(meta["class_names"]) if meta else _labels_beside(target) or [str(i) for i in range(count)]
    if len(names) != count:
        named_by = export.METADATA if meta else export.LABELS
        raise ZooError(f"{target} has {count} outputs but its {named_by} names {len(names)} classes")
    interpolation = (meta or {}).get("interpolation", "bilinear")
    return Classifier(target, kind, forward, input_size, names, interpolation, meta, model)


def _labels_beside(target: Path) -> list[str]:
    """The class names of a labels.txt beside a model that has no zoo.json, or []: line N names class N,
    as an export writes it, a line of spaces too (a class folder may be named so; dropping it shifted
    every later name). Empty lines at the end, which an editor may leave, name no class, nor does
    the byte order mark Notepad writes first."""
    folder = target if target.is_dir() else target.parent
    if (folder / export.METADATA).is_file():  # that labels.txt is the other model's, as its zoo.json is
        return []
    labels = folder / export.LABELS
    try:
        names = labels.read_text(encoding="utf-8-sig").splitlines()
    except OSError:
        return []
    except UnicodeDecodeError:  # its names are meant: classes by index instead would go unexplained
        raise ZooError(
            f"{labels} is not UTF-8 text; save it as UTF-8, one class a line, or remove it to show the classes by index"
        ) from None
    while names and not names[-1]:
        names.pop()
    return names


def load_keras(path: Path, meta: dict | None = None):
    """A `.keras` model, with zoo's layers and those the installed plugins register known;
    `meta`, its zoo.json, names the plugin to load when a layer of its is not known."""
    import re

    import keras

    import zoo.layers  # noqa: F401 - registers zoo's layers for load_model
    from zoo.plugin_manager import plugin_manager

    if not path.is_file():
        raise ZooError(f"{path}: no such file; bench or export it again")
    plugin_manager()  # importing the plugins runs their @register_keras_serializable
    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # Keras raises many types for a file that is not a model
        # zoo's own reason, raised inside Keras' loading (a plugin missing)
        cause = next((error for error in _chain(exc) if isinstance(error, ZooError)), None)
        if cause is not None:
            raise ZooError(f"{path} cannot be loaded: {cause}") from exc
        unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", "\n".join(map(str, _chain(exc))))
        if unknown:  # a layer a plugin registers, and that plugin is not loaded
            words, fix = export.plugin_to_load(meta)
            raise ZooError(
                f"{path} holds layer {unknown[1]}, which Keras knows only once {words} is loaded: {fix}"
            ) from exc
        raise ZooError(f"{path} is not a Keras model zoo can load ({type(exc).__name__}); export it again") from exc


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from (or while handling), innermost last."""
    found: list[BaseException] = []
    while exc is not None and all(exc is not other for other in found):
        found.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return found


def _keras_forward(model):
    from zoo.metrics import compiled_forward

    return compiled_forward(model)


def _saved_model(path: Path):
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        [(name, spec)] = loaded.signatures["serving_default"].structured_input_signature[1].items()
    except Exception as exc:  # TensorFlow raises many types for a damaged SavedModel
        raise ZooError(f"{path} is not a SavedModel zoo can load ({type(exc).__name__}); export it again") from None

    def forward(images: np.ndarray) -> np.ndarray:
        # through `loaded` on every call: its variables live only as long as it does
        outputs = loaded.signatures["serving_default"](**{name: tf.constant(images)})
        return next(iter(outputs.values())).numpy()

    if spec.shape.rank != 4 or spec.shape[-1] != 3 or spec.shape[1] is None:
        raise ZooError(f"{path} takes input of shape {spec.shape}, not (batch, size, size, 3) images")
    return forward, int(spec.shape[1])


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), most probable first


def image_files(inputs: list[str | Path]) -> list[Path]:
    """The files named, and every file inside the folders named, found as the bench finds a
    class's images (zoo.data.folder_files): broken links and linked subfolders listed (and said), hidden
    subfolders not. Each file once, where it first comes, however often it is named (a file and the
    folder it is in, or a link to it)."""
    from zoo.data import folder_files, shown_path

    files: dict[Path, Path] = {}  # the file itself → the path it was first given by
    for item in map(Path, inputs):
        if item.is_dir():
            found = folder_files(item)
        elif item.exists() or item.is_symlink():
            found = [item]
        else:
            raise ZooError(f"{shown_path(str(item))}: no such file or folder")
        for path in found:
            files.setdefault(path.resolve(), path)
    return list(files.values())


def predict(
    classifier: Classifier, inputs: list[str | Path], top_k: int = 3, progress: Progress = no_progress
) -> tuple[list[Prediction], dict[str, str]]:
    """Top-k classes of every readable image; (predictions, {skipped file: reason}).

    Files go through the bench's image check first (zoo.images), so a file that is not an
    image, or a corrupt one, is skipped with its reason instead of stopping the others.
    """
    from zoo.data import image_batches
    from zoo.images import IMAGE_EXTENSIONS, problem

    if top_k < 1:
        raise ZooError(f"--top-k {top_k}: it must be 1 or more")
    files = image_files(inputs)
    skipped: dict[str, str] = {}
    good: list[str] = []
    for index, path in enumerate(files):
        reason = problem(path)
        if reason:
            skipped[str(path)] = reason
        else:
            good.append(str(path))
        progress("checking images", index + 1, len(files))
    if not good:
        raise ZooError(
            f"no readable images among {len(files)} file{'s' * (len(files) != 1)} given"
            + (f" ({_reasons(skipped)})" if skipped else "")
            + f"; give {', '.join(IMAGE_EXTENSIONS)} files or folders of them"
        )
    predictions: list[Prediction] = []
    size, k = classifier.input_size, min(top_k, len(classifier.class_names))
    for batch in image_batches(tuple(good), size, BATCH, classifier.interpolation):
        probabilities = classifier(np.asarray(batch))
        for row in probabilities:
            order = np.argsort(-row)[:k]
            top = [(classifier.class_names[i], float(row[i])) for i in order]
            predictions.append(Prediction(good[len(predictions)], top))
        progress("predicting", len(predictions), len(good))
    return predictions, skipped


def _reasons(skipped: dict[str, str]) -> str:
    from collections import Counter

    return ", ".join(f"{count} {reason}" for reason, count in Counter(skipped.values()).most_common())
