"""zoo: which pretrained backbone is best for my data, and at what cost?

The Python API in brief: `list_backbones()`, `get_backbone(name)`, `create_model(name, ...)`,
`bench(names, data, ...)` and `load(path)`; for plugins, `hookimpl`, `BackboneSpec`, `Weights`,
and `specs_from_toml` to declare specs from a TOML file the plugin ships (or
`specs_from_mapping`, from Python data).
Importing zoo imports nothing: each name loads its module on first use, and building or loading
a model imports TensorFlow. (The `zoo` command imports this package before it can take Ctrl-C
quietly, so the package loads nothing it can do without.)
"""

from __future__ import annotations

import importlib
import sys
import types

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing, which takes longer than the rest
if TYPE_CHECKING:
    from zoo.declare import specs_from_mapping, specs_from_toml
    from zoo.errors import ZooError
    from zoo.hookspecs import hookimpl
    from zoo.spec import PREPROCESSING, BackboneSpec, Normalization, Weights

#: Where each of the package's names is defined, imported on first use.
_LAZY = {
    "specs_from_mapping": "zoo.declare",
    "specs_from_toml": "zoo.declare",
    "ZooError": "zoo.errors",
    "hookimpl": "zoo.hookspecs",
    "PREPROCESSING": "zoo.spec",
    "BackboneSpec": "zoo.spec",
    "Normalization": "zoo.spec",
    "Weights": "zoo.spec",
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "PREPROCESSING",
    "BackboneSpec",
    "Normalization",
    "Weights",
    "ZooError",
    "bench",
    "create_model",
    "get_backbone",
    "hookimpl",
    "list_backbones",
    "load",
    "specs_from_mapping",
    "specs_from_toml",
]


def list_backbones() -> list[str]:
    """Names of every backbone the installed plugins provide, sorted."""
    from zoo.plugin_manager import catalog

    return sorted(catalog().backbones)


def get_backbone(name: str) -> BackboneSpec:
    """The spec of one backbone; a ZooError suggests close names when there is none."""
    from zoo.plugin_manager import catalog

    return catalog().get(name)


def create_model(name: str, num_classes: int, weights: str = "auto"):
    """A Keras classifier: backbone `name` frozen, a new `num_classes` softmax head on top."""
    from zoo.models import create_model as create

    return create(name, num_classes, weights)


def load(path, num_threads: int | None = None):
    """A trained classifier: an export (`.keras`, SavedModel folder, `.tflite`) or a bench's
    `models/BACKBONE` folder. Call it on a float32 batch of 0..255 RGB images of its
    `input_size` for class probabilities; `class_names` names them, `model` is the Keras model
    (None for SavedModel and TFLite)."""
    from zoo.predict import load as load_classifier

    return load_classifier(path, num_threads)


class _Package(types.ModuleType):
    """Loading the submodule zoo.bench sets the package's attribute `bench` to it, which would
    hide the function `bench`; the function stays (the module is `sys.modules["zoo.bench"]`)."""

    def __setattr__(self, name: str, value: object) -> None:
        if not (name == "bench" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def bench(names, data=None, *, out=None, classifiers: bool = False, resume: bool = False, **settings):
    """Bench backbones from Python, with `zoo bench`'s progress bars and outputs under `out`.

    `names`: a backbone name or a list of them; `data`: a folder with train/ and test/
    (default: the embedded sample); `settings`: the bench settings by name (epochs,
    batch_size, learning_rate, weights, mode, mirror, ...). Returns the rows as results.json
    holds them, and with `classifiers=True` also {backbone: trained Keras classifier}.
    """
    import dataclasses
    from pathlib import Path

    from zoo.cli import bench_with_progress
    from zoo.data import load_dataset
    from zoo.errors import ZooError
    from zoo.plugin_manager import catalog
    from zoo.report import results_lock
    from zoo.sample_data import sample_dataset
    from zoo.settings import BenchSettings
    from zoo.weights import validate_weights_mode

    known = {field.name for field in dataclasses.fields(BenchSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ZooError(f"unknown bench settings {', '.join(unknown)}; use {', '.join(sorted(known))}")
    specs = [catalog().get(name) for name in ([names] if isinstance(names, str) else names)]
    chosen = BenchSettings.from_config(**settings)
    chosen.validate()
    validate_weights_mode(chosen.weights, len(specs))
    data = data if data is not None else sample_dataset()
    out_dir = Path(out) if out is not None else Path("zoo-results") / Path(data).expanduser().resolve().name
    trained: dict | None = {} if classifiers else None
    with results_lock(out_dir):
        rows = bench_with_progress(specs, load_dataset(data), chosen, out_dir, resume, trained)
    return (rows, trained) if classifiers else rows
