"""Ensemble selection on hand-made out-of-fold predictions, the folds it is chosen on, and the
ensemble row of a real bench."""

import importlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import write_plugins
from typer.testing import CliRunner

from zoo import ensemble
from zoo.bench import run_bench
from zoo.cli import app
from zoo.data import Dataset, Split, load_dataset
from zoo.ensemble import Predictions, ensemble_row, predictions_path, select
from zoo.errors import ZooError
from zoo.metrics import log_loss
from zoo.plugin_manager import catalog
from zoo.report import read_results
from zoo.row import BenchRow
from zoo.settings import BenchSettings
from zoo.validation import cross_validate, stratified_folds

LABELS = np.array([0, 0, 1, 1])


def two_class(true_probability: list[float]) -> np.ndarray:
    """Probabilities of two classes, given the probability each image's true class gets."""
    p = np.array(true_probability)
    return np.where(LABELS[:, None] == np.arange(2), p[:, None], 1 - p[:, None])


# A worked example. C is the best single row (log-loss 0.425); A is a weaker twin of C, right
# and wrong on the same images; B is as weak as A but sure exactly where C is unsure.
#   draw 1: C alone                                     -> 0.425
#   draw 2: C+A .925 .925 .425 .425 -> 0.467;  C+B .675 on every image -> 0.393: B
#   draw 3: C+B+C .767 .767 .6 .6 -> 0.388 (C+B+B or C+B+A: 0.413): C again
# and so on: the draws home in on C's best weight against B, w minimising
# -ln(.4 + .55w) - ln(.9 - .45w), i.e. w = .636 = 7/11 (log-loss 0.388). A is never drawn.
C = two_class([0.95, 0.95, 0.45, 0.45])
A = two_class([0.9, 0.9, 0.4, 0.4])
B = two_class([0.4, 0.4, 0.9, 0.9])


def test_the_worked_example_weights_the_best_row_and_the_one_that_complements_it():
    assert log_loss(C, LABELS) == pytest.approx(0.4249, abs=1e-4)
    assert log_loss((C + B) / 2, LABELS) == pytest.approx(0.3930, abs=1e-4)
    assert log_loss((2 * C + B) / 3, LABELS) == pytest.approx(0.3883, abs=1e-4)
    assert select({"a": A, "b": B, "c": C}, LABELS, size=3) == pytest.approx({"b": 4 / 11, "c": 7 / 11})
    assert select({"a": A, "b": B, "c": C}, LABELS, size=1) == {"c": 1.0}


def test_selection_keeps_the_first_of_equals_and_breaks_ties_by_order():
    assert select({"c": C, "twin": C.copy()}, LABELS, size=3) == {"c": 1.0}
    # A and B tie alone (0.511 each): the first listed wins; together they are best half and half.
    assert select({"b": B, "a": A}, LABELS, size=1) == {"b": 1.0}
    assert select({"a": A, "b": B}, LABELS, size=1) == {"a": 1.0}
    assert select({"a": A, "b": B}, LABELS, size=2) == {"a": 0.5, "b": 0.5}


def test_folds_are_stratified_seeded_and_balanced():
    labels = np.repeat([0, 1, 2], [10, 7, 3])
    folds = stratified_folds(labels, 5, seed=42)
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=42))
    assert not np.array_equal(folds, stratified_folds(labels, 5, seed=1))
    assert sorted(np.bincount(folds)) == [4, 4, 4, 4, 4]
    assert np.bincount(folds[labels == 0], minlength=5).tolist() == [2] * 5
    assert all(np.ptp(np.bincount(folds[labels == c], minlength=5)) <= 1 for c in range(3))
    with pytest.raises(ZooError, match="train/ has only 20 images; use --folds 20 or fewer"):
        stratified_folds(labels, 21, seed=0)


def finished_row(name, **fields):
    """A finished row of the fields an ensemble row is made of."""
    cost = dict(params=4e6, trainable_params=10, flops_per_image=1e9, weights_file_mb=13.0, peak_rss_mb=900.0,
                latency_ms_p50=10.0, latency_ms_p95=12.0, extract_seconds=30.0, head_seconds=2.0,
                validation_seconds=8.0, train_seconds=40.0, total_seconds=50.0, images_per_sec=100.0)
    return {"backbone": name, "status": "ok", "val_top1": 0.5, "input_size": 224, "weights": "imagenet",
            "settings_fingerprint": name, **cost, **fields}


def test_the_ensemble_row_averages_test_probabilities_and_adds_up_the_cost():
    settings = BenchSettings.from_config(folds=2)
    dataset = Dataset(Path("data"), ("x", "y"), Split(("a",) * 4, tuple(LABELS)), Split(("t", "u"), (0, 1)))
    folds = np.array([0, 1, 0, 1])
    test_c, test_b = np.array([[0.6, 0.4], [0.6, 0.4]]), np.array([[0.9, 0.1], [0.2, 0.8]])
    row = ensemble_row(
        [finished_row("c"), finished_row("b", images_per_sec=50.0, input_size=260)],
        [Predictions(folds, C, test_c), Predictions(folds, B, test_b)],
        [0.5, 0.5],
        dataset,
        settings,
    )
    assert row["backbone"] == "ensemble(c+b)" and row["kind"] == "ensemble" and row["members"] == {"c": 0.5, "b": 0.5}
    # Test: (0.75, 0.25) and (0.4, 0.6), both right; c alone gets one of the two.
    assert row["top1"] == 1.0 and row["confusion_matrix"] == [[1, 0], [0, 1]] and row["status"] == "ok"
    assert row["test_predictions"] == [0, 1]  # for the paired test against the best, as every row
    assert row["val_top1"] == 1.0 and row["val_top1_std"] == 0.0
    assert row["val_log_loss"] == pytest.approx(0.3930, abs=1e-4)
    assert row["params"] == 8e6 and row["flops_per_image"] == 2e9 and row["latency_ms_p50"] == 20.0
    assert row["peak_rss_mb"] == 1800.0 and row["weights_file_mb"] == 26.0 and row["total_seconds"] == 100.0
    assert row["images_per_sec"] == pytest.approx(1 / (1 / 100 + 1 / 50))
    assert row["weights"] == "imagenet" and row["folds"] == 2 and row["input_size"] == 260
    assert set(row) == set(BenchRow(backbone="", family="", source="", plugin="", input_size=1, params=1,
                                    weights="", settings=settings, settings_fingerprint="").to_dict())


# Two real backbones that each see half the picture: the mean colour of the top or of the
# bottom half. In the `halves` photos only one half, top or bottom, shows the class's colour,
# so each backbone is sure about some photos and guesses on the others, and the two together
# are right about all: an ensemble that selection must find. A third cannot be built.
PLUGIN = textwrap.dedent(
    """
    from zoo import BackboneSpec, hookimpl

    def _spec(name, **fields):
        base = dict(family="test", source="custom", reference=name, input_size=32,
                    preprocessing="unit", feature_dim=3, params=1)
        return BackboneSpec(name=name, **{**base, **fields})

    @hookimpl
    def zoo_backbones():
        return [_spec("top"), _spec("bottom", input_size=40),
                _spec("broken", source="keras.applications", reference="NoSuchNet")]

    @hookimpl
    def zoo_build_backbone(spec, weights):
        if spec.source != "custom":
            return None
        import keras
        half = spec.input_size // 2
        inputs = keras.Input((spec.input_size, spec.input_size, 3))
        crop = ((0, half), (0, 0)) if spec.name == "top" else ((half, 0), (0, 0))
        x = keras.layers.Cropping2D(crop)(inputs)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name=spec.name)
    """
)


@pytest.fixture
def halves_plugin(tmp_path, monkeypatch):
    write_plugins(tmp_path, monkeypatch, halves=PLUGIN)


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> Path:
    return halves_photos(tmp_path_factory.mktemp("halves"))


def halves_photos(root: Path) -> Path:
    """Photos of two classes, dark and light, whose colour shows in one half (top or bottom,
    alternately) while the other half is grey noise: 8 train and 4 test photos per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("test", 4)):
        for label, (name, level) in enumerate((("dark", 30), ("light", 200))):
            (root / split / name).mkdir(parents=True)
            for n in range(count):
                pixels = rng.integers(60, 170, (48, 48, 3))
                rows = slice(0, 24) if n % 2 else slice(24, 48)
                pixels[rows] = rng.integers(level - 20, level + 20, (24, 48, 3))
                Image.fromarray(pixels.astype("uint8")).save(root / split / name / f"{n}.png")
    return root


def fast(**changes):
    return BenchSettings.from_config(
        **{"epochs": 10, "learning_rate": 0.05, "batch_size": 4, "weights": "none", "latency_runs": 2, "throughput_batches": 1, **changes}
    )


def test_the_bench_validates_on_train_features_only_and_ends_with_an_ensemble_row(halves_plugin, halves, tmp_path, monkeypatch):
    bench = importlib.import_module("zoo.bench")  # the module; zoo.bench is also a function

    given = []

    def recording(views, labels, *args, **kwargs):
        given.append(([np.array(view) for view in views], list(labels)))
        return cross_validate(views, labels, *args, **kwargs)

    monkeypatch.setattr(bench, "cross_validate", recording)
    dataset = load_dataset(halves)
    specs = [catalog().get(name) for name in ("top", "broken", "bottom")]
    rows = run_bench(specs, dataset, fast(), tmp_path, ensemble_size=3)

    # Cross-validation saw the 16 training images (plain and mirrored) and nothing of test/.
    assert [[view.shape for view in views] for views, _ in given] == [[(16, 3)] * 2] * 2
    assert all(labels == list(dataset.train.labels) for _, labels in given)
    top, broken, bottom, combined = rows
    assert broken["status"] == "failed" and broken["val_top1"] is None
    for row in (top, bottom):
        assert row["kind"] == "backbone" and row["folds"] == 5 and 0 <= row["val_top1"] <= 1
        assert row["val_top1_std"] >= 0 and row["validation_seconds"] > 0 and row["val_log_loss"] > 0
    saved = sorted(path.name for path in (tmp_path / "predictions").iterdir())
    assert saved == ["bottom.npz", "top.npz"]
    assert Predictions.load(tmp_path / "predictions" / "top.npz").test.shape == (8, 2)

    assert combined["kind"] == "ensemble" and combined["backbone"] == "ensemble(top+bottom)"
    assert list(combined["members"]) == ["top", "bottom"] and sum(combined["members"].values()) == pytest.approx(1)
    assert combined["status"] == "ok" and combined["test_images"] == 8
    assert combined["top1"] > max(top["top1"], bottom["top1"])
    assert combined["val_top1"] > max(top["val_top1"], bottom["val_top1"])
    assert combined["flops_per_image"] == top["flops_per_image"] + bottom["flops_per_image"]
    assert combined["latency_ms_p50"] == top["latency_ms_p50"] + bottom["latency_ms_p50"]
    assert read_results(tmp_path)["backbones"][-1] == combined
    statistics = read_results(tmp_path)["statistics"]
    assert statistics["best"] == combined["backbone"]  # tested like every row, not left out
    assert statistics["rows"][top["backbone"]]["p_vs_best"] is not None
    assert "ensemble" in (tmp_path / "results.csv").read_text().splitlines()[-1]

    # --resume keeps both rows, benches only the failed one again, and makes the same ensemble.
    again = run_bench(specs, dataset, fast(), tmp_path, resume=True, ensemble_size=3)
    assert len(given) == 2 and [row["backbone"] for row in again][-1] == "ensemble(top+bottom)"
    assert {k: v for k, v in again[-1].items() if k != "finished_at"} == {
        k: v for k, v in combined.items() if k != "finished_at"
    }
    # --no-ensemble: none, in the rows and in the file.
    rows = run_bench(specs, dataset, fast(), tmp_path, resume=True, ensemble_size=0)
    assert all(row["kind"] != "ensemble" for row in rows + read_results(tmp_path)["backbones"])


def test_a_failed_row_is_never_a_member_even_with_predictions_left_behind(tmp_path):
    folds = np.array([0, 1, 0, 1])
    for name, validation in (("a", A), ("b", B), ("c", C)):
        Predictions(folds, validation, validation[:2]).save(predictions_path(tmp_path, name))
    dataset = Dataset(Path("data"), ("x", "y"), Split(("i",) * 4, tuple(LABELS)), Split(("t", "u"), (0, 0)))
    rows = [finished_row(name, status=status) for name, status in (("a", "ok"), ("b", "failed"), ("c", "ok"))]
    # Without b, C's weaker twin A cannot help C: no ensemble at all, and the reason says so.
    assert ensemble.build(rows, tmp_path, dataset, fast(folds=2), size=3) == "on validation no mix of a, c beat c alone"
    assert ensemble.build(rows[:2], tmp_path, dataset, fast(folds=2), size=3) == (
        "it needs two finished, cross-validated rows or more; only a here"
    )
    rows[1]["status"] = "ok"
    assert ensemble.build(rows, tmp_path, dataset, fast(folds=2), size=3)["backbone"] == "ensemble(b+c)"
    assert ensemble.build(rows, tmp_path, dataset, fast(folds=2), size=0) == "--no-ensemble was given"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--ensemble-size", "1"], "--ensemble-size 1: an ensemble needs 2 members or more; --no-ensemble makes none"),
        (["--folds", "1"], "--folds 1: use 2 or more, or 0 for no cross-validation"),
        (["--folds", "13"], "--folds 13: train/ has only 12 images; use --folds 12 or fewer"),
    ],
)
def test_bad_ensemble_and_folds_options_are_one_line(halves_plugin, tiny_dataset, tmp_path, option, message):
    result = CliRunner().invoke(app, ["bench", "top", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), *option])
    assert result.exit_code == 2 and message in result.output


@pytest.fixture(scope="module")
def halves_bench(tmp_path_factory, halves):
    """`zoo bench top bottom` on the halves photos once for the module: its ensemble row (of
    members taking 32 and 40 px images) is the best row, kept for export. (folder, output)"""
    from zoo import plugin_manager

    root = tmp_path_factory.mktemp("halves-bench")
    options = ["--epochs", "10", "--learning-rate", "0.05", "--batch-size", "4", "--weights", "none"]
    with pytest.MonkeyPatch.context() as patch:
        write_plugins(root, patch, halves=PLUGIN)
        patch.setenv("ZOO_CACHE_DIR", str(root / "cache"))
        plugin_manager.catalog.cache_clear()
        result = CliRunner().invoke(app, ["bench", "top", "bottom", "--data", str(halves), "--out", str(root / "out"), *options])
    plugin_manager.catalog.cache_clear()
    assert result.exit_code == 0, result.output
    return root / "out", result.output


def members_average(out, images):
    """What the ensemble should say: its members' own classifiers (as the bench kept them) on
    `images` resized to each one's input size, averaged with the ensemble's weights."""
    import tensorflow as tf

    from zoo.predict import load

    row = read_results(out)["backbones"][-1]
    total = 0
    for name, weight in row["members"].items():
        member = load(out / "models" / name)
        resized = tf.image.resize(images, (member.input_size, member.input_size), method=member.interpolation)
        total = total + weight * member(resized.numpy())
    return total


def test_the_ensemble_row_exports_as_one_model_that_averages_its_members(halves_plugin, halves_bench, tmp_path):
    import shlex

    import zoo

    out, output = halves_bench
    row = read_results(out)["backbones"][-1]
    assert row["kind"] == "ensemble" and row["classifier"] == "models/ensemble"
    # The summary names the ensemble as the best row, with an export command that works as printed.
    [suggested] = [line.split("Export it with: ")[1] for line in output.splitlines() if "Export it with" in line]
    assert output.count("Best: ensemble(top+bottom)") == 1 and "'ensemble(top+bottom)'" in suggested
    [random] = [line for line in output.splitlines() if "RANDOM weights" in line]
    assert random.startswith("RANDOM weights (--weights none): top, bottom.")  # not the ensemble, for no reason
    images = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3)).astype(np.float32)
    expected = members_average(out, images)
    kept = zoo.load(out / "models/ensemble")  # as the bench kept it, rebuilt from its members
    assert kept.input_size == 40 and kept.class_names == ["dark", "light"]
    np.testing.assert_allclose(kept(images), expected, atol=1e-5)
    for command, quantize, tolerance in (
        ([*shlex.split(suggested)[1:], "--out", str(tmp_path / "tflite")], "none", 1e-4),
        (["export", str(out), "ensemble(top+bottom)", "--out", str(tmp_path / "keras")], "none", 1e-5),
        (["export", str(out), "ensemble", "--format", "savedmodel", "--out", str(tmp_path / "savedmodel")], "none", 1e-5),
        (["export", str(out), "ensemble", "--format", "tflite", "--quantize", "int8", "--out", str(tmp_path / "int8")], "int8", 0.1),
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        folder = Path(command[command.index("--out") + 1])
        meta = json.loads((folder / "zoo.json").read_text())
        assert meta["kind"] == "ensemble" and meta["backbone"] == "ensemble(top+bottom)" and meta["quantize"] == quantize
        assert {name: member["weight"] for name, member in meta["members"].items()} == row["members"]
        assert [member["input_size"] for member in meta["members"].values()] == [32, 40]
        assert (folder / "labels.txt").read_text() == "dark\nlight\n"
        loaded = zoo.load(folder)
        assert loaded.input_size == 40 and loaded.class_names == ["dark", "light"]
        np.testing.assert_allclose(loaded(images), expected, atol=tolerance, err_msg=str(folder))


def test_predict_on_the_ensemble_and_no_ensemble_says_why(halves_plugin, halves_bench, halves, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(halves_bench[0], out)
    result = CliRunner().invoke(app, ["predict", str(out / "models/ensemble"), str(halves / "test"), "--json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    right = [p["top"][0]["class"] == Path(p["file"]).parent.name for p in predictions]
    assert len(predictions) == 8 and np.mean(right) >= read_results(out)["backbones"][-1]["top1"] - 0.25
    with pytest.MonkeyPatch.context() as patch:  # named relative to where the user is
        patch.chdir(out / "models")
        relative = CliRunner().invoke(app, ["predict", "ensemble", str(halves / "test"), "--json"])
    assert relative.exit_code == 0 and json.loads(relative.stdout)["predictions"] == predictions, relative.output

    # --no-ensemble (rows reused by --resume): one line says there is none and why; the kept one goes.
    bench = ["bench", "top", "bottom", "--data", str(halves), "--out", str(out), "--resume", "--epochs", "10",
             "--learning-rate", "0.05", "--batch-size", "4", "--weights", "none", "--no-ensemble"]
    result = CliRunner().invoke(app, bench)
    assert result.exit_code == 0, result.output
    assert "No ensemble row: --no-ensemble was given." in result.output
    assert [row["kind"] for row in read_results(out)["backbones"]] == ["backbone", "backbone"]
    assert not (out / "models/ensemble").exists() and "Best: ensemble" not in result.output
    result = CliRunner().invoke(app, ["export", str(out), "ensemble"])
    assert result.exit_code == 2 and f"{out} has no ensemble row: --no-ensemble was given" in result.output


def test_a_merge_of_shards_makes_the_ensemble_one_bench_would(halves_plugin, halves_bench, halves, tmp_path):
    """Each shard holds one member: the merge chooses the ensemble of them all, as the single
    bench did, and keeps it (its members in their shards' folders) for export."""
    single_out, _ = halves_bench
    options = ["--epochs", "10", "--learning-rate", "0.05", "--batch-size", "4", "--weights", "none"]
    for index in (1, 2):
        result = CliRunner().invoke(app, ["bench", "top", "bottom", "--data", str(halves), "--shard", f"{index}/2",
                                          "--out", str(tmp_path / f"s{index}"), *options])
        assert result.exit_code == 0, result.output
        assert read_results(tmp_path / f"s{index}")["backbones"][-1]["kind"] == "backbone"  # one member each
    merged = CliRunner().invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                      "--out", str(tmp_path / "all")])
    assert merged.exit_code == 0, merged.output
    single, combined = (read_results(out)["backbones"][-1] for out in (single_out, tmp_path / "all"))
    assert combined["kind"] == "ensemble" and combined["members"] == single["members"]  # in the shards' order
    assert combined["top1"] == single["top1"] and combined["val_top1"] == single["val_top1"]
    photos = str(halves / "test")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "all/models/ensemble"), photos, "--json"])
    expected = CliRunner().invoke(app, ["predict", str(single_out / "models/ensemble"), photos, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predictions"] == json.loads(expected.stdout)["predictions"]


def test_a_merge_of_no_ensemble_shards_makes_no_ensemble_and_mixed_sizes_are_refused(halves_plugin, halves, tmp_path):
    """Shards benched with --no-ensemble merge into the table one such bench gives: no ensemble
    row (it was once added anyway, and became the best); shards of other sizes are refused."""
    options = ["--epochs", "10", "--learning-rate", "0.05", "--batch-size", "4", "--weights", "none"]
    for index, size in ((1, ["--no-ensemble"]), (2, ["--no-ensemble"]), (3, [])):
        shard = "2/2" if index == 3 else f"{index}/2"
        result = CliRunner().invoke(app, ["bench", "top", "bottom", "--data", str(halves), "--shard", shard,
                                          "--out", str(tmp_path / f"s{index}"), *options, *size])
        assert result.exit_code == 0, result.output
    merged = CliRunner().invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                      "--out", str(tmp_path / "all")])
    assert merged.exit_code == 0, merged.output
    assert "No ensemble row: --no-ensemble was given." in merged.output
    results = read_results(tmp_path / "all")
    assert [row["kind"] for row in results["backbones"]] == ["backbone", "backbone"]
    mixed = CliRunner().invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s3"),
                                     "--out", str(tmp_path / "mixed")])
    assert mixed.exit_code == 2
    [line] = mixed.stderr.strip().splitlines()
    assert "--ensemble-size 3" in line and "with 0" in line and "same settings" in line
