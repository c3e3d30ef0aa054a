"""The feature cache's key names what the features are, and a damaged entry is never served.

Real plugins, built and benched for real: editing a builder, a preprocessing callable or the
content of a weights file is a cache miss; leaving them alone is a hit.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images, write_plugins
from typer.testing import CliRunner

from zoo import features
from zoo.bench import BenchSettings, bench_backbone, run_bench
from zoo.cli import app
from zoo.data import load_dataset
from zoo.plugin_manager import build_backbone, catalog, plugin_manager

runner = CliRunner()
PLUGIN = textwrap.dedent(
    """
    from zoo import BackboneSpec, Normalization, hookimpl

    def prepare(images):
        return images / 255.0

    @hookimpl
    def zoo_backbones():
        return [BackboneSpec(name=name, family="test", source="custom", reference="edited",
                             input_size=32, preprocessing=prepare, feature_dim=8, params=440)
                for name in ("edited", "edited_b")]

    @hookimpl
    def zoo_build_backbone(spec, weights):
        import keras
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
        if weights:
            model.load_weights(weights)
        return model
    """
)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Write the plugin; `plugin(old, new)` edits its source as an author would."""
    [path] = write_plugins(tmp_path, monkeypatch, edited_plugin=PLUGIN)

    def edit(old: str, new: str) -> None:
        source = path.read_text()
        assert old in source
        path.write_text(source.replace(old, new, 1))
        stat = path.stat()  # a later second, as a real edit would be, so no stale bytecode is used
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        plugin_manager.cache_clear()
        catalog.cache_clear()

    return edit


def settings(**changes):
    fast = dict(epochs=1, batch_size=8, weights="none", latency_runs=1, throughput_batches=1, mirror=False)
    return BenchSettings.from_config(**{**fast, **changes})


def cache_status(dataset, **changes) -> str:
    row = bench_backbone(catalog().get("edited"), dataset, settings(**changes))
    assert row.status == "ok", row.error
    return row.feature_cache


def test_editing_the_builder_or_the_preprocessing_is_a_miss_and_nothing_else_is(plugin, tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    assert cache_status(dataset) == "miss"
    assert cache_status(dataset) == "hit"
    plugin("return images / 255.0", "return images * 0.0")  # the preprocessing's body
    assert cache_status(dataset) == "miss"
    plugin('Conv2D(4, 3, strides=2, activation="relu")', 'Conv2D(2, 3, strides=2, activation="tanh")')
    assert cache_status(dataset) == "miss"
    # Constants, as EfficientNet-Lite declares its (x-127)/128: keyed by their values.
    plugin("preprocessing=prepare", "preprocessing=Normalization((0.0,) * 3, (255.0,) * 3)")
    assert cache_status(dataset) == "miss"
    assert cache_status(dataset) == "hit"
    plugin("(255.0,) * 3)", "(128.0,) * 3)")
    assert cache_status(dataset) == "miss"


@pytest.mark.parametrize("preprocessing", ["functools.partial(scale, factor=1 / 255.0)", "Scale(1 / 255.0)"])
def test_a_partial_or_a_callable_object_is_known_by_what_it_computes_not_where_it_lives(
    plugin, tiny_dataset, preprocessing
):
    """Its repr holds its address, which a module loaded again (a new process) changes: no miss."""
    plugin("preprocessing=prepare", f"preprocessing={preprocessing}")
    plugin(
        "def prepare(images):",
        "import functools\n\ndef scale(images, factor):\n    return images * factor\n\n"
        "class Scale:\n    def __init__(self, factor):\n        self.factor = factor\n\n"
        "    def __call__(self, images):\n        return images * self.factor\n\ndef prepare(images):",
    )
    dataset = load_dataset(tiny_dataset)
    assert cache_status(dataset) == "miss"
    plugin("1 / 255.0)", "1 / 255.0)")  # loaded again, unchanged
    assert cache_status(dataset) == "hit"
    plugin("1 / 255.0)", "2 / 255.0)")
    assert cache_status(dataset) == "miss"


def test_a_weights_file_with_new_content_is_a_miss_even_at_the_same_size_and_mtime(plugin, tiny_dataset, tmp_path):
    """Weights are known by the values the built extractor holds, not by the file's path or dates."""
    import keras

    dataset, path = load_dataset(tiny_dataset), tmp_path / "edited.weights.h5"
    for seed in (1, 2):  # two weights files of the same size and layout, different values
        keras.utils.set_random_seed(seed)
        build_backbone(catalog().get("edited"), None).save_weights(tmp_path / f"seed{seed}.weights.h5")
    first, second = tmp_path / "seed1.weights.h5", tmp_path / "seed2.weights.h5"
    assert first.stat().st_size == second.stat().st_size
    path.write_bytes(first.read_bytes())
    stamp = path.stat()
    assert cache_status(dataset, weights=str(path)) == "miss"
    path.write_bytes(second.read_bytes())
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert cache_status(dataset, weights=str(path)) == "miss"
    path.write_bytes(second.read_bytes())  # the same content written again: new dates only
    assert cache_status(dataset, weights=str(path)) == "hit"


def test_weights_the_builder_loads_itself_are_known_by_their_values(plugin, tiny_dataset, tmp_path):
    """A builder that fills its model from a file of its own, declared nowhere: that file's
    new content is a miss too."""
    import keras

    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        build_backbone(catalog().get("edited"), None).save_weights(tmp_path / f"seed{seed}.weights.h5")
    own = tmp_path / "own.weights.h5"
    own.write_bytes((tmp_path / "seed1.weights.h5").read_bytes())
    plugin("    if weights:\n", f"    model.load_weights({str(own)!r})\n    if weights:\n")
    dataset = load_dataset(tiny_dataset)
    assert cache_status(dataset) == "miss"
    assert cache_status(dataset) == "hit"
    own.write_bytes((tmp_path / "seed2.weights.h5").read_bytes())
    assert cache_status(dataset) == "miss"


def loaded(tmp_path, source: str):
    """`source` written to a file and imported as a fresh module, as a plugin's code is (a new
    folder each time, so no bytecode of an earlier version is used)."""
    import importlib.util

    path = tmp_path / f"version{len(list(tmp_path.glob('version*')))}" / "edited_module.py"
    path.parent.mkdir()
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("edited_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PREPROCESSING = textwrap.dedent(
    """
    import functools
    import numpy as np
    import tensorflow as tf

    SCALE = 255.0
    OFFSET = np.float32(0.5)
    MEAN = np.array([0.4, 0.5, 0.6])

    def helper(images):
        '''To [0, 1].'''
        return images / SCALE

    def prepare(images):
        '''Scaled, then centred.'''
        return helper(images) - OFFSET - MEAN

    @tf.function
    def traced(images):
        return images * 2.0

    class Scaler:
        def __init__(self, factor):
            self.factor = factor

        def __call__(self, images):
            return images * self.factor

    scaler = Scaler(3.0)
    partial = functools.partial(np.multiply, 2.0)

    import keras
    rescaling = keras.layers.Rescaling(1 / 255.0)

    import dataclasses, types

    @dataclasses.dataclass(frozen=True)
    class Config:
        shift: float

    CONFIG = Config(shift=1.0)

    def configured(images):
        return images - CONFIG.shift

    constants = types.ModuleType("edited_module.constants")  # as `from . import constants`
    constants.SPREAD = 2.0

    def spread(images):
        return images * constants.SPREAD

    CHANNELS = {0, 1, 2}

    def channelled(images):
        return tf.gather(images, sorted(CHANNELS), axis=-1)

    SHIFT = tf.constant([1.0, 2.0, 3.0])

    def shifted(images):
        return images - SHIFT

    resize = keras.layers.Resizing(8, 8)

    def resized(images):
        return resize(images)

    adapted = keras.layers.Normalization()
    adapted.adapt(np.array([[1.0], [3.0]]))

    def normalized(images):
        return adapted(images)

    pipeline = keras.Sequential([keras.layers.Resizing(8, 8), keras.layers.Rescaling(0.5)])

    class Shift(keras.layers.Layer):
        def __init__(self, shift, **kwargs):
            super().__init__(**kwargs)
            self.shift = shift

        def call(self, images):
            return images - self.shift

    shift = Shift(1.0)

    initializer = keras.initializers.Constant(0.5)  # a Keras object with a config, not a layer

    class Norm:
        CENTRE = 0.5

    def namespaced(images):
        return images - Norm.CENTRE

    constants.deeper = types.ModuleType("edited_module.constants.deeper")
    constants.deeper.DEPTH = 4.0

    def deep(images):
        return images * constants.deeper.DEPTH

    ACTIVATION = tf.nn.relu

    def activated(images):
        return ACTIVATION(images)

    def initialized(images):
        return images * initializer.value

    NS = types.SimpleNamespace(mean=127.0)  # a config object of no package of its own

    def namespace(images):
        return images - NS.mean

    def scaled(factor):
        def decorate(function):
            @functools.wraps(function)
            def wrapper(images):
                return function(images) * factor
            return wrapper
        return decorate

    @scaled(2.0)
    def decorated(images):
        return images

    @functools.cache
    def unit():
        return 255.0

    def cached(images):
        return images / unit()

    class Method:
        FACTOR = 2.0

        def run(self, images):
            return images * self.FACTOR

    method = Method().run

    class Slotted:
        __slots__ = ("factor",)

        def __init__(self, factor):
            self.factor = factor

        def __call__(self, images):
            return images * self.factor

    slotted = Slotted(2.0)
    """
)


@pytest.mark.parametrize(
    "name, old, new",
    [
        ("prepare", "SCALE = 255.0", "SCALE = 127.5"),  # a module constant it reads, through a helper
        ("prepare", "images / SCALE", "images * SCALE"),  # the helper's body
        ("prepare", "np.float32(0.5)", "np.float32(0.25)"),
        ("prepare", "[0.4, 0.5, 0.6]", "[0.4, 0.5, 0.7]"),
        ("traced", "images * 2.0", "images * 4.0"),  # under tf.function
        ("scaler", "Scaler(3.0)", "Scaler(4.0)"),  # an object's attribute
        ("scaler", "images * self.factor", "images / self.factor"),  # its class's code
        ("partial", "(np.multiply, 2.0)", "(np.multiply, 3.0)"),
        ("rescaling", "1 / 255.0", "1 / 127.5"),  # a Keras layer, by its config
        ("configured", "Config(shift=1.0)", "Config(shift=2.0)"),  # an object of the module's class
        ("spread", "SPREAD = 2.0", "SPREAD = 3.0"),  # a constant of a module of its package
        ("channelled", "{0, 1, 2}", "{0, 2, 1, 3}"),  # a set
        ("shifted", "[1.0, 2.0, 3.0]", "[1.0, 2.0, 4.0]"),  # a tensor
        ("resized", "Resizing(8, 8)", "Resizing(6, 6)"),  # a Keras layer it calls, by its config
        ("normalized", "[[1.0], [3.0]]", "[[1.0], [5.0]]"),  # and by its weights (what adapt learnt)
        ("adapted", "[[1.0], [3.0]]", "[[1.0], [5.0]]"),  # such a layer as the preprocessing itself
        ("pipeline", "Rescaling(0.5)", "Rescaling(0.25)"),  # a model, known by its layers' configs
        ("shift", "Shift(1.0)", "Shift(2.0)"),  # a layer of one's own: its arguments
        ("shift", "images - self.shift", "images + self.shift"),  # and its code
        ("initialized", "images * initializer", "images / initializer"),  # another Keras object: no harm
        ("namespaced", "CENTRE = 0.5", "CENTRE = 0.25"),  # a class attribute
        ("deep", "DEPTH = 4.0", "DEPTH = 5.0"),  # a constant two modules down
        ("activated", "= tf.nn.relu", "= tf.nn.relu6"),  # which library function it holds
        ("namespace", "mean=127.0", "mean=0.0"),  # a SimpleNamespace's field
        ("decorated", "@scaled(2.0)", "@scaled(3.0)"),  # one's own decorator: what it adds
        ("cached", "return 255.0", "return 127.5"),  # a helper under functools.cache
        ("method", "FACTOR = 2.0", "FACTOR = 3.0"),  # a bound method's class attribute
        ("slotted", "Slotted(2.0)", "Slotted(3.0)"),  # an object's __slots__
    ],
)
def test_the_preprocessing_is_known_by_what_its_code_reads(tmp_path, name, old, new):
    before = features.preprocessing_identity(getattr(loaded(tmp_path, PREPROCESSING), name))
    moved = loaded(tmp_path, "# moved down a line\n" + PREPROCESSING)  # not a change
    assert features.preprocessing_identity(getattr(moved, name)) == before
    edited = loaded(tmp_path, PREPROCESSING.replace(old, new))
    assert features.preprocessing_identity(getattr(edited, name)) != before


@pytest.mark.parametrize(
    "old, new",
    [
        ("To [0, 1].", "Divided by SCALE."),  # a helper's, reworded
        ("    '''To [0, 1].'''\n", ""),  # removed (None takes its place among the constants)
        ("    '''Scaled, then centred.'''\n", ""),  # the function's own, removed
    ],
)
def test_a_docstring_is_no_change(tmp_path, old, new):
    before = features.preprocessing_identity(loaded(tmp_path, PREPROCESSING).prepare)
    assert old in PREPROCESSING
    assert features.preprocessing_identity(loaded(tmp_path, PREPROCESSING.replace(old, new)).prepare) == before


LAYERS = textwrap.dedent(
    """
    import keras

    import numpy as np

    FACTOR = 2.0

    class Scale(keras.layers.Layer):
        SHIFT = 1.0

        def call(self, x):
            return x * FACTOR + self.SHIFT

    class Offset(keras.layers.Layer):  # its get_config fails: an array and a function are no config
        def __init__(self, offset, activation):
            super().__init__()
            self.offset, self.activation = offset, activation

        def call(self, x):
            return self.activation(x) + self.offset

    class Private(keras.layers.Layer):  # what it keeps is private, and no config says it
        def __init__(self, factor):
            super().__init__()
            self._factor = factor

        def call(self, x):
            return x * self._factor

    def build():
        inputs = keras.Input((8, 8, 3))
        x = Scale()(keras.layers.Conv2D(4, 3)(inputs))
        x = keras.layers.Lambda(lambda t: t + FACTOR)(x)
        x = Offset(np.array([4.0]), keras.ops.relu)(x)
        x = Private(7.0)(x)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    """
)


@pytest.mark.parametrize(
    "old, new",
    [
        ("x * FACTOR", "x - FACTOR"),
        ("t + FACTOR", "t * FACTOR"),
        ("2.0", "3.0"),
        ("SHIFT = 1.0", "SHIFT = 2.0"),  # a class attribute its code reads
        ("np.array([4.0])", "np.array([5.0])"),  # an argument of a layer whose config fails
        ("keras.ops.relu)", "keras.ops.tanh)"),
        ("Private(7.0)", "Private(8.0)"),  # a private attribute its own code keeps
    ],
)
def test_the_architecture_is_known_by_the_code_of_layers_that_are_not_keras_own(tmp_path, old, new):
    """A custom layer's config says nothing of its `call`: its code (and what that reads) does."""
    before = features.architecture_digest(loaded(tmp_path, LAYERS).build())
    assert features.architecture_digest(loaded(tmp_path, LAYERS).build()) == before
    assert features.architecture_digest(loaded(tmp_path, LAYERS.replace(old, new)).build()) != before


def test_a_module_beside_the_plugin_is_known_by_its_code(tmp_path, monkeypatch):
    """A helper module that no distribution installs (next to a single-file plugin, on sys.path)
    has no version to be known by: its code is read as the plugin's own."""
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "edited_helpers", None)  # put back as it was
    source = (
        "import edited_helpers\nfrom edited_helpers import scale\n"
        "def prepare(images):\n    return scale(images) - edited_helpers.SHIFT\n"
    )

    def identity(helpers: str) -> str:
        folder = tmp_path / f"helpers{len(list(tmp_path.glob('helpers*')))}"  # no stale bytecode
        folder.mkdir()
        (folder / "edited_helpers.py").write_text(helpers)
        sys.path.insert(0, str(folder))
        del sys.modules["edited_helpers"]
        return features.preprocessing_identity(loaded(tmp_path, source).prepare)

    helpers = "SHIFT = 1.0\ndef scale(images):\n    return images / 255.0\n"
    before = identity(helpers)
    assert identity(helpers) == before
    assert identity(helpers.replace("/ 255.0", "/ 127.5")) != before  # its function's body
    assert identity(helpers.replace("SHIFT = 1.0", "SHIFT = 2.0")) != before  # its constant


def installed(site, version: str):
    """A package `helperlib` of `version`, installed into the folder `site` with its metadata,
    imported from there as a fresh module."""
    import importlib
    import sys

    (site / "helperlib").mkdir(parents=True)
    (site / "helperlib" / "__init__.py").write_text("def normalize(x):\n    return x / 127.5 - 1\n")
    info = site / f"helperlib-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: helperlib\nVersion: {version}\n")
    (info / "top_level.txt").write_text("helperlib\n")
    sys.modules.pop("helperlib", None)
    sys.path.insert(0, str(site))
    features._version.cache_clear()  # a new process would read the installed versions afresh
    return importlib.import_module("helperlib")


@pytest.mark.parametrize(
    "source",
    [
        "import helperlib\ndef prepare(images):\n    return helperlib.normalize(images)\n",  # its module
        "from helperlib import normalize\ndef prepare(images):\n    return normalize(images)\n",  # its function
    ],
)
def test_a_package_the_preprocessing_calls_is_known_by_its_version(tmp_path, monkeypatch, source):
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "helperlib", None)  # put back as it was
    installed(tmp_path / "site1", "1.0.0")
    before = features.preprocessing_identity(loaded(tmp_path, source).prepare)
    assert features.preprocessing_identity(loaded(tmp_path, source).prepare) == before
    sys.path.remove(str(tmp_path / "site1"))
    installed(tmp_path / "site2", "2.0.0")  # upgraded: its code is another's
    assert features.preprocessing_identity(loaded(tmp_path, source).prepare) != before
    features._version.cache_clear()


def test_the_identity_names_the_versions_of_zoo_and_of_what_computes(tiny_plugin):
    from importlib.metadata import version

    from zoo.models import feature_extractor
    from zoo.plugin_manager import catalog
    from zoo.weights import resolve

    spec = catalog().get("tiny_cnn")
    identity = features.identity(spec, feature_extractor(spec, resolve(spec, "none")))
    assert identity["zoo"] == f"zoo {version('zoo')}"
    tensorflow, keras, numpy = identity["libraries"]
    assert tensorflow.startswith("tensorflow") and keras == f"keras {version('keras')}"
    assert numpy == f"numpy {version('numpy')}"


def test_the_data_files_are_known_by_their_real_path(tmp_path, monkeypatch):
    """The same folder by another path is the same data; the same relative path from another
    working directory is other data."""
    for where in ("a", "b"):
        make_images(tmp_path / where / "ds" / "train", {"cat": 2}, size=16, seed=3)  # the same names
    (tmp_path / "link").symlink_to(tmp_path / "a" / "ds")

    def fingerprint(folder) -> str:
        return features.files_fingerprint(sorted(str(path) for path in Path(folder).rglob("*.jpg")))

    monkeypatch.chdir(tmp_path / "a")
    here = fingerprint("ds")
    assert fingerprint(tmp_path / "a" / "ds") == here and fingerprint(tmp_path / "link") == here
    monkeypatch.chdir(tmp_path / "b")
    assert fingerprint("ds") != here


def test_a_savedmodel_is_known_by_its_graph_as_well_as_its_variables(tmp_path):
    """A hub backbone from a local folder, exported again with the same variables but another
    activation: its config names the folder only, its weights are the same."""
    import keras

    def exported(activation: str):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation=activation)(inputs))
        keras.Model(inputs, outputs).export(str(tmp_path / "saved"), verbose=False)
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.TFSMLayer(str(tmp_path / "saved"), call_endpoint="serve")(inputs))

    relu = exported("relu")
    architecture, weights = features.architecture_digest(relu), features.weights_digest(relu)
    tanh = exported("tanh")
    assert features.weights_digest(tanh) == weights
    assert features.architecture_digest(tanh) != architecture


def test_each_image_is_decoded_once_for_every_backbone_of_its_size_and_the_mirror_view(plugin, tmp_path):
    from zoo import data

    make_images(tmp_path / "data/train", {"dark": 4, "light": 4})  # files no other test decoded
    make_images(tmp_path / "data/test", {"dark": 2, "light": 2}, seed=1)
    dataset = load_dataset(tmp_path / "data")
    before = data.decoded_count
    specs = [catalog().get("edited"), catalog().get("edited_b")]
    rows = run_bench(specs, dataset, settings(mirror=True), tmp_path / "out")
    assert [row["status"] for row in rows] == ["ok", "ok"], [row["error"] for row in rows]
    assert [row["feature_cache"] for row in rows] == ["miss", "miss"]  # 4 views each, 8 extractions
    assert data.decoded_count - before == len(dataset.train) + len(dataset.test)


# Issue 17: bad input that reaches the cache. 17.2: a damaged entry is detected, named in one
# line and recomputed, never served and never a failed row. 17.11: a cache record that is not an
# object, or has a `created` that is not a time. 17.14: `.partial` files of killed runs.


def damage(path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    elif how == "empty":  # NumPy says EOFError, not ValueError
        path.write_bytes(b"")
    elif how == "misrecorded":  # the array sound, its record wrong (as `zoo cache list` would show it)
        record = path.with_suffix(".json")
        record.write_text(json.dumps({**json.loads(record.read_text()), "count": 10, "dim": 7}))
    elif how == "garbled":  # the header intact, the body overwritten
        data = bytearray(path.read_bytes())
        data[-16:] = b"\x7f" * 16
        path.write_bytes(bytes(data))
    else:  # a valid array, the wrong number of rows
        np.save(path, np.zeros((5, 8), np.float32))


def cached_entry(split: str):
    [entry] = [entry for entry in features.entries() if entry["split"] == split]
    return Path(entry["files"][0])


@pytest.mark.parametrize("how", ["truncated", "empty", "garbled", "wrong shape", "misrecorded"])
def test_a_damaged_entry_is_not_loaded(how, tmp_path):
    stored = features.store("net", "train", "k", {}, lambda d: features.extract([np.ones((12, 8))], lambda b: b, 12, 8, d))
    damage(cached_entry("train"), how)
    with pytest.raises(features.DamagedEntry, match=r"^damaged feature cache entry net-train-k\.npy \(.+\); recomputed$"):
        features.load("net", "train", "k", stored.shape)
    assert features.entries() == []  # gone, so the next store writes it afresh


def test_bench_recomputes_damaged_entries_with_one_line_each_and_the_same_result(plugin, tiny_dataset, tmp_path):
    arguments = ["bench", "edited", "--data", str(tiny_dataset), "--weights", "none", "--epochs", "1",
                 "--batch-size", "8", "--mirror", "--out"]
    first = runner.invoke(app, [*arguments, str(tmp_path / "first")])
    assert first.exit_code == 0, first.output
    for split, how in (("train", "truncated"), ("train-mirrored", "garbled"), ("test", "wrong shape")):
        damage(cached_entry(split), how)
    second = runner.invoke(app, [*arguments, str(tmp_path / "second")])
    assert second.exit_code == 0, second.output
    [line] = [line for line in second.stderr.splitlines() if "damaged feature cache entry" in line]
    assert line.startswith("edited: ") and line.count("damaged feature cache entry") == 3
    assert "shape (5, 8), expected (6, 8)" in line
    assert "checksum does not match" in line and "Traceback" not in second.output
    [before], [after] = (json.loads((tmp_path / name / "results.json").read_text())["backbones"]
                         for name in ("first", "second"))
    assert after["status"] == "ok" and after["feature_cache"] == "hit, miss"
    assert after["confusion_matrix"] == before["confusion_matrix"]
    for entry in features.entries():  # replaced by sound entries
        assert features.load("edited", entry["split"], entry["key"], (entry["count"], 8)) is not None


def test_a_cache_that_cannot_take_an_entry_is_a_note_and_the_features_are_extracted_without_it(
    plugin, tiny_dataset, tmp_path
):
    """A folder where the entry's file should go (as root, the one unwritable place a test can
    make): the row still runs, on the same features, and says so once."""
    arguments = ["bench", "edited", "--data", str(tiny_dataset), "--weights", "none", "--epochs", "1",
                 "--batch-size", "8", "--no-mirror", "--out"]
    assert runner.invoke(app, [*arguments, str(tmp_path / "first")]).exit_code == 0
    entry = cached_entry("train")
    entry.unlink()
    entry.mkdir()
    second = runner.invoke(app, [*arguments, str(tmp_path / "second")])
    assert second.exit_code == 0, second.output
    [before], [after] = (json.loads((tmp_path / name / "results.json").read_text())["backbones"]
                         for name in ("first", "second"))
    assert after["status"] == "ok" and after["feature_cache"] == "hit, off"
    assert after["feature_cache_note"].count("cannot write the feature cache in ") == 1
    assert after["feature_cache_note"].endswith("(Is a directory); extracted without it")
    assert after["confusion_matrix"] == before["confusion_matrix"]


@pytest.mark.parametrize("record", ["[]", '{"backbone": "net", "split": "train", "created": "yesterday"}'])
def test_cache_list_and_clear_survive_a_bad_record(record):
    folder = features.cache_dir("features")
    (folder / "net-train-k.json").write_text(record)
    np.save(folder / "net-train-k.npy", np.zeros((2, 2), np.float32))
    listed = runner.invoke(app, ["cache", "list"])
    assert listed.exit_code == 0, listed.output
    assert "1 entry," in listed.stdout and ("damaged" in listed.stdout) == (record == "[]")
    assert json.loads(runner.invoke(app, ["cache", "list", "--json"]).stdout)["entries"][0]["created"] > 0
    cleared = runner.invoke(app, ["cache", "clear", "--older-than", "0s"])
    assert cleared.exit_code == 0 and "removed 2 files" in cleared.stdout, cleared.output


def test_partial_files_of_a_killed_run_are_listed_then_removed_by_the_next_run():
    folder = features.cache_dir("features")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = folder / f".net-train-k.npy.{gone.pid}.partial"
    live = folder / f".net-test-k.npy.{os.getpid()}.partial"
    for path in (stale, live):
        path.write_bytes(b"half")
    listed = runner.invoke(app, ["cache", "list"]).stdout
    assert f"pid {gone.pid}, left by a killed run" in listed and f"pid {os.getpid()}, being written" in listed
    features.store("net", "train", "k2", {}, lambda d: features.extract([np.ones((2, 2))], lambda b: b, 2, 2, d))
    assert not stale.exists() and live.exists()


def test_clear_by_age_and_by_dataset(tmp_path):
    for name, dataset in (("old", tmp_path / "a"), ("new", tmp_path / "b")):
        meta = {"dataset": str(dataset.resolve())}
        features.store(name, "train", "k", meta, lambda d: features.extract([np.ones((2, 2))], lambda b: b, 2, 2, d))
    record = features.cache_dir("features") / "old-train-k.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "created": time.time() - 31 * 86400}))
    assert runner.invoke(app, ["cache", "clear", "--older-than", "30d"]).stdout.startswith("removed 2 files")
    assert [entry["backbone"] for entry in features.entries()] == ["new"]
    gone = runner.invoke(app, ["cache", "clear", "--dataset", str(tmp_path / "a")]).stdout
    assert gone.startswith("removed 0") and f"nothing cached is for --dataset {tmp_path / 'a'}; cached: " in gone
    assert str(tmp_path / "b") in gone
    typo = runner.invoke(app, ["cache", "clear", "--backbone", "neww"]).stdout
    assert "nothing cached is for --backbone neww; cached: new (zoo cache list)" in typo
    assert runner.invoke(app, ["cache", "clear", "--dataset", str(tmp_path / "b")]).stdout.startswith("removed 2")
    bad = runner.invoke(app, ["cache", "clear", "--older-than", "30 days"])
    assert bad.exit_code == 2 and "give a number and a unit" in bad.output
