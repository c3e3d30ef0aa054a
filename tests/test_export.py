"""Using the winner: the bench keeps each classifier, `zoo export` writes it in every format,
`zoo predict` and `zoo.load` classify real image files with any of them, and bad input is one line."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from conftest import TINY_PLUGIN, write_plugins
from typer.testing import CliRunner

import zoo
from zoo import export
from zoo.cli import app
from zoo.errors import ZooError
from zoo.predict import predict
from zoo.report import read_results

runner = CliRunner()
FAST = ["--epochs", "2", "--batch-size", "4", "--weights", "none", "--no-mirror"]


def _fresh_catalog():
    from zoo import plugin_manager

    plugin_manager.plugin_manager.cache_clear()
    plugin_manager.catalog.cache_clear()


@pytest.fixture(scope="module")
def benched_once(tmp_path_factory, tiny_dataset):
    """One real `zoo bench` through the CLI for the whole module: two ok rows and a failed one."""
    root = tmp_path_factory.mktemp("benched")
    with pytest.MonkeyPatch.context() as patch:
        write_plugins(root, patch, tiny_plugin=TINY_PLUGIN)
        patch.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        _fresh_catalog()
        result = runner.invoke(
            app,
            [
                "bench",
                "tiny_cnn",
                "tiny_cnn_b",
                "broken_net",
                "--data",
                str(tiny_dataset),
                "--out",
                str(root / "results"),
                *FAST,
            ],
        )
    _fresh_catalog()
    assert result.exit_code == 1, result.output  # broken_net fails; the others are kept
    return root, result.output


@pytest.fixture
def benched(benched_once, monkeypatch, tmp_path):
    """A copy of the bench's --out folder (tests change it), with its plugin installed."""
    root, output = benched_once
    monkeypatch.setenv("ZOO_PLUGINS", str(root / "tiny_plugin.py"))
    _fresh_catalog()
    shutil.copytree(root / "results", tmp_path / "results")
    return tmp_path / "results", output.replace(str(root / "results"), str(tmp_path / "results"))


def test_bench_keeps_each_ok_row_with_what_rebuilds_it(benched, tiny_dataset):
    out, output = benched
    rows = {row["backbone"]: row for row in json.loads((out / "results.json").read_text())["backbones"]}
    assert rows["broken_net"]["classifier"] is None and rows["tiny_cnn"]["classifier"] == "models/tiny_cnn"
    meta = json.loads((out / "models/tiny_cnn/zoo.json").read_text())
    assert meta["kind"] == "backbone" and meta["class_names"] == ["dark", "light"] and meta["input_size"] == 32
    assert meta["accuracy"]["top1"] == rows["tiny_cnn"]["top1"] and meta["settings"]["epochs"] == 2
    assert meta["weights"]["label"] == "random" and len(meta["weights"]["base_sha256"]) == 64
    assert (out / "models/tiny_cnn/labels.txt").read_text() == "dark\nlight\n"
    assert (out / "models/tiny_cnn/head.keras").stat().st_size < 100_000
    best = max((row for row in rows.values() if row["status"] == "ok"), key=lambda row: row["top1"])
    assert f"Best: {best['backbone']}" in output and f"zoo export {out} {best['backbone']}" in output


def test_a_rebuilt_classifier_scores_the_test_images_as_the_bench_did(benched, tiny_dataset):
    out, _ = benched
    classifier = zoo.load(out / "models/tiny_cnn")
    predictions, skipped = predict(classifier, [tiny_dataset / "test"], top_k=1)
    correct = [p.top[0][0] == ("dark" if "dark_" in p.file else "light") for p in predictions]
    row = next(r for r in json.loads((out / "results.json").read_text())["backbones"] if r["backbone"] == "tiny_cnn")
    assert not skipped and np.mean(correct) == pytest.approx(row["top1"])


def test_every_format_predicts_the_same(benched, tiny_dataset, tmp_path):
    out, _ = benched
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    expected = zoo.load(out / "models/tiny_cnn")(images)
    for fmt, quantize, tolerance in (
        ("keras", "none", 1e-5),
        ("savedmodel", "none", 1e-5),
        ("tflite", "none", 1e-4),
        ("tflite", "float16", 1e-2),
        ("tflite", "int8", 0.1),
    ):
        result = runner.invoke(app, ["export", str(out), "tiny_cnn", "--format", fmt, "--quantize", quantize])
        assert result.exit_code == 0, result.output
        folder = out / "export" / ("tiny_cnn-" + fmt + ("" if quantize == "none" else f"-{quantize}"))
        model = folder / export.FORMATS[fmt]
        assert (folder / "labels.txt").read_text() == "dark\nlight\n"
        assert json.loads((folder / "zoo.json").read_text())["quantize"] == quantize
        for path in (folder, model):  # the export folder or the model in it
            loaded = zoo.load(path)
            assert loaded.class_names == ["dark", "light"] and loaded.input_size == 32
            np.testing.assert_allclose(loaded(images), expected, atol=tolerance, err_msg=f"{fmt} {quantize}")


def test_a_row_of_a_plugin_file_not_loaded_now_names_that_file(benched, benched_once, tiny_dataset, monkeypatch):
    out, _ = benched
    plugin = benched_once[0] / "tiny_plugin.py"
    monkeypatch.delenv("ZOO_PLUGINS")
    _fresh_catalog()
    expected = (
        f"{out / 'models/tiny_cnn'} was benched with backbone tiny_cnn of plugin tiny_plugin ({plugin}), "
        f"which is not loaded now: pass --plugin {plugin}"
    )
    for command in (["export", str(out), "tiny_cnn"], ["predict", str(out / "models/tiny_cnn"), str(tiny_dataset)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and expected in result.output.replace("\n", ""), result.output


def test_export_and_predict_take_plugin_after_the_command(benched, benched_once, tiny_dataset, tmp_path, monkeypatch):
    # as bench and weights take it
    out, _ = benched
    plugin = benched_once[0] / "tiny_plugin.py"
    monkeypatch.delenv("ZOO_PLUGINS")
    _fresh_catalog()
    result = runner.invoke(app, ["export", str(out), "tiny_cnn", "--plugin", str(plugin), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(out / "models/tiny_cnn"), str(tiny_dataset / "test"), "--plugin", str(plugin)])
    assert result.exit_code == 0 and "dark_0.jpg" in result.output, result.output


def test_a_row_of_an_installed_distribution_not_loaded_now_says_what_to_pip_install(benched, monkeypatch):
    out, _ = benched
    meta_path = out / "models/tiny_cnn/zoo.json"
    meta = json.loads(meta_path.read_text())
    meta.update(plugin="tiny_dist", plugin_from={"distribution": "zoo-tiny"})
    meta_path.write_text(json.dumps(meta))
    monkeypatch.delenv("ZOO_PLUGINS")
    _fresh_catalog()
    with pytest.raises(ZooError) as caught:
        zoo.load(out / "models/tiny_cnn")
    assert str(caught.value).endswith(
        "backbone tiny_cnn of plugin tiny_dist (distribution zoo-tiny), which is not loaded now: "
        "pip install zoo-tiny, or pass --plugin FILE"
    )


def test_predict_prints_a_table_json_and_csv_and_skips_unreadable_files(benched, tiny_dataset, tmp_path):
    out, _ = benched
    assert runner.invoke(app, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "x")]).exit_code == 0
    folder = tmp_path / "photos"
    shutil.copytree(tiny_dataset / "test" / "dark", folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "cut.jpg").write_bytes((folder / "dark_0.jpg").read_bytes()[:100])
    result = runner.invoke(
        app, ["predict", str(tmp_path / "x"), str(folder), "--top-k", "2", "--csv", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "dark_0.jpg" in result.output and "skipped 2 files" in result.output
    assert "notes.txt" in result.stderr and "cut.jpg" in result.stderr  # which ones, as the bench says
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "file,class1,probability1,class2,probability2" and len(lines) == 4
    result = runner.invoke(app, ["predict", str(tmp_path / "x" / "model.tflite"), str(folder / "dark_1.jpg"), "--json"])
    data = json.loads(result.stdout)
    assert [entry["class"] for entry in data["predictions"][0]["top"]] in (["dark", "light"], ["light", "dark"])


def test_a_tflite_without_zoo_metadata_predicts_by_index(benched, tiny_dataset, tmp_path):
    out, _ = benched
    runner.invoke(app, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "x")])
    bare = tmp_path / "bare" / "other.tflite"
    bare.parent.mkdir()
    shutil.copy(tmp_path / "x" / "model.tflite", bare)
    result = runner.invoke(app, ["predict", str(bare), str(tiny_dataset / "test" / "dark"), "--json"])
    assert result.exit_code == 0, result.output
    classes = {entry["class"] for p in json.loads(result.stdout)["predictions"] for entry in p["top"]}
    assert classes == {"0", "1"} and "classes are shown by index" in result.stderr
    shutil.copy(tmp_path / "x" / "model.tflite", tmp_path / "x" / "old.tflite")  # beside another export's zoo.json
    result = runner.invoke(app, ["predict", str(tmp_path / "x" / "old.tflite"), str(tiny_dataset / "test" / "dark")])
    assert "has a zoo.json beside it for another model: classes are shown by index" in result.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nothing.tflite", "no such file"),
        (lambda d: (d / "junk.tflite").write_bytes(b"\0" * 64) and d / "junk.tflite", "is not a TFLite model"),
        (lambda d: (d / "junk.keras").write_bytes(b"PK junk") and d / "junk.keras", "is not a Keras model"),
        (lambda d: (d / "m.onnx").write_bytes(b"x") and d / "m.onnx", "not a model zoo reads"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "neither a SavedModel nor a zoo.json"),
    ],
    ids=["missing", "corrupt_tflite", "corrupt_keras", "other_format", "plain_folder"],
)
def test_a_model_that_is_not_one_is_one_line(make, message, tmp_path, tiny_dataset):
    result = runner.invoke(app, ["predict", str(make(tmp_path)), str(tiny_dataset / "test")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_bad_images_and_sizes_are_one_line(benched, tmp_path):
    out, _ = benched
    runner.invoke(app, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "x")])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hello")
    result = runner.invoke(app, ["predict", str(tmp_path / "x"), str(tmp_path / "docs")])
    assert result.exit_code == 2 and "no readable images among 1 file given (1 not an image file type)" in result.output
    meta = json.loads((tmp_path / "x" / "zoo.json").read_text())
    (tmp_path / "x" / "zoo.json").write_text(json.dumps({**meta, "input_size": 64}))  # a model of another size
    result = runner.invoke(app, ["predict", str(tmp_path / "x"), str(out)])
    assert result.exit_code == 2 and "takes 32 px images but its zoo.json says 64" in result.output


def test_export_refuses_what_it_cannot_do(benched, tmp_path):
    out, _ = benched
    for args, message in (
        (["--format", "onnx"], "--format onnx: use one of keras, savedmodel, tflite"),
        (["--format", "keras", "--quantize", "int8"], "--quantize int8 is for --format tflite"),
        (["broken_net"], "no saved classifier for broken_net; it has: tiny_cnn"),
        (["--format", "tflite", "--quantize", "float16", "--data", str(out)], "is the int8 calibration images"),
    ):
        result = runner.invoke(app, ["export", str(out), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    result = runner.invoke(app, ["export", str(tmp_path), "--format", "keras"])
    assert result.exit_code == 2 and "neither a SavedModel nor a zoo.json" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "nores")])
    assert result.exit_code == 2 and "no such file or folder; give a bench's --out folder" in result.output
    result = runner.invoke(app, ["predict", str(out), str(tmp_path)])  # the bench folder, not a classifier
    assert result.exit_code == 2 and f"give one of its classifiers ({out / 'models'}/BACKBONE)" in result.output


def odd_classifier(layer):
    """A small classifier of 16 px images with `layer` (of a class Keras was not told of) inside."""
    import keras

    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(layer(pooled)))


def test_an_export_that_would_not_predict_is_refused_in_one_line(tmp_path):
    """A TFLite model whose outputs are NaN where Keras' are numbers (rsqrt(0)), or a .keras file
    that Keras cannot load back: refused when exported, naming what to do, and nothing is left."""
    import keras
    import tensorflow as tf

    class Rsqrt(keras.layers.Layer):  # 0 at 0 in Keras; NaN in TFLite
        def call(self, x):
            return x * tf.clip_by_value(tf.math.rsqrt(x), 0.0, 100.0)

    meta = {"backbone": "odd_net", "input_size": 16}
    with pytest.raises(ZooError, match="^odd_net converted to TFLite gives NaN or inf where the Keras model gives"):
        export.export(odd_classifier(Rsqrt()), meta, "tflite", tmp_path / "lite")
    with pytest.raises(ZooError) as caught:
        export.export(odd_classifier(Rsqrt()), meta, "keras", tmp_path / "keras")
    assert str(caught.value).startswith("odd_net does not load back from .keras (TypeError: ")
    assert "register its layers with @keras.saving.register_keras_serializable()" in str(caught.value)
    assert not (tmp_path / "lite").exists() and not (tmp_path / "keras").exists()  # nothing left behind


def test_a_changed_base_is_refused(benched):
    out, _ = benched
    meta_path = out / "models/tiny_cnn/zoo.json"
    meta = json.loads(meta_path.read_text())
    meta["settings"]["seed"] += 1  # the base rebuilt now is not the one the head saw
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ZooError, match="is not the one its head in .* was trained on"):
        zoo.load(out / "models/tiny_cnn")


def test_python_bench_returns_rows_and_trained_classifiers(tiny_plugin, tiny_dataset, tmp_path):
    rows, trained = zoo.bench(
        "tiny_cnn", tiny_dataset, out=tmp_path, classifiers=True, epochs=1, batch_size=4, weights="none", mirror=False
    )
    assert rows[0]["status"] == "ok" and set(trained) == {"tiny_cnn"}
    assert trained["tiny_cnn"].output_shape == (None, 2)
    with pytest.raises(ZooError, match="unknown bench settings epoch"):
        zoo.bench("tiny_cnn", tiny_dataset, out=tmp_path, epoch=1)


def test_create_model_warns_when_it_falls_back_to_random_weights(tiny_plugin):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zoo.create_model("tiny_cnn", 2)
    assert any("tiny_cnn uses RANDOM weights" in str(w.message) for w in caught)


@pytest.mark.slow
def test_a_real_lite0_tflite_export_classifies_the_food_photos_as_the_bench_scored_them(food, tmp_path):
    [row] = zoo.bench("efficientnet_lite0", food, out=tmp_path / "results", weights="imagenet", mirror=False)
    result = runner.invoke(
        app, ["export", str(tmp_path / "results"), "--format", "tflite", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "x"), str(food / "test"), "--top-k", "1", "--json"])
    predictions = json.loads(result.stdout)["predictions"]
    correct = [p["top"][0]["class"] == Path(p["file"]).parent.name for p in predictions]
    assert len(predictions) == row["test_images"]
    assert np.mean(correct) == pytest.approx(row["top1"], abs=0.0021) and row["top1"] > 0.8


def test_a_classifier_benched_with_a_relative_weights_file_loads_from_any_folder(tmp_path, monkeypatch, tiny_dataset):
    """`--weights w.weights.h5` given relative to where the bench ran: its saved classifier must
    still rebuild its base after a `cd`."""
    from conftest import PLUGIN_HEAD

    plugin = PLUGIN_HEAD + (
        "@hookimpl\ndef zoo_backbones():\n    return [_spec('weighted_cnn')]\n\n"
        "@hookimpl\ndef zoo_build_backbone(spec, weights):\n"
        "    model = _tiny_cnn()\n    if weights:\n        model.load_weights(weights)\n    return model\n"
    )
    write_plugins(tmp_path, monkeypatch, weighted=plugin)
    namespace: dict = {}
    exec(PLUGIN_HEAD, namespace)  # the builder's _tiny_cnn, to save the weights file from
    (tmp_path / "wdir").mkdir()
    namespace["_tiny_cnn"]().save_weights(tmp_path / "wdir/w.weights.h5")
    monkeypatch.chdir(tmp_path / "wdir")
    result = runner.invoke(app, ["bench", "weighted_cnn", "--data", str(tiny_dataset), "--out", "../out",
                                 "--weights", "w.weights.h5", "--epochs", "1", "--batch-size", "4", "--folds", "0"])
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path)
    model, meta = export.load_trained(tmp_path / "out/models/weighted_cnn")
    assert meta["weights"]["file"] == str(tmp_path / "wdir/w.weights.h5") and model.output_shape == (None, 2)

    # The same file spelled from here: --resume keeps the row, benched with these very settings.
    [before] = read_results(tmp_path / "out")["backbones"]
    resumed = runner.invoke(app, ["bench", "weighted_cnn", "--data", str(tiny_dataset), "--out", "out", "--resume",
                                  "--weights", "./wdir/../wdir/w.weights.h5", "--epochs", "1", "--batch-size", "4",
                                  "--folds", "0"])
    assert resumed.exit_code == 0, resumed.output
    assert read_results(tmp_path / "out")["backbones"] == [before]


def test_a_tampered_or_damaged_classifier_is_one_line(benched, tiny_dataset, tmp_path):
    """A head or model file swapped for another, a damaged zoo.json, a missing head, a head given
    alone, an --out that is a file: each one line saying what is wrong; a labels.txt names the
    classes of a model without zoo.json."""
    out, _ = benched
    photo = str(tiny_dataset / "test" / "dark" / "dark_0.jpg")

    def fails(args, message):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output

    assert runner.invoke(app, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "t")]).exit_code == 0
    (tmp_path / "a_file").write_text("")
    fails(["export", str(out), "--format", "keras", "--out", str(tmp_path / "a_file")], "cannot make that folder")
    first, second = out / "models/tiny_cnn", out / "models/tiny_cnn_b"
    shutil.copy(second / "head.keras", first / "head.keras")  # the same shapes: only the hash tells
    fails(["predict", str(first), photo], "head.keras is not the model its zoo.json was written for")
    (second / "head.keras").unlink()
    fails(["predict", str(second), photo], "head.keras: no such file")
    fails(["predict", str(out / "models/tiny_cnn_b/zoo.json").replace("zoo.json", "head.keras"), photo], "no such file")

    meta = json.loads((tmp_path / "t/zoo.json").read_text())
    for damage, problem in (({"class_names": [1, 2]}, "its class_names are not all text"),
                            ({"interpolation": 4}, "its interpolation is not one zoo knows"),
                            ({"input_size": True}, "its input_size is not a positive whole number")):
        (tmp_path / "t/zoo.json").write_text(json.dumps({**meta, **damage}))
        fails(["predict", str(tmp_path / "t"), photo], f"zoo.json is damaged ({problem})")
    kept = json.loads((second / "zoo.json").read_text())
    for damage, problem in (({"backbone": 7}, "its backbone is not a name"),
                            ({"settings": []}, "its weights or settings are not objects")):
        (second / "zoo.json").write_text(json.dumps({**kept, **damage}))
        fails(["predict", str(second), photo], f"zoo.json is damaged ({problem})")
    (second / "zoo.json").write_text(json.dumps(kept))
    (tmp_path / "t/zoo.json").unlink()
    (tmp_path / "t/labels.txt").write_text("dusk\ndawn\n")
    result = runner.invoke(app, ["predict", str(tmp_path / "t/model.tflite"), photo, "--json"])
    assert {entry["class"] for entry in json.loads(result.stdout)["predictions"][0]["top"]} <= {"dusk", "dawn"}
    assert "classes are named by the labels.txt beside it" in result.stderr


def test_a_head_given_alone_and_a_model_of_nan_are_one_line(tmp_path, tiny_dataset):
    import keras

    photo = str(tiny_dataset / "test" / "dark" / "dark_0.jpg")
    features = keras.Input((8,))
    keras.Model(features, keras.layers.Dense(2)(features)).save(tmp_path / "head.keras")
    result = runner.invoke(app, ["predict", str(tmp_path / "head.keras"), photo])
    assert result.exit_code == 2 and "not (batch, size, size, 3) images (a bench's head: give its folder" in result.output
    images = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(float("nan"))(images))
    keras.Model(images, keras.layers.Dense(2, activation="softmax")(pooled)).save(tmp_path / "nan.keras")
    result = runner.invoke(app, ["predict", str(tmp_path / "nan.keras"), photo, "--json"])
    assert result.exit_code == 2 and "gives NaN or inf, not probabilities" in result.output


def test_with_mirror_the_kept_classifier_scores_what_top1_one_view_says(tiny_plugin, tiny_dataset, tmp_path):
    """--mirror scores each test image as the mean over it and its mirror image; the classifier
    kept sees the image alone, and `top1_one_view` (in the row and its zoo.json) is what it scores."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench", "tiny_cnn", "--data", str(tiny_dataset), "--out", str(out), "--mirror",
                                 "--epochs", "2", "--batch-size", "4", "--weights", "none", "--folds", "0"])
    assert result.exit_code == 0, result.output
    [row] = json.loads((out / "results.json").read_text())["backbones"]
    predictions, _ = predict(zoo.load(out / "models/tiny_cnn"), [tiny_dataset / "test"], top_k=1)
    correct = [p.top[0][0] == ("dark" if "dark_" in p.file else "light") for p in predictions]
    assert np.mean(correct) == pytest.approx(row["top1_one_view"])
    assert export.read_metadata(out / "models/tiny_cnn")["accuracy"]["top1_one_view"] == row["top1_one_view"]
    if row["top1_one_view"] != row["top1"]:
        assert f"; {row['top1_one_view']:.1%} as exported, seeing each image alone" in result.stderr


def test_predict_walks_a_folder_as_the_bench_walks_a_class(benched, tiny_dataset, tmp_path):
    """Hidden subfolders (.ipynb_checkpoints) are left out; a broken link is skipped and said."""
    out, _ = benched
    folder = tmp_path / "photos"
    shutil.copytree(tiny_dataset / "test" / "dark", folder)
    shutil.copytree(tiny_dataset / "test" / "light", folder / ".ipynb_checkpoints")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result = runner.invoke(app, ["predict", str(out / "models/tiny_cnn"), str(folder), "--json"])
    assert result.exit_code == 0, result.output
    files = {Path(p["file"]).name for p in json.loads(result.stdout)["predictions"]}
    assert files == {path.name for path in (tiny_dataset / "test" / "dark").iterdir()}
    assert "gone.jpg" in result.stderr


def test_int8_calibrates_on_any_folder_of_images(benched, tiny_dataset, tmp_path):
    out, _ = benched
    flat = tmp_path / "calibration"
    shutil.copytree(tiny_dataset / "train" / "dark", flat)  # no train/ or test/: just images
    result = runner.invoke(app, ["export", str(out), "--format", "tflite", "--quantize", "int8", "--data", str(flat),
                                 "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "q/zoo.json").read_text())["quantize"] == "int8"
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["export", str(out), "--format", "tflite", "--quantize", "int8", "--data",
                                 str(tmp_path / "empty"), "--out", str(tmp_path / "q2")])
    assert result.exit_code == 2 and "holds no readable images to calibrate on" in result.output


def test_predict_says_a_missing_image_or_unwritable_csv_before_loading_the_model(tmp_path):
    """Before loading: the model given here is no model at all, so any later check would fail on it first."""
    (tmp_path / "m.keras").write_bytes(b"PK not a model")
    result = runner.invoke(app, ["predict", str(tmp_path / "m.keras"), str(tmp_path / "nowhere.jpg")])
    assert result.exit_code == 2 and "nowhere.jpg: no such file or folder" in result.output
    (tmp_path / "a.jpg").write_bytes(b"")
    result = runner.invoke(app, ["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.jpg"),
                                 "--csv", str(tmp_path / "no/such/dir/p.csv")])
    assert result.exit_code == 2 and "in a folder that does not exist or is not writable" in result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.jpg"), "--csv", str(tmp_path)])
    assert result.exit_code == 2 and "a folder, or in a folder" in result.output
    (tmp_path / "results.json").write_text("{}")
    result = runner.invoke(app, ["export", str(tmp_path / "results.json")])
    assert result.exit_code == 2 and f"is a bench's results file; give the folder it is in ({tmp_path})" in result.output


def test_a_classifier_that_cannot_be_saved_fails_its_row_in_one_line(tiny_plugin, tiny_dataset, tmp_path):
    out = tmp_path / "out"
    (out / "models").mkdir(parents=True)
    (out / "models/tiny_cnn").write_text("a file where the classifier's folder goes")
    result = runner.invoke(app, ["bench", "tiny_cnn", "--data", str(tiny_dataset), "--out", str(out), *FAST])
    [row] = json.loads((out / "results.json").read_text())["backbones"]
    assert row["status"] == "failed" and row["top1"] is not None  # what was measured is kept
    assert row["error"].startswith(f"cannot save its classifier in {out / 'models/tiny_cnn'} (")
    assert "Traceback" not in result.output


def test_predict_csv_keeps_a_file_name_a_spreadsheet_would_run_as_a_formula_text(benched, tiny_dataset, tmp_path,
                                                                                  monkeypatch):
    out, _ = benched
    shutil.copy(tiny_dataset / "test" / "dark" / "dark_0.jpg", tmp_path / "=1+1.jpg")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["predict", str(out / "models" / "tiny_cnn"), "=1+1.jpg", "--csv", "p.csv"])
    assert result.exit_code == 0, result.output
    [row] = list(csv.reader(io.StringIO((tmp_path / "p.csv").read_text())))[1:]
    assert row[0] == "'=1+1.jpg" and row[1] in ("dark", "light") and 0 <= float(row[2]) <= 1


LAYERED_PLUGIN = textwrap.dedent(
    """
    import keras
    from zoo import BackboneSpec, hookimpl

    @keras.saving.register_keras_serializable(package="layered")
    class Halve(keras.layers.Layer):
        def call(self, x):
            return x / 2

    @hookimpl
    def zoo_backbones():
        return [BackboneSpec(name="layered_cnn", family="test", source="custom", reference="in code",
                             input_size=32, preprocessing="unit", feature_dim=8, params=224)]

    @hookimpl
    def zoo_build_backbone(spec, weights):
        inputs = keras.Input((32, 32, 3))
        x = Halve()(keras.layers.Conv2D(8, 3)(inputs))
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    """
)


def test_an_export_with_a_layer_of_a_plugin_not_loaded_now_says_to_pass_plugin(tiny_dataset, tmp_path, monkeypatch):
    [plugin] = write_plugins(tmp_path, monkeypatch, layered=LAYERED_PLUGIN)
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench", "layered_cnn", "--data", str(tiny_dataset), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(out), "--format", "keras", "--out", str(tmp_path / "ship")])
    assert result.exit_code == 0, result.output
    # a process of its own: this one's Keras knows the layer since the plugin was imported
    environment = {key: value for key, value in os.environ.items() if key != "ZOO_PLUGINS"}
    predict = [sys.executable, "-m", "zoo", "predict", str(tmp_path / "ship"), str(tiny_dataset / "test")]
    done = subprocess.run(predict, capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode == 2, done.stderr
    assert (
        f"{tmp_path / 'ship/model.keras'} holds layer Halve, which Keras knows only once plugin layered "
        f"({plugin}) is loaded: pass --plugin {plugin}"
    ) in done.stderr.replace("\n", "")
    done = subprocess.run([*predict, "--plugin", str(plugin)], capture_output=True, text=True, env=environment,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_plugin_file_to_pass_is_quoted_to_run_as_printed():
    """A plugin file in `my plugins/` was to be passed as two words."""
    meta = {"plugin": "net", "plugin_from": {"file": "/home/me/my plugins/net.py"}}
    assert export.plugin_to_load(meta) == (
        "plugin net (/home/me/my plugins/net.py)",
        "pass --plugin '/home/me/my plugins/net.py'",
    )


def test_names_that_differ_only_by_colon_or_underscore_export_into_their_own_folders(tmp_path):
    """`q_v1`'s export replaced `q:v1`'s unsaid; each gets its folder as its other files do (q@v1)."""
    folders = {name: export.default_out({"backbone": name}, "keras", "none", tmp_path) for name in ("q:v1", "q_v1")}
    assert folders == {"q:v1": tmp_path / "export/q@v1-keras", "q_v1": tmp_path / "export/q_v1-keras"}
    ensemble = export.default_out({"backbone": "ensemble(a+b)"}, "tflite", "int8", None)
    assert ensemble == Path("zoo-export/ensemble_a+b-tflite-int8")


def test_export_refuses_an_out_that_would_overwrite_another_models_description(benched, tmp_path):
    out, _ = benched
    kept = (out / "models/tiny_cnn/zoo.json").read_text()
    for target, message in (
        (out / "models/tiny_cnn", f"is inside the kept classifiers of {out}"),
        (out / "models", f"is inside the kept classifiers of {out}"),
        (out, f"is the bench results folder {out}"),
    ):
        result = runner.invoke(app, ["export", str(out), "--format", "tflite", "--out", str(target)])
        assert result.exit_code == 2 and message in result.output and f"goes to {out / 'export'}/" in result.output
    assert (out / "models/tiny_cnn/zoo.json").read_text() == kept and not (out / "zoo.json").exists()
    assert zoo.load(out / "models/tiny_cnn").model is not None  # the bench's classifier is still whole
    ship = tmp_path / "ship"
    for fmt in ("tflite", "tflite"):  # the same export again replaces it
        assert runner.invoke(app, ["export", str(out), "--format", fmt, "--out", str(ship)]).exit_code == 0
    result = runner.invoke(app, ["export", str(out), "--format", "keras", "--out", str(ship)])
    assert result.exit_code == 2 and "already holds another model (model.tflite, which its zoo.json" in result.output
    assert zoo.load(ship / "model.tflite").class_names == ["dark", "light"]  # still labelled by its zoo.json


def test_a_merged_folder_whose_shard_moved_says_to_merge_again(benched, tmp_path):
    """A merge names each row's classifier in its shard's folder: once that folder moves, export
    says so in one line, not that a folder it never looked in holds no zoo.json."""
    merged = runner.invoke(app, ["report", "--merge", str(benched[0]), "--out", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output
    shutil.move(benched[0], tmp_path / "moved")
    result = runner.invoke(app, ["export", str(tmp_path / "merged"), "tiny_cnn", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"tiny_cnn's classifier is not in {benched[0]}/models/tiny_cnn any more" in line
    assert "merge them again from where they are now" in line


def test_an_ensemble_row_that_kept_no_classifier_says_why(tmp_path, monkeypatch):
    """Merged again once its shard's folder had moved, a merge's ensemble row keeps no
    classifier (its members are not there): export says so, not that there is no such row."""
    from test_ensemble import PLUGIN, halves_photos

    write_plugins(tmp_path, monkeypatch, halves=PLUGIN)
    _fresh_catalog()
    options = ["--epochs", "10", "--learning-rate", "0.05", "--batch-size", "4", "--weights", "none"]
    data = halves_photos(tmp_path / "halves")
    result = runner.invoke(app, ["bench", "top", "bottom", "--data", str(data), "--out", str(tmp_path / "s"), *options])
    assert result.exit_code == 0, result.output
    for source, out in (("s", "m1"), ("m1", "m2")):
        if source == "m1":
            shutil.move(tmp_path / "s", tmp_path / "moved")
        merged = runner.invoke(app, ["report", "--merge", str(tmp_path / source), "--out", str(tmp_path / out)])
        assert merged.exit_code == 0, merged.output
    [row] = [row for row in read_results(tmp_path / "m2")["backbones"] if row["kind"] == "ensemble"]
    assert row["classifier"] is None
    result = runner.invoke(app, ["export", str(tmp_path / "m2"), row["backbone"], "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"{tmp_path / 'm2'} kept no classifier for its ensemble row" in line and "merge them again" in line
