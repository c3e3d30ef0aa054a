"""The bench on real (small) Keras models and real image files: cache, phases, resume, isolation."""

import dataclasses
import json
import os
import shutil
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from zoo import features
from zoo.bench import bench_backbone, run_bench
from zoo.settings import BenchSettings
from zoo.cli import app
from zoo.data import load_dataset
from zoo.errors import ZooError
from zoo.plugin_manager import catalog
from zoo.report import read_results

def settings(**changes):
    fast = dict(epochs=1, batch_size=4, weights="none", latency_runs=3, throughput_batches=1)
    return BenchSettings.from_config(**{**fast, **changes})


def test_features_mode_row_has_every_metric_and_a_second_run_skips_extraction(tiny_plugin, tiny_dataset, monkeypatch):
    spec, dataset = catalog().get("tiny_cnn"), load_dataset(tiny_dataset)
    steps = []
    first = bench_backbone(spec, dataset, settings(), lambda *step: steps.append(step)).to_dict()
    assert first["status"] == "ok", first["error"]
    assert first["feature_cache"] == "miss" and first["extract_seconds"] > 0
    assert ("train features", 12, 12) in steps and ("test features", 6, 6) in steps
    assert ("decoding images", 12, 12) in steps  # each split decoded whole before its forward passes
    assert ("head epochs", 1, 1) in steps and ("latency", 3, 3) in steps
    assert 0 <= first["top1"] <= 1 and first["top1_frozen"] == first["top1"] and first["top5"] == 1.0
    assert np.sum(first["confusion_matrix"]) == 6 and first["test_images"] == 6
    assert set(first["per_class_accuracy"]) == {"dark", "light"}
    assert first["params"] == 840 and first["trainable_params"] == 18
    # Conv 1: 15x15 outputs x 8 filters x 27 MACs; conv 2: 13x13 x 8 x 72; all x2, plus the rest.
    assert first["flops_per_image"] > 2 * (15 * 15 * 8 * 27 + 13 * 13 * 8 * 72)
    assert 0 < first["latency_ms_p50"] <= first["latency_ms_p95"] and first["images_per_sec"] > 0
    assert first["peak_rss_mb"] > 100 and first["weights"] == "random" and first["weights_file_mb"] is None
    assert first["train_seconds"] >= first["extract_seconds"] + first["head_seconds"]
    assert first["speed_from"] == "extraction" and not any(step[0] == "throughput" for step in steps)

    def no_extraction(*args, **kwargs):
        raise AssertionError("the base ran again although its features are cached")

    extract = features.extract
    monkeypatch.setattr(features, "extract", no_extraction)
    steps.clear()
    second = bench_backbone(spec, dataset, settings(), lambda *step: steps.append(step)).to_dict()
    assert second["status"] == "ok", second["error"]
    assert second["feature_cache"] == "hit"
    # The backbone did not run for the speed figures either: they are those the extraction recorded.
    assert second["speed_from"] == "cache" and not any(step[0] in ("throughput", "latency") for step in steps)
    speed = ("images_per_sec", "latency_ms_p50", "latency_ms_p95")
    assert [second[key] for key in speed] == [first[key] for key in speed]
    assert second["top1"] == first["top1"] and second["confusion_matrix"] == first["confusion_matrix"]
    # Another runtime has no speed record: timed on the test split's first batch alone.
    third = bench_backbone(spec, dataset, settings(runtime="tf"), lambda *step: steps.append(step)).to_dict()
    assert third["status"] == "ok", third["error"]
    assert third["feature_cache"] == "hit" and third["speed_from"] == "runs" and third["images_per_sec"] > 0
    # New data: images/s from this extraction, latency as recorded (no runs of one image again).
    monkeypatch.setattr(features, "extract", extract)
    features.clear(dataset=dataset.root)
    steps.clear()
    fourth = bench_backbone(spec, dataset, settings(), lambda *step: steps.append(step)).to_dict()
    assert fourth["feature_cache"] == "miss" and fourth["speed_from"] == "extraction+cache"
    assert not any(step[0] in ("throughput", "latency") for step in steps)
    assert fourth["latency_ms_p50"] == first["latency_ms_p50"] and fourth["images_per_sec"] > 0


def test_cached_features_are_what_the_rebuilt_base_computes(tiny_plugin, tiny_dataset):
    """Random-init weights come from the seed, so a cache hit and a fresh base agree."""
    import keras

    from zoo.data import image_batches
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    spec, dataset = catalog().get("tiny_cnn"), load_dataset(tiny_dataset)
    assert bench_backbone(spec, dataset, settings()).status == "ok"
    [cached] = [entry for entry in features.entries() if entry["split"] == "test"]
    stored = features.load("tiny_cnn", "test", cached["key"])
    keras.utils.set_random_seed(settings().seed)
    extractor = feature_extractor(spec, resolve(spec, "none"))
    fresh = np.concatenate([np.asarray(extractor(b)) for b in image_batches(dataset.test.files, 32, 4)])
    np.testing.assert_allclose(stored, fresh, rtol=1e-5, atol=1e-6)


def test_mirror_adds_the_features_of_mirror_images_and_no_mirror_leaves_them_out(tiny_plugin, tiny_dataset):
    import keras
    import tensorflow as tf

    from zoo.data import image_batches
    from zoo.models import feature_extractor
    from zoo.weights import resolve

    spec, dataset = catalog().get("tiny_cnn"), load_dataset(tiny_dataset)
    assert bench_backbone(spec, dataset, settings(mirror=False)).status == "ok"
    assert sorted(entry["split"] for entry in features.entries()) == ["test", "train"]
    assert bench_backbone(spec, dataset, settings(mirror=True)).status == "ok"
    splits = {entry["split"]: entry["key"] for entry in features.entries()}
    assert sorted(splits) == ["test", "test-mirrored", "train", "train-mirrored"]
    keras.utils.set_random_seed(settings().seed)
    extractor = feature_extractor(spec, resolve(spec, "none"))
    flipped = np.concatenate([
        np.asarray(extractor(tf.image.flip_left_right(batch)))
        for batch in image_batches(dataset.test.files, 32, 4)
    ])
    stored = features.load("tiny_cnn", "test-mirrored", splits["test-mirrored"])
    np.testing.assert_allclose(stored, flipped, rtol=1e-5, atol=1e-6)
    assert not np.allclose(stored, features.load("tiny_cnn", "test", splits["test"]))


def test_no_cache_extracts_without_keeping_anything(tiny_plugin, tiny_dataset):
    row = bench_backbone(catalog().get("tiny_cnn"), load_dataset(tiny_dataset), settings(cache=False)).to_dict()
    assert row["status"] == "ok" and row["feature_cache"] == "off"
    assert features.entries() == []


def test_finetune_reports_both_phases_and_logs_to_tensorboard(tiny_plugin, tiny_dataset, tmp_path):
    out = tmp_path / "out"
    steps = []
    [row] = run_bench(
        [catalog().get("tiny_cnn")], load_dataset(tiny_dataset),
        settings(mode="finetune", finetune_epochs=2, unfreeze=3), out,
        progress=lambda *step: steps.append(step),
    )
    assert row["status"] == "ok", row["error"]
    assert row["top1_frozen"] is not None and row["top1"] is not None and row["finetune_seconds"] > 0
    # the top 3 layers are BatchNorm, conv and pooling: BatchNorm stays frozen
    assert row["unfrozen_layers"] == 2
    assert ("tiny_cnn: fine-tune epochs", 1, 2) in steps and ("tiny_cnn: fine-tune epochs", 2, 2) in steps
    logs = list((out / "tensorboard" / "tiny_cnn").rglob("events.out.tfevents.*"))
    assert logs, "no TensorBoard event files"
    runs = {path.parent.name for path in logs}
    assert "test" in runs and "validation" not in runs  # the head is scored on the test split


def _summaries(folder):
    """(tag, plugin name, summary value) of every summary in the event files directly in `folder`."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = []
    for path in folder.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                found.append((value.tag, value.metadata.plugin_data.plugin_name, value))
    return found


def test_each_backbone_run_carries_hparams_and_final_metrics(tiny_plugin, tiny_dataset, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    out = tmp_path / "out"
    [row] = run_bench([catalog().get("tiny_cnn")], load_dataset(tiny_dataset), settings(epochs=2), out)
    assert row["status"] == "ok", row["error"]
    summaries = _summaries(out / "tensorboard" / "tiny_cnn")
    [start] = [value for tag, plugin, value in summaries if plugin == "hparams"]
    data = plugin_data_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content)
    params = data.session_start_info.hparams
    assert params["backbone"].string_value == "tiny_cnn" and params["weights"].string_value == "random"
    assert params["input_size"].number_value == 32 and params["epochs"].number_value == 2
    assert params["mirror"].bool_value is True
    finals = {tag: float(tensor_util.make_ndarray(value.tensor)) for tag, plugin, value in summaries
              if tag.startswith("final/")}
    assert finals["final/top1"] == pytest.approx(row["top1"]) and finals["final/images_per_sec"] > 0
    test_run = _summaries(out / "tensorboard" / "tiny_cnn" / "test")
    assert {tag for tag, _, _ in test_run} >= {"epoch_accuracy", "epoch_loss"}


def test_augment_runs_end_to_end_without_the_cache(tiny_plugin, tiny_dataset):
    row = bench_backbone(catalog().get("tiny_cnn"), load_dataset(tiny_dataset), settings(augment=True)).to_dict()
    assert row["status"] == "ok", row["error"]
    assert row["feature_cache"] == "off (augment)" and row["extract_seconds"] is None
    assert features.entries() == []


def test_mirrored_strategy_trains_on_cpu(tiny_plugin, tiny_dataset, tmp_path):
    rows = run_bench([catalog().get("tiny_cnn")], load_dataset(tiny_dataset),
                     settings(strategy="mirrored", mode="finetune"), tmp_path)
    assert rows[0]["status"] == "ok", rows[0]["error"]
    environment = read_results(tmp_path)["environment"]
    assert environment["strategy"] == "mirrored" and environment["replicas"] == 1


def test_a_failing_backbone_is_one_failed_row_and_the_rest_run(tiny_plugin, tiny_dataset, tmp_path):
    specs = [catalog().get("broken_net"), catalog().get("tiny_cnn")]
    broken, good = run_bench(specs, load_dataset(tiny_dataset), settings(), tmp_path)
    assert broken["status"] == "failed"
    assert broken["error"] == "keras.applications has no 'NoSuchNet' (backbone broken_net); fix the reference in plugin tiny_plugin's spec"
    assert good["status"] == "ok"


def test_ctrl_c_loses_only_the_backbone_in_flight_and_resume_skips_finished_ones(tiny_plugin, tiny_dataset, tmp_path):
    specs = [catalog().get("tiny_cnn"), catalog().get("tiny_cnn_b")]
    dataset = load_dataset(tiny_dataset)

    def interrupt_second(step, done, total):
        if step == "tiny_cnn_b: head epochs":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(specs, dataset, settings(), tmp_path, progress=interrupt_second)
    [saved] = read_results(tmp_path)["backbones"]
    assert saved["backbone"] == "tiny_cnn" and saved["status"] == "ok"

    benched, reused = set(), []
    rows = run_bench(specs, dataset, settings(), tmp_path, resume=True,
                     progress=lambda step, *_: benched.add(step.split(":")[0]),
                     finished=lambda row, was_reused: reused.append((row["backbone"], was_reused)))
    assert benched == {"tiny_cnn_b"}
    assert reused == [("tiny_cnn", True), ("tiny_cnn_b", False)]
    assert rows[0] == saved and [r["status"] for r in read_results(tmp_path)["backbones"]] == ["ok", "ok"]

    benched.clear()
    run_bench(specs, dataset, settings(epochs=2), tmp_path, resume=True, progress=lambda step, *_: benched.add(step.split(":")[0]))
    assert benched == {"tiny_cnn", "tiny_cnn_b"}  # other settings: nothing to reuse

    # A row kept (its backbone not benched now) must be of this dataset and these settings.
    with pytest.raises(ZooError, match=r"^--resume: tiny_cnn in .* was benched with other settings \(epochs 2 vs 3\)"):
        run_bench(specs[1:], dataset, settings(epochs=3), tmp_path, resume=True)
    fewer = tmp_path.parent / "fewer"
    shutil.copytree(tiny_dataset, fewer)
    (fewer / "test/dark" / sorted(os.listdir(fewer / "test/dark"))[0]).unlink()
    with pytest.raises(ZooError, match=r"^--resume: .* holds results on another dataset \(test_images 6 vs 5, "):
        run_bench(specs[1:], load_dataset(fewer), settings(epochs=2), tmp_path, resume=True)
    assert [row["epochs"] for row in read_results(tmp_path)["backbones"]] == [2, 2]  # nothing lost


def test_bench_command_writes_every_output(tiny_plugin, tiny_dataset, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "bench", "tiny_cnn", "broken_net", "--data", str(tiny_dataset), "--weights", "none",
        "--epochs", "1", "--batch-size", "4", "--out", str(out), "--mode", "finetune",
        "--finetune-epochs", "1", "--unfreeze", "2", "--no-cache",
    ])
    assert result.exit_code == 1, result.output  # broken_net failed
    assert "broken_net failed: keras.applications has no 'NoSuchNet'" in result.stderr
    results = json.loads((out / "results.json").read_text())
    good = {row["backbone"]: row for row in results["backbones"]}["tiny_cnn"]
    assert good["mode"] == "finetune" and good["unfreeze"] == 2 and good["feature_cache"] == "off"
    assert results["environment"]["tensorflow"] and results["dataset"]["classes"] == ["dark", "light"]
    for name in ("results.csv", "results.md", "accuracy_vs_speed.png"):
        assert (out / name).stat().st_size > 0
    assert list((out / "tensorboard" / "tiny_cnn").rglob("events.out.tfevents.*"))
    assert "tiny_cnn" in result.stdout and "Frozen" in result.stdout
    assert features.entries() == []


def test_a_new_bench_into_an_earlier_ones_out_leaves_none_of_its_rows_files(tiny_plugin, tiny_dataset, tmp_path):
    """Not --resume: the earlier rows' classifiers, plots and logs go; the user's own files stay;
    and a row that fails now keeps no classifier of its earlier success."""
    out = tmp_path / "out"
    fast = ["--data", str(tiny_dataset), "--weights", "none", "--epochs", "1", "--batch-size", "4", "--out", str(out)]
    assert CliRunner().invoke(app, ["bench", "tiny_cnn", "tiny_cnn_b", *fast]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    assert (out / "models/tiny_cnn_b").is_dir() and (out / "confusion_tiny_cnn_b.png").is_file()
    assert CliRunner().invoke(app, ["bench", "tiny_cnn", *fast]).exit_code == 0
    assert sorted(path.name for path in (out / "models").iterdir()) == ["tiny_cnn"]
    assert not (out / "confusion_tiny_cnn_b.png").exists() and not (out / "tensorboard/tiny_cnn_b").exists()
    assert (out / "notes.txt").read_text() == "mine"

    failing = dataclasses.replace(catalog().get("tiny_cnn"), source="keras.applications", reference="NoSuchNet")
    [row] = run_bench([failing], load_dataset(tiny_dataset), settings(), out, resume=True)
    assert row["status"] == "failed" and not (out / "models/tiny_cnn").exists()


def test_a_row_of_an_earlier_bench_named_like_a_path_removes_nothing_outside_out(tiny_plugin, tiny_dataset, tmp_path):
    """A hand-edited or damaged results.json: a new bench removes no file its row names outside --out."""
    out = tmp_path / "sweep" / "out"
    [row] = run_bench([catalog().get("tiny_cnn")], load_dataset(tiny_dataset), settings(folds=0), out)
    assert row["status"] == "ok", row["error"]
    outside = tmp_path / "sweep" / "precious"  # out/models/../../precious, and tensorboard/'s
    outside.mkdir()
    (outside / "thesis.txt").write_text("mine")
    (tmp_path / "sweep" / "precious.npz").write_text("mine")  # predictions/../../precious.npz
    saved = json.loads((out / "results.json").read_text())
    saved["backbones"][0]["backbone"] = "../../precious"
    (out / "results.json").write_text(json.dumps(saved))
    [again] = run_bench([catalog().get("tiny_cnn_b")], load_dataset(tiny_dataset), settings(folds=0), out)
    assert again["status"] == "ok", again["error"]
    assert (outside / "thesis.txt").read_text() == "mine"
    assert (tmp_path / "sweep" / "precious.npz").read_text() == "mine"


@pytest.mark.slow
def test_mobilenet_v2_on_the_food_photos_then_from_the_cache(food, tmp_path):
    spec, dataset = catalog().get("mobilenet_v2"), load_dataset(food)
    first = bench_backbone(spec, dataset, settings(batch_size=32, latency_runs=10)).to_dict()
    assert first["status"] == "ok", first["error"]
    assert first["test_images"] == 500 and len(first["per_class_accuracy"]) == 10
    assert first["feature_cache"] == "miss" and first["flops_per_image"] > 5e8  # ~0.6 GFLOPs at 224
    second = bench_backbone(spec, dataset, settings(batch_size=32, latency_runs=10)).to_dict()
    assert second["feature_cache"] == "hit" and second["extract_seconds"] < first["extract_seconds"] / 10
    assert second["top1"] == first["top1"]


def test_names_that_differ_only_by_colon_or_underscore_keep_their_own_files(tmp_path, tiny_dataset, monkeypatch):
    """`q:v1` and `q_v1` are both valid names: each row keeps its own classifier, plots and logs."""
    from conftest import PLUGIN_HEAD, write_plugins

    plugin = PLUGIN_HEAD + textwrap.dedent(
        """
        @hookimpl
        def zoo_backbones():
            return [_spec("q:v1"), _spec("q_v1")]

        @hookimpl
        def zoo_build_backbone(spec, weights):
            return _tiny_cnn()
        """
    )
    write_plugins(tmp_path, monkeypatch, names=plugin)
    out = tmp_path / "out"
    (out / "tensorboard/q:v1").mkdir(parents=True)  # as an older zoo named its logs
    result = CliRunner().invoke(app, ["bench", "q:v1", "q_v1", "--data", str(tiny_dataset), "--out", str(out),
                                      "--epochs", "1", "--batch-size", "4", "--weights", "none", "--folds", "0"])
    assert result.exit_code == 0, result.output
    kept = {row["backbone"]: row["classifier"] for row in read_results(out)["backbones"]}
    assert kept == {"q:v1": "models/q@v1", "q_v1": "models/q_v1"}
    assert json.loads((out / "models/q@v1/zoo.json").read_text())["backbone"] == "q:v1"
    assert (out / "confusion_q@v1.png").is_file() and (out / "confusion_q_v1.png").is_file()
    # The logs too: a folder name with `:` does not work on Windows.
    assert sorted(path.name for path in (out / "tensorboard").iterdir()) == ["q@v1", "q_v1"]
    assert list((out / "tensorboard/q@v1").rglob("events.out.tfevents.*"))


def test_a_backbone_named_twice_is_benched_once(tiny_plugin, tiny_dataset, tmp_path):
    result = CliRunner().invoke(app, ["bench", "tiny_cnn", "tiny_cnn", "--data", str(tiny_dataset), "--out",
                                      str(tmp_path), "--weights", "none", "--epochs", "1", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert [row["backbone"] for row in read_results(tmp_path)["backbones"]] == ["tiny_cnn"]


def test_a_preprocessing_that_gives_integers_or_resizes_fails_its_row_naming_the_plugin(tmp_path, tiny_dataset,
                                                                                          monkeypatch):
    from conftest import PLUGIN_HEAD, write_plugins

    plugin = PLUGIN_HEAD + textwrap.dedent(
        """
        import keras

        def as_integers(images):
            return keras.ops.cast(images, "int32")

        def halved(images):
            return images[:, ::2, ::2, :] / 255.0

        @hookimpl
        def zoo_backbones():
            return [_spec("ints_net", preprocessing=as_integers), _spec("half_net", preprocessing=halved),
                    _spec("tiny_cnn")]

        @hookimpl
        def zoo_build_backbone(spec, weights):
            return _tiny_cnn()
        """
    )
    write_plugins(tmp_path, monkeypatch, odd_inputs=plugin)
    specs = [catalog().get(name) for name in ("ints_net", "half_net", "tiny_cnn")]
    ints, half, good = run_bench(specs, load_dataset(tiny_dataset), settings(folds=0), tmp_path / "out")
    assert ints["status"] == half["status"] == "failed" and good["status"] == "ok"
    assert ints["error"] == (
        "plugin odd_inputs: the preprocessing of ints_net (zoo_local_plugin_odd_inputs.as_integers) returns int32 "
        "values; return floating point ones (keras.ops.cast(x, 'float32')); fix that function"
    )
    assert half["error"] == (
        "plugin odd_inputs: the preprocessing of half_net (zoo_local_plugin_odd_inputs.halved) turns images of "
        "shape (1, 32, 32, 3) into shape (1, 16, 16, 3); it must keep the batch, height and width (zoo resizes to "
        "input_size before it); fix that function"
    )


def test_a_dataset_with_a_file_name_that_is_not_utf8_benches(tiny_plugin, tiny_dataset, tmp_path):
    """A Latin-1 name from an old camera or zip is a valid path: the bench keys and reads it as one
    (it stopped with UnicodeEncodeError in the data fingerprint)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    first = sorted((data / "train" / "dark").iterdir())[0]
    os.rename(first, os.path.join(os.fsencode(first.parent), b"caf\xe9.jpg"))
    out = tmp_path / "out"
    fast = ["--data", str(data), "--weights", "none", "--epochs", "1", "--batch-size", "4", "--out", str(out)]
    result = CliRunner().invoke(app, ["bench", "tiny_cnn", *fast])
    assert result.exit_code == 0, result.output
    [row] = read_results(out)["backbones"]
    assert row["status"] == "ok" and read_results(out)["dataset"]["train_images"] == 12
