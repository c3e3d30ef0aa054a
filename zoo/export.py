"""Keep what the bench trained, and ship it: a Keras classifier plus the metadata that says what
it is, written as `.keras`, a SavedModel or `.tflite`.

The bench saves each ok row's classifier under `--out/models/<backbone>/`: the trained head
(`head.keras`, kilobytes) and `zoo.json`, which names everything needed to rebuild the whole
classifier (backbone, weights identity and a hash of the built base, class names in order,
input size, settings, the row's accuracy); after `--mode finetune` the base changed too, so the
whole `classifier.keras` is kept instead. An export is a folder holding the model (`model.keras`,
`saved_model/` or `model.tflite`), `labels.txt` and `zoo.json`. Every exported model takes raw
0..255 RGB images of the backbone's input size: the preprocessing is inside.

`export` needs only a Keras model and its metadata dict, so any classifier built on these pieces
(an ensemble, say) exports the same way.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from zoo import atomic, plugin_manager
from zoo.ensemble import KIND as ENSEMBLE
from zoo.errors import ZooError, one_line
from zoo.features import weights_digest
from zoo.spec import INTERPOLATIONS, BackboneSpec, file_stem
from zoo.weights import MODES, ResolvedWeights, file_digest

METADATA = "zoo.json"
LABELS = "labels.txt"
HEAD = "head.keras"
CLASSIFIER = "classifier.keras"
#: The `model` of an ensemble's zoo.json: it is made of the members that zoo.json names.
MEMBERS = "members"
#: What the `model` of a classifier the bench kept (not exported) is.
KEPT = (HEAD, CLASSIFIER, MEMBERS)
#: Where in a bench's --out the ensemble row is kept (the rows' classifiers are in models/BACKBONE).
ENSEMBLE_FOLDER = f"models/{ENSEMBLE}"
#: What `--format` writes inside the export folder.
FORMATS = {"keras": "model.keras", "savedmodel": "saved_model", "tflite": "model.tflite"}
#: Training images the int8 quantizer calibrates on (TFLite's guide: a few hundred).
CALIBRATION_IMAGES = 200


def metadata(spec: BackboneSpec, weights: ResolvedWeights, extractor, class_names, settings: dict, row: dict) -> dict:
    """What a trained classifier is: enough to rebuild it, label its outputs and judge it."""
    pinned = spec.weights.pinned_hash if spec.weights is not None and weights.label == spec.weights.label else None
    return {
        "kind": "backbone",
        "backbone": spec.name,
        "plugin": spec.plugin,
        "plugin_from": plugin_manager.loaded_from(spec.plugin),
        "input_size": spec.input_size,
        "interpolation": spec.interpolation,
        "preprocessing": spec.preprocessing_name,
        "class_names": list(class_names),
        "weights": {
            "label": weights.label,
            "note": weights.note,
            "file": weights.path,
            "pinned_hash": f"{pinned[0]}:{pinned[1]}" if pinned else None,
            "base_sha256": weights_digest(extractor),  # a rebuilt base must match it
        },
        "settings": settings,
        "accuracy": {key: row.get(key) for key in ("top1", "top1_one_view", "top5", "test_images")},
        "dataset": row.get("dataset"),
    }


def _write_metadata(folder: Path, meta: dict) -> None:
    model = folder / str(meta.get("model"))
    meta = {key: value for key, value in meta.items() if key != "sha256"}  # a bench's head's, say
    if model.is_file():  # so a model file swapped in later is caught (check_model_file)
        meta["sha256"] = file_digest(model, "sha256")
    atomic.write_text(folder / METADATA, json.dumps(meta, indent=2, default=str) + "\n")
    atomic.write_text(folder / LABELS, "".join(f"{name}\n" for name in meta["class_names"]))


def read_metadata(folder: Path) -> dict:
    """A folder's zoo.json; a one-line error when it is missing or damaged."""
    path = folder / METADATA
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"{folder} holds no {METADATA}: it is not a classifier zoo saved or exported") from None
    except (OSError, ValueError) as exc:
        raise ZooError(f"{path} is damaged ({type(exc).__name__}); bench or export again") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("class_names"), list):
        raise ZooError(f"{path} is damaged (it names no class_names); bench or export again")
    size = meta.get("input_size", 1)
    problems = {
        "its class_names are not all text": not all(isinstance(name, str) for name in meta["class_names"]),
        "its model is not a file name": not isinstance(meta.get("model", ""), str),
        "its input_size is not a positive whole number": isinstance(size, bool)
        or not isinstance(size, int)
        or size < 1,
        "its backbone is not a name": not isinstance(meta.get("backbone", ""), str),
        "its interpolation is not one zoo knows": meta.get("interpolation", "bilinear") not in INTERPOLATIONS,
        "its weights or settings are not objects": not all(
            isinstance(meta.get(key, {}), dict) for key in ("weights", "settings")
        ),
    }
    problem = next((problem for problem, found in problems.items() if found), "")
    if problem:
        raise ZooError(f"{path} is damaged ({problem}); bench or export again")
    return meta


def check_model_file(path: Path, meta: dict) -> None:
    """Refuse a model file that is not the one its zoo.json was written for (another export's,
    or another backbone's head, copied over it): its labels and accuracy would describe another model."""
    recorded = meta.get("sha256")
    if recorded and path.is_file() and file_digest(path, "sha256") != recorded:
        raise ZooError(
            f"{path} is not the model its {METADATA} was written for (its sha256 differs); "
            "export or bench it again, or delete that zoo.json"
        )


def save_trained(folder: Path, model, meta: dict, whole: bool) -> None:
    """Keep a bench row's classifier: its head (or, `whole`, all of it) and its metadata."""
    target = folder / (CLASSIFIER if whole else HEAD)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (model if whole else model.get_layer("head")).save(target)
    except OSError as exc:
        raise ZooError(
            f"cannot save its classifier in {folder} ({exc.strerror or exc}); free that path or choose another --out"
        ) from None
    for stale in {folder / HEAD, folder / CLASSIFIER} - {target}:
        stale.unlink(missing_ok=True)
    _write_metadata(folder, {**meta, "model": target.name})


def save_ensemble(results: Path, row: dict, rows: list[dict]) -> str | None:
    """Keep the ensemble `row` of the bench in `results` beside its members (`rows` has them):
    a zoo.json naming each member, its weight in the average and where its classifier is kept.
    Returns its folder relative to `results`, or None when a member kept no (readable) classifier."""
    kept = {r["backbone"]: r["classifier"] for r in rows if r.get("classifier")}
    try:
        members = {name: read_metadata(results / kept[name]) for name in row["members"]}
    except (KeyError, ZooError):
        return None
    largest = max(members.values(), key=lambda meta: meta["input_size"])
    shared = ("class_names", "settings", "dataset", "model")
    meta = {
        "kind": ENSEMBLE,
        "backbone": row["backbone"],
        "members": {
            name: {"weight": weight, "kept": kept[name], **{k: v for k, v in members[name].items() if k not in shared}}
            for name, weight in row["members"].items()
        },
        "input_size": largest["input_size"],
        "interpolation": largest["interpolation"],
        **{key: largest[key] for key in ("class_names", "settings", "dataset")},
        "accuracy": {key: row.get(key) for key in ("top1", "top5", "test_images")},
        "model": MEMBERS,
    }
    (results / ENSEMBLE_FOLDER).mkdir(parents=True, exist_ok=True)
    _write_metadata(results / ENSEMBLE_FOLDER, meta)
    return ENSEMBLE_FOLDER


def trained_folder(results: Path, backbone: str | None = None) -> Path:
    """The saved classifier of `backbone` in a bench's results folder; without one, the best row's."""
    from zoo import report

    saved = report.read_results(results)
    ok = [row for row in report.ranked(saved["backbones"]) if row.get("status") == "ok" and row.get("classifier")]
    if backbone == ENSEMBLE:  # the ensemble row by its kind, whatever its members
        backbone = next((row["backbone"] for row in ok if row.get("kind") == ENSEMBLE), backbone)
        if backbone == ENSEMBLE and saved.get("no_ensemble"):
            raise ZooError(f"{results} has no ensemble row: {saved['no_ensemble']}")
    if backbone is None:
        if not ok:
            raise ZooError(
                f"{results} has no successful bench row with a saved classifier; run zoo bench --out {results}"
            )
        backbone = ok[0]["backbone"]
    row = next((row for row in ok if row["backbone"] == backbone), None)
    unkept = [r["backbone"] for r in saved["backbones"] if r.get("kind") == ENSEMBLE and not r.get("classifier")]
    if row is None and unkept and backbone in (ENSEMBLE, *unkept):  # save_ensemble found a member's classifier missing
        raise ZooError(
            f"{results} kept no classifier for its ensemble row: a member's classifier was not there when it was "
            "made; bench again (a merge: put its shards' folders back, or merge them again from where they are now)"
        )
    if row is None:
        names = ", ".join(row["backbone"] for row in ok) or "none"
        raise ZooError(f"{results} has no saved classifier for {backbone}; it has: {names}")
    return kept_folder(results, row["classifier"], backbone)


def kept_folder(results: Path, kept: str, backbone: str) -> Path:
    """Where the bench in `results` kept `backbone`'s classifier (`kept`: relative to `results`,
    or absolute where a merge names it in its shard's folder), said in one line when it is gone."""
    folder = results / kept
    if not folder.exists():
        raise ZooError(
            f"{backbone}'s classifier is not in {folder} any more: put that folder back, or bench again "
            "(a merge's rows are kept in their shards' folders: merge them again from where they are now)"
        )
    return folder


def load_trained(folder: Path):
    """The whole Keras classifier a bench saved in `folder`, and its metadata.

    A head is put back on a base rebuilt with the same weights; a base whose weights hash
    differs from the one the head was trained on (a changed file, another seed) is refused.
    """
    import keras

    import zoo.layers  # noqa: F401 - registers zoo's layers for load_model
    from zoo.models import classifier, feature_extractor
    from zoo.predict import load_keras
    from zoo.weights import resolve

    meta = read_metadata(folder)
    saved = folder / meta.get("model", HEAD)
    needed = ("members",) if saved.name == MEMBERS else ("backbone", "input_size", "weights", "settings")
    missing = [key for key in needed if key not in meta]
    if missing:
        raise ZooError(f"{folder / METADATA} is damaged (it has no {', '.join(missing)}); bench again")
    check_model_file(saved, meta)
    if saved.name == CLASSIFIER:
        return load_keras(saved, meta), meta
    if saved.name == MEMBERS:
        return _load_ensemble(folder, meta), meta
    spec = _backbone_spec(folder, meta)
    if spec.input_size != meta["input_size"]:
        raise ZooError(f"{meta['backbone']} now takes {spec.input_size} px, the saved head {meta['input_size']}")
    recorded = meta["weights"]
    if recorded["label"] == "random":
        keras.utils.set_random_seed(meta["settings"]["seed"])  # as the bench did before building it
        weights = ResolvedWeights(None, "random")
    else:  # what the base was built from: the path given (--weights PATH, kept absolute), else the pinned weights
        given = meta["settings"].get("weights", "auto")
        mode = "imagenet" if given in MODES else recorded["file"] or given
        try:
            weights = resolve(spec, mode)
        except ZooError as exc:
            raise ZooError(
                f"the {spec.name} base of {folder} cannot be rebuilt with the weights it was trained on: {exc}"
            ) from None
    extractor = feature_extractor(spec, weights)
    if weights_digest(extractor) != recorded["base_sha256"]:
        raise ZooError(
            f"the {spec.name} base built now ({weights.label}: {weights.note or 'random init'}) is not the "
            f"one its head in {folder} was trained on; bench it again"
        )
    return classifier(spec, extractor, load_keras(saved, meta)), meta


def _backbone_spec(folder: Path, meta: dict) -> BackboneSpec:
    """The installed spec of a kept classifier's backbone; when the plugin it was benched with is
    not loaded now, a one-line error naming that plugin and how to load it (not `unknown backbone`)."""
    catalog = plugin_manager.catalog()
    plugin = meta.get("plugin")
    known = {info.name for info in catalog.plugins} | set(catalog.left_out)  # left out: get() says so
    if meta["backbone"] in catalog.backbones or not isinstance(plugin, str) or not plugin or plugin in known:
        return catalog.get(meta["backbone"])
    words, fix = plugin_to_load(meta)
    raise ZooError(f"{folder} was benched with backbone {meta['backbone']} of {words}, which is not loaded now: {fix}")


def plugin_to_load(meta: dict | None) -> tuple[str, str]:
    """(the plugin a kept or exported classifier was benched with, in words; how to load it),
    from its zoo.json (`plugin_from`: its distribution or file), for when that plugin is missing."""
    plugin = (meta or {}).get("plugin")
    recorded = (meta or {}).get("plugin_from")
    where: dict = recorded if isinstance(recorded, dict) else {}
    if not isinstance(plugin, str) or not plugin:
        return "a plugin", "install it, or pass --plugin FILE with its file"
    if where.get("distribution"):
        return f"plugin {plugin} (distribution {where['distribution']})", (
            f"pip install {where['distribution']}, or pass --plugin FILE"
        )
    if where.get("file"):
        return f"plugin {plugin} ({where['file']})", f"pass --plugin {shlex.quote(where['file'])}"
    return f"plugin {plugin}", "install it, or pass --plugin FILE"


def _load_ensemble(folder: Path, meta: dict):
    """The ensemble kept in `folder` (a bench's models/ensemble) as one Keras model, its members
    rebuilt from where the bench kept them."""
    from zoo.models import ensemble_classifier

    results = folder.resolve().parents[1]  # `zoo predict .` from inside it, say
    members = meta["members"].values()
    classifiers = [
        load_trained(kept_folder(results, member["kept"], name))[0] for name, member in meta["members"].items()
    ]
    return ensemble_classifier(
        list(zip(classifiers, (member["interpolation"] for member in members))),
        [member["weight"] for member in members],
        meta["input_size"],
        meta["interpolation"],
    )


def calibration_batches(data: str | Path, meta: dict, count: int = CALIBRATION_IMAGES) -> Iterable[np.ndarray]:
    """Up to `count` images of `data` (a dataset's train/, or any folder of images), resized as the
    model wants, for int8 calibration."""
    from zoo.data import folder_files, image_batches
    from zoo.images import IMAGE_EXTENSIONS, problem

    root = Path(data).expanduser()
    if not root.is_dir():
        raise ZooError(f"--data {data}: no such folder; give a folder of training images")
    found = folder_files(root / "train" if (root / "train").is_dir() else root)
    files = [str(p) for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and not problem(p)]
    if not files:
        raise ZooError(f"--data {data} holds no readable images to calibrate on; give a folder of training images")
    chosen = np.random.default_rng(0).permutation(len(files))[:count]
    size = meta["input_size"]
    batches = image_batches(tuple(files[i] for i in chosen), size, 16, meta.get("interpolation", "bilinear"))
    return [np.asarray(batch) for batch in batches]


def export(
    model,
    meta: dict,
    fmt: str,
    out: Path,
    quantize: str = "none",
    calibration: Iterable[np.ndarray] | None = None,
) -> Path:
    """Write `model` as `fmt` into the folder `out` with labels.txt and zoo.json; returns the model's path."""
    from zoo import tflite

    if fmt not in FORMATS:
        raise ZooError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    if quantize != "none" and fmt != "tflite":
        raise ZooError(f"--quantize {quantize} is for --format tflite; {fmt} models stay float32")
    _check_out(out, FORMATS[fmt])
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"--out {out}: cannot make that folder ({exc.strerror or exc}); choose another --out") from None
    target = out / FORMATS[fmt]
    try:
        if fmt == "keras":
            model.save(target)
            _check_loads(target, meta)
        elif fmt == "savedmodel":
            model.export(str(target), verbose=False)
        else:
            converted = tflite.convert(model, quantize, calibration)
            _check_converted(model, converted, meta)
            with atomic.atomic_path(target) as temporary:
                temporary.write_bytes(converted)
    except BaseException:  # a failed export leaves no folder it made behind
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) if target.is_dir() else target.stat().st_size
    _write_metadata(out, {**meta, "model": target.name, "format": fmt, "quantize": quantize, "bytes": size})
    return target


def _check_out(out: Path, model_name: str) -> None:
    """Refuse an --out where the export would overwrite what describes another model: a bench's
    results folder or its kept classifiers (models/), or a folder whose zoo.json names another
    model file (another format's export, a kept head): that model would be left unlabelled."""
    here = out.resolve()
    for results in (here, *here.parents):
        if (results / "results.json").is_file() and (here == results or here.is_relative_to(results / "models")):
            raise ZooError(
                f"--out {out} is {'the bench results folder' if here == results else 'inside the kept classifiers of'} "
                f"{results}, which the export would overwrite; give another --out (without one it goes to "
                f"{results / 'export'}/)"
            )
    if (out / METADATA).is_file():
        try:
            held = read_metadata(out).get("model")
        except ZooError:  # a damaged zoo.json describes nothing: exporting again is its fix
            return
        if held != model_name:
            raise ZooError(
                f"--out {out} already holds another model ({held}, which its {METADATA} describes); "
                "give another --out, or delete that folder first"
            )


def _check_loads(target: Path, meta: dict) -> None:
    """A `.keras` file that Keras cannot load back (a plugin's layer it does not know) is refused
    here, where the plugin can be named, rather than by `zoo predict`."""
    from zoo.predict import load_keras

    try:
        load_keras(target)
    except ZooError as exc:
        target.unlink(missing_ok=True)
        raise ZooError(
            f"{meta['backbone']} does not load back from .keras ({one_line(exc.__cause__ or exc)}); its plugin "
            "must register its layers with @keras.saving.register_keras_serializable(), or use --format "
            "savedmodel or tflite"
        ) from None


def _check_converted(model, converted: bytes, meta: dict) -> None:
    """A TFLite model whose outputs are not numbers where the Keras model's are (an op that
    TFLite computes otherwise, rsqrt(0) say) is refused: every prediction would be NaN."""
    from zoo.tflite import Runner

    size = int(meta["input_size"])
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    images[0] = 0  # a black image: zeros are where NaN comes from
    expected = np.asarray(model(images, training=False))
    got = Runner(converted)(images)
    if np.isfinite(expected).all() and not np.isfinite(got).all():
        raise ZooError(
            f"{meta['backbone']} converted to TFLite gives NaN or inf where the Keras model gives numbers; "
            "export --format keras or savedmodel instead"
        )


def default_out(meta: dict, fmt: str, quantize: str, results: Path | None) -> Path:
    """Where `zoo export` writes without --out: beside the bench results, or in the current folder."""
    # named as the row's other files (q:v1 as q@v1, apart from q_v1); ensemble(a+b) as ensemble_a+b
    backbone = re.sub(r"[^\w.@+-]+", "_", file_stem(meta["backbone"])).strip("_")
    name = f"{backbone}-{fmt}" + (f"-{quantize}" if quantize != "none" else "")
    return (results / "export" if results is not None else Path(os.curdir) / "zoo-export") / name
