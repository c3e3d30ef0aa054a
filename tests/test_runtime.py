"""zoo.runtime on real (tiny) Keras models: auto extracts through TFLite where it converts, agrees
and is faster; tf never converts; a backbone TFLite cannot hold falls back with a note; the
converted model is kept in the cache, reused, and not even loaded when the features are cached."""

import contextlib
import json
import os
import re
import textwrap
import time

import numpy as np
import pytest

from zoo import distributed, features, plugin_manager, runtime
from zoo.bench import bench_backbone, run_bench
from zoo.data import decoded_batches, load_dataset
from zoo.errors import ZooError
from zoo.plugin_manager import catalog
from zoo.settings import BenchSettings

# tiny_net converts to TFLite; host_net runs a Python function in its graph, which TFLite cannot.
PLUGIN = textwrap.dedent(
    """
    from zoo import BackboneSpec, hookimpl

    @hookimpl
    def zoo_backbones():
        base = dict(family="test", source="custom", input_size=32, preprocessing="unit", feature_dim=8)
        odd = {**base, "feature_dim": 3, "params": 1}
        return [BackboneSpec(name="tiny_net", reference="tiny", params=840, **base),
                BackboneSpec(name="host_net", reference="host", params=808, **base),
                BackboneSpec(name="zero_net", reference="zero", **odd),
                BackboneSpec(name="pixel_net", reference="pixel", **odd),
                BackboneSpec(name="nan_net", reference="nan", **odd),
                BackboneSpec(name="half_net", reference="half", params=224, **base)]

    @hookimpl
    def zoo_build_backbone(spec, weights):
        if spec.source != "custom":
            return None
        import keras
        import tensorflow as tf

        class Host(keras.layers.Layer):
            def call(self, x):
                y = tf.py_function(lambda t: t * 2.0, [x], tf.float32)
                y.set_shape(x.shape)
                return y

        class Rsqrt(keras.layers.Layer):  # 0 at 0 in TensorFlow (inf, clipped, times 0); NaN in TFLite
            def call(self, x):
                return x * tf.clip_by_value(tf.math.rsqrt(x), 0.0, 100.0)

        class Log(keras.layers.Layer):  # NaN everywhere, in both
            def call(self, x):
                return tf.math.log(-1.0 - x)

        inputs = keras.Input((32, 32, 3))
        means = keras.layers.GlobalAveragePooling2D()(inputs)  # of the images in [0, 1]: 0 for black
        if spec.reference in ("zero", "pixel", "nan"):
            kept = {"zero": keras.layers.ReLU()(-means), "pixel": means, "nan": means}[spec.reference]
            return keras.Model(inputs, (Log() if spec.reference == "nan" else Rsqrt())(kept))
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
        if spec.reference == "half":  # features in float16
            return keras.Model(inputs, keras.ops.cast(keras.layers.GlobalAveragePooling2D()(x), "float16"))
        x = Host()(x) if spec.reference == "host" else keras.layers.BatchNormalization()(x)
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name=f"{spec.reference}_base")
    """
)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    path = tmp_path / "runtime_plugin.py"
    path.write_text(PLUGIN)
    monkeypatch.setenv("ZOO_PLUGINS", str(path))


def settings(**changes):
    fast = dict(epochs=1, batch_size=4, weights="none", latency_runs=2, throughput_batches=1, folds=0, mirror=False)
    return BenchSettings.from_config(**{**fast, **changes})


def extractor(name="tiny_net", seed=0):
    import keras

    from zoo.models import feature_extractor
    from zoo.weights import resolve

    keras.utils.set_random_seed(seed)
    spec = catalog().get(name)
    return feature_extractor(spec, resolve(spec, "none"))


def images(count=4):
    return np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3)).astype(np.float32)


def models():
    """The converted models in the cache: path → (inode, mtime), which a new conversion changes."""
    return {
        path: (os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in (m["files"][0] for m in features.models())
    }


def test_auto_extracts_through_tflite_the_features_tensorflow_computes(plugin, tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    row = bench_backbone(catalog().get("tiny_net"), dataset, settings())
    assert row.status == "ok", row.error
    assert row.runtime == "tflite"
    assert re.fullmatch(r"TFLite [\d.]+x TensorFlow's speed \(in batches of [48]\)", row.runtime_note)
    [entry] = [entry for entry in features.entries() if entry.get("split") == "train"]
    cached = features.load("tiny_net", "train", entry["key"])
    model = extractor(seed=settings().seed)
    batches = decoded_batches(dataset.train.files, 32, 4, "bilinear")
    tf_features = np.concatenate([np.asarray(model(batch.astype(np.float32))) for batch in batches])
    assert runtime.relative_gap(cached, tf_features) < runtime.TOLERANCE


def test_the_model_is_converted_once_and_not_loaded_when_the_features_are_cached(plugin, tiny_dataset):
    spec, dataset = catalog().get("tiny_net"), load_dataset(tiny_dataset)
    steps = []
    # Mirrored, the tiny dataset has batches enough for auto's whole trial, so its choice is recorded.
    first = bench_backbone(spec, dataset, settings(mirror=True), progress=lambda step, done, total: steps.append(step))
    assert first.runtime == "tflite"
    assert "converting to TFLite (once per backbone)" in steps
    converted = models()
    assert len(converted) == 1
    features.clear(dataset=tiny_dataset)  # the features go, the converted model and the choice stay
    assert models() == converted
    steps.clear()
    again = bench_backbone(spec, dataset, settings(mirror=True), progress=lambda step, done, total: steps.append(step))
    assert again.feature_cache == "miss" and again.runtime == "tflite"
    assert again.runtime_note == f"{first.runtime_note} (chosen on an earlier bench)"  # neither traced nor timed
    assert models() == converted  # the same file: not converted again
    assert "converting to TFLite (once per backbone)" not in steps
    features.clear(backbone="tiny_net")  # every entry of the backbone, its model too
    assert models() == {} and features.entries() == []


def bench_all(specs, dataset, out, steps: list) -> list[dict]:
    """run_bench's rows, every step it reported put in `steps`."""
    return run_bench(specs, dataset, settings(), out, progress=lambda step, *_: steps.append(step), ensemble_size=0)


def test_a_bench_converts_ahead_of_its_rows_and_once(tiny_dataset, tmp_path, monkeypatch):
    (tmp_path / "runtime_plugin.py").write_text(PLUGIN)  # given as by `zoo --plugin PATH`: the child finds it too
    monkeypatch.setattr(plugin_manager, "_extra_paths", [])
    plugin_manager.add_plugin_path(str(tmp_path / "runtime_plugin.py"))
    spec, dataset = catalog().get("tiny_net"), load_dataset(tiny_dataset)
    steps = []
    [row] = bench_all([spec], dataset, tmp_path, steps)
    converting = [index for index, step in enumerate(steps) if step == f"tiny_net: {runtime.CONVERTING}"]
    assert converting == [0, 1]  # started and finished before the row's first step: not in the row
    assert row["runtime"] == "tflite" and "chosen on an earlier bench" not in row["runtime_note"]
    converted = models()
    assert len(converted) == 1  # where the row looked for it: the row did not convert
    features.clear(dataset=tiny_dataset)
    steps.clear()
    bench_all([spec], dataset, tmp_path, steps)
    assert not [step for step in steps if "converting" in step] and models() == converted


def test_a_backbone_that_cannot_convert_is_tried_ahead_once(plugin, tiny_dataset, tmp_path):
    spec, dataset = catalog().get("host_net"), load_dataset(tiny_dataset)
    [row] = bench_all([spec], dataset, tmp_path, [])
    assert row["runtime"] == "tf"
    assert row["runtime_note"] == "TFLite conversion failed: tf.EagerPyFunc is not a TFLite op"
    features.clear(dataset=tiny_dataset)
    steps = []
    bench_all([spec], dataset, tmp_path, steps)
    assert not [step for step in steps if "converting" in step]


def test_a_cache_hit_neither_converts_nor_chooses(plugin, tiny_dataset):
    spec, dataset = catalog().get("tiny_net"), load_dataset(tiny_dataset)
    assert bench_backbone(spec, dataset, settings()).runtime == "tflite"
    for path in features.models()[0]["files"]:
        os.remove(path)
    hit = bench_backbone(spec, dataset, settings())
    assert hit.status == "ok" and hit.feature_cache == "hit"
    assert hit.runtime is None and hit.runtime_note == ""
    assert models() == {}


def test_auto_chooses_on_the_batches_it_extracts_and_records_a_whole_trial(plugin):
    strategy, model = distributed.make_strategy("default"), extractor()
    batches = [np.random.default_rng(index).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8) for index in range(9)]
    extraction = runtime.Extraction("tiny_net", model, settings(), strategy, {"net": 2})
    for batch in batches:  # every batch once, through whichever candidate the trial gave it
        got = extraction(batch)
        assert runtime.relative_gap(got, np.asarray(model(batch.astype(np.float32)))) < runtime.TOLERANCE
    assert extraction.calls == len(batches)
    assert extraction.runtime == "tflite" and extraction.images_per_sec() > 0
    again = runtime.Extraction("tiny_net", model, settings(), strategy, {"net": 2})
    again(batches[0])
    assert again.note == f"{extraction.note} (chosen on an earlier bench)"


def test_a_trial_cut_short_by_the_data_is_not_recorded(plugin):
    strategy, model = distributed.make_strategy("default"), extractor()
    extraction = runtime.Extraction("tiny_net", model, settings(), strategy, {"net": 3})
    extraction(images())
    extraction(images())  # TensorFlow's first timed batch; TFLite is never timed
    assert extraction.runtime == "tf" and extraction.note == "too few batches to time TFLite against TensorFlow"
    again = runtime.Extraction("tiny_net", model, settings(), strategy, {"net": 3})
    again(images())
    assert again.runtime == "tf" and "chosen on an earlier bench" not in again.note
    longer = runtime.Extraction("tiny_net", model, settings(), strategy, {"net": 4})
    for count in (4, 4, 2):  # the last, short of a batch, through TFLite untimed: the note must say so
        longer(images(count))
    assert longer.runtime == "tf" and longer.note.endswith(" (1 of 3 batches ran through TFLite, agreeing)")


def test_tf_never_converts(plugin):
    model = extractor()
    extraction = runtime.Extraction("tiny_net", model, settings(runtime="tf"), distributed.make_strategy("default"), {})
    np.testing.assert_allclose(extraction(images()), np.asarray(model(images())), rtol=1e-5, atol=1e-6)
    assert extraction.runtime == "tf" and extraction.note == "--runtime tf"
    assert models() == {}


def test_auto_under_a_strategy_is_tensorflow(plugin):
    strategy = distributed.make_strategy("default")
    extraction = runtime.Extraction("tiny_net", extractor(), settings(strategy="mirrored"), strategy, {})
    extraction(images())
    assert extraction.runtime == "tf" and extraction.note == "auto with --strategy mirrored"


def test_a_damaged_converted_model_is_converted_again_with_a_note(plugin):
    strategy, model = distributed.make_strategy("default"), extractor()
    runtime.Extraction("tiny_net", model, settings(runtime="tflite"), strategy, {"net": 1})(images())
    [path] = models()
    with open(path, "r+b") as handle:
        handle.seek(100)
        handle.write(b"garbled")
    extraction = runtime.Extraction("tiny_net", model, settings(runtime="tflite"), strategy, {"net": 1})
    assert runtime.relative_gap(extraction(images()), np.asarray(model(images()))) < runtime.TOLERANCE
    assert extraction.runtime == "tflite"
    assert extraction.note.startswith("damaged TFLite cache entry tiny_net-") and "converted again" in extraction.note
    assert list(models()) == [path]


def test_a_backbone_tflite_cannot_hold_falls_back_to_tensorflow_with_a_note(plugin, tiny_dataset):
    spec, dataset = catalog().get("host_net"), load_dataset(tiny_dataset)
    row = bench_backbone(spec, dataset, settings())
    assert row.status == "ok", row.error
    assert row.runtime == "tf"
    assert row.runtime_note == "TFLite conversion failed: tf.EagerPyFunc is not a TFLite op"
    features.clear(dataset=tiny_dataset)
    again = bench_backbone(spec, dataset, settings())  # the failure is kept: no conversion tried again
    assert again.runtime_note == f"{row.runtime_note} (chosen on an earlier bench)"
    forced = bench_backbone(spec, dataset, settings(runtime="tflite", cache=False))
    assert forced.status == "failed"
    assert forced.error == (
        "--runtime tflite: TFLite conversion failed: tf.EagerPyFunc is not a TFLite op; "
        "use --runtime tf for this backbone"
    )


def test_the_runtime_is_a_setting(monkeypatch):
    from zoo import config

    assert BenchSettings.from_config().runtime == "auto"
    config.path().write_text('[bench]\nruntime = "tflite"\n')
    assert config.lookup("bench.runtime") == ("tflite", str(config.path()))
    monkeypatch.setenv("ZOO_BENCH_RUNTIME", "TF")
    assert BenchSettings.from_config().runtime == "tf"
    assert BenchSettings.from_config(runtime="tflite").runtime == "tflite"
    monkeypatch.setenv("ZOO_BENCH_RUNTIME", "fast")
    with pytest.raises(ZooError, match="ZOO_BENCH_RUNTIME.* is not auto, tf or tflite"):
        BenchSettings.from_config()
    monkeypatch.delenv("ZOO_BENCH_RUNTIME")
    with pytest.raises(ZooError, match="--runtime onnx: use one of auto, tf, tflite"):
        BenchSettings.from_config(runtime="onnx", epochs=1).validate()


def test_the_conversion_child_stops_once_its_memory_has_grown_and_says_how_far_it_got(plugin, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "CHILD_GROWTH_MB", -(10**6))  # always past it: one backbone a child
    runtime._convert_for_bench("none", 42, ["tiny_net", "host_net"])
    assert capsys.readouterr().out.split("\n") == ["start tiny_net", "done tiny_net", ""]
    assert [entry["backbone"] for entry in features.models()] == ["tiny_net"]


def test_every_backbone_is_converted_ahead_in_order_and_a_later_bench_converts_none(plugin, tiny_dataset, tmp_path):
    specs, dataset = [catalog().get("tiny_net"), catalog().get("host_net")], load_dataset(tiny_dataset)
    steps = []
    rows = bench_all(specs, dataset, tmp_path, steps)
    converting = [step for step in steps if runtime.CONVERTING in step]
    assert (
        steps[:4] == converting == [f"{name}: {runtime.CONVERTING}" for name in ("tiny_net",) * 2 + ("host_net",) * 2]
    )
    assert [row["runtime"] for row in rows] == ["tflite", "tf"]
    assert rows[1]["runtime_note"] == "TFLite conversion failed: tf.EagerPyFunc is not a TFLite op"
    steps.clear()
    bench_all(specs, dataset, tmp_path, steps)
    assert not [step for step in steps if "converting" in step]


def test_nan_from_tflite_alone_is_no_agreement_tensorflow_extracts_instead(plugin, tiny_dataset):
    """rsqrt(0) is NaN in TFLite and inf in TensorFlow: a NaN agrees with nothing, and a head
    trained on NaN would still score."""
    spec, dataset = catalog().get("zero_net"), load_dataset(tiny_dataset)
    row = bench_backbone(spec, dataset, settings())
    assert row.status == "ok", row.error
    assert (row.runtime, row.runtime_note) == ("tf", runtime.NOT_FINITE)
    assert all(np.isfinite(features.load("zero_net", e["split"], e["key"])).all() for e in features.entries())
    forced = bench_backbone(spec, dataset, settings(runtime="tflite", cache=False))
    assert forced.status == "failed"
    assert forced.error == f"--runtime tflite: {runtime.NOT_FINITE}; use --runtime tf for this backbone"


def test_a_later_batch_that_only_tflite_cannot_compute_goes_through_tensorflow_from_there(plugin):
    strategy, model = distributed.make_strategy("default"), extractor("pixel_net")
    extraction = runtime.Extraction("pixel_net", model, settings(), strategy, {"net": 6})
    extraction(images())  # agrees: no image is black
    black = np.zeros((4, 32, 32, 3), np.uint8)  # TFLite's NaN, TensorFlow's 0
    outputs = [extraction(black) for _ in range(4)]  # the trial gives one to TFLite before long
    assert all(np.isfinite(output).all() for output in outputs)
    np.testing.assert_allclose(outputs[-1], np.asarray(model(black.astype(np.float32))))
    assert (extraction.runtime, extraction.note) == ("tf", runtime.NOT_FINITE)
    again = runtime.Extraction("pixel_net", model, settings(), strategy, {"net": 6})
    again(images())
    assert (again.runtime, again.note) == ("tf", f"{runtime.NOT_FINITE} (chosen on an earlier bench)")


def test_features_that_are_nan_through_tensorflow_too_fail_the_row_in_one_line(plugin, tiny_dataset):
    row = bench_backbone(catalog().get("nan_net"), load_dataset(tiny_dataset), settings())
    assert row.status == "failed"
    assert row.error == (
        "the backbone gives NaN or inf features for images 1-4 of 12; its model or preprocessing "
        "must compute finite numbers (a division by zero?)"
    )
    assert features.entries() == [] and features.partials() == []  # nothing half-made is kept


def test_float16_features_come_out_of_tflite_as_the_numbers_they_are(plugin, tiny_dataset):
    strategy, model = distributed.make_strategy("default"), extractor("half_net")
    extraction = runtime.Extraction("half_net", model, settings(runtime="tflite"), strategy, {"net": 7})
    got = extraction(images())
    assert np.abs(got).max() > 0
    assert runtime.relative_gap(got, np.asarray(model(images()), np.float32)) < 1e-3  # float16's precision


def test_a_converter_killed_on_the_way_is_not_a_backbone_that_cannot_convert(plugin):
    """Killed (the out-of-memory killer, say), the converter leaves TensorFlow for this row, with
    a note that says so, and nothing recorded: the next bench converts."""
    import threading

    import psutil

    strategy, model = distributed.make_strategy("default"), extractor()
    extraction = runtime.Extraction("tiny_net", model, settings(), strategy, {"net": 8})
    thread = threading.Thread(target=extraction, args=(images(),))
    thread.start()
    while thread.is_alive():
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if "zoo.tflite" in child.cmdline():
                    child.kill()
        time.sleep(0.02)
    thread.join()
    assert extraction.runtime == "tf"
    assert re.fullmatch(r"the TFLite converter was stopped by signal 9 \(out of memory\?\); .*", extraction.note)
    again = runtime.Extraction("tiny_net", model, settings(runtime="tflite"), strategy, {"net": 8})
    assert runtime.relative_gap(again(images()), np.asarray(model(images()))) < runtime.TOLERANCE
    assert again.runtime == "tflite"


def test_clearing_a_backbone_forgets_what_was_measured_of_it(plugin, tiny_dataset):
    """Its runtime choice, its interpreter's batch, its FLOPs and speed: a recorded failure to
    convert, say, is no longer served once the backbone is cleared."""
    dataset = load_dataset(tiny_dataset)
    for name in ("host_net", "tiny_net"):
        bench_backbone(catalog().get(name), dataset, settings(mirror=True))
    measures = features.cache_dir("features", "measures")
    mine = lambda: {path for path in measures.glob("*.json") if json.loads(path.read_text())["backbone"] == "host_net"}  # noqa: E731
    kept = set(measures.glob("*.json")) - mine()
    assert {path.name.split("-")[0] for path in mine()} >= {"runtime", "unconvertible", "flops", "speed"}
    features.clear(backbone="host_net")
    assert mine() == set() and set(measures.glob("*.json")) == kept
