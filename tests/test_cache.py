"""The feature cache (zoo.features) and `zoo cache list|clear`: keys, streaming, atomicity."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from zoo import features
from zoo.cli import app

IDENTITY = {"backbone": "net", "weights": "random:seed=1", "input_size": 32}


def write_files(folder, count=5):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index}.jpg"
        path.write_bytes(b"x" * (index + 1))
        paths.append(str(path))
    return paths


def batches(count, dim, batch_size=2):
    data = np.arange(count * dim, dtype=np.float32).reshape(count, dim)
    return [data[i : i + batch_size] for i in range(0, count, batch_size)], data


def test_the_key_changes_with_any_file_size_mtime_or_the_identity(tmp_path):
    files = write_files(tmp_path)
    key = features.feature_key(IDENTITY, files)
    assert key == features.feature_key(dict(IDENTITY), list(files))
    assert key != features.feature_key({**IDENTITY, "weights": "random:seed=2"}, files)
    assert key != features.feature_key(IDENTITY, files[:-1])
    stat = os.stat(files[0])
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = features.feature_key(IDENTITY, files)
    assert touched != key
    with open(files[1], "ab") as handle:
        handle.write(b"more")
    assert features.feature_key(IDENTITY, files) != touched


def test_extraction_streams_into_the_cache_and_loads_back_memory_mapped(tmp_path):
    chunks, expected = batches(5, 3)
    seen = []
    stored = features.store(
        "net", "train", "k1", {"images": 5},
        lambda destination: features.extract(chunks, lambda b: b * 2, 5, 3, destination, lambda *step: seen.append(step)),
    )
    assert seen == [("features", 2, 5), ("features", 4, 5), ("features", 5, 5)]
    np.testing.assert_array_equal(stored, expected * 2)
    loaded = features.load("net", "train", "k1")
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, expected * 2)
    assert features.load("net", "train", "other-key") is None
    [entry] = features.entries()
    assert entry["backbone"] == "net" and entry["split"] == "train" and entry["count"] == 5
    assert entry["dim"] == 3 and entry["bytes"] > 5 * 3 * 4


def test_an_interrupted_extraction_leaves_no_entry_and_no_partial_file(tmp_path):
    chunks, _ = batches(6, 2)

    def forward(batch):
        if forward.calls == 2:
            raise KeyboardInterrupt
        forward.calls += 1
        return batch

    forward.calls = 0
    with pytest.raises(KeyboardInterrupt):
        features.store("net", "test", "k2", {}, lambda d: features.extract(chunks, forward, 6, 2, d))
    assert features.load("net", "test", "k2") is None
    assert list(features.cache_dir("features").iterdir()) == []


def test_a_short_pipeline_is_an_error_not_a_cache_entry():
    chunks, _ = batches(3, 2)
    with pytest.raises(RuntimeError, match="extracted 3 feature rows, expected 4"):
        features.store("net", "test", "k3", {}, lambda d: features.extract(chunks, lambda b: b, 4, 2, d))
    assert features.entries() == []


def test_clear_one_backbone_or_everything():
    for backbone in ("net", "net-b"):
        chunks, _ = batches(2, 2)
        features.store(backbone, "train", "k", {}, lambda d, c=chunks: features.extract(c, lambda b: b, 2, 2, d))
    assert features.clear("net")[0] == 2
    assert [entry["backbone"] for entry in features.entries()] == ["net-b"]
    removed, freed = features.clear()
    assert removed == 2 and freed > 0 and features.entries() == []


def test_cache_list_and_clear_commands():
    chunks, _ = batches(4, 2)
    features.store("net", "train", "abc", {}, lambda d: features.extract(chunks, lambda b: b, 4, 2, d))
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.stdout)["entries"]
    assert entry["backbone"] == "net" and entry["count"] == 4
    table = runner.invoke(app, ["cache", "list"])
    assert "net" in table.stdout and "1 entry," in table.stdout
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 2 files" in cleared.stdout
    assert features.entries() == []


def test_converted_models_are_listed_checked_and_cleared_with_the_features(tmp_path):
    """zoo.runtime keeps converted TFLite extractors here; they belong to no dataset."""
    chunks, _ = batches(2, 2)
    features.store("net", "train", "k", {"dataset": str(tmp_path)}, lambda d: features.extract(chunks, lambda b: b, 2, 2, d))
    features.store_model("net", "m1", b"flatbuffer bytes", {"convert_seconds": 1.5})
    assert features.load_model("net", "m1") == b"flatbuffer bytes" and features.load_model("net", "m2") is None
    [model] = features.models()
    assert model["backbone"] == "net" and model["kind"] == "tflite" and model["bytes"] == len(b"flatbuffer bytes")
    assert [entry["split"] for entry in features.entries()] == ["train"]
    listed = json.loads(CliRunner().invoke(app, ["cache", "list", "--json"]).stdout)
    assert len(listed["entries"]) == 1 and listed["models"][0]["key"] == "m1"
    table = CliRunner().invoke(app, ["cache", "list"], env={"COLUMNS": "200"})
    assert "TFLite model" in table.stdout and "1 entry, 1 converted TFLite model," in table.stdout
    assert features.clear(dataset=tmp_path)[0] == 2  # the features' two files; the model stays
    assert features.entries() == [] and len(features.models()) == 1
    with open(model["files"][0], "ab") as handle:
        handle.write(b"garbled")
    with pytest.raises(features.DamagedEntry, match=r"damaged TFLite cache entry net-m1.tflite \(its checksum"):
        features.load_model("net", "m1")
    assert features.models() == []  # the damaged entry is gone, to be converted again
    features.store_model("net", "m1", b"flatbuffer bytes", {})
    assert features.clear()[0] == 2 and features.models() == []


def test_a_measurement_or_a_converted_model_the_cache_cannot_take_is_simply_not_kept():
    """Folders where their files should go: nothing kept, nothing raised; measured or converted again."""
    features.cache_dir("features", "measures").joinpath(f"flops-{'k' * 24}.json").mkdir(parents=True)
    features.remember("flops", "k" * 24, 1.5, "net")
    assert features.recall("flops", "k" * 24) is None
    features.cache_dir("features", features.MODELS).joinpath("net-m2.json").mkdir(parents=True)
    features.store_model("net", "m2", b"flatbuffer bytes", {})
    assert features.load_model("net", "m2") is None


def test_a_feature_file_whose_record_is_gone_is_listed_as_damaged_and_cleared_with_its_backbone():
    features.store("net-a", "train-mirrored", "0123abcd", {}, lambda d: features.extract([np.ones((2, 2))], lambda b: b, 2, 2, d))
    features.store("other", "test", "0123abcd", {}, lambda d: features.extract([np.ones((2, 2))], lambda b: b, 2, 2, d))
    features.cache_dir("features").joinpath("net-a-train-mirrored-0123abcd.json").unlink()
    [orphan] = [entry for entry in features.entries() if "damaged" in entry]
    assert (orphan["backbone"], orphan["split"], orphan["damaged"]) == ("net-a", "train-mirrored", "no record")
    assert "damaged: no record" in CliRunner().invoke(app, ["cache", "list"], env={"COLUMNS": "200"}).stdout
    assert features.clear(backbone="net-a")[0] == 1
    assert [entry["backbone"] for entry in features.entries()] == ["other"]


def test_cache_clear_names_datasets_with_square_brackets_as_they_are(tmp_path):
    """Rich read `[/x]` in a folder's name as a closing tag matching nothing: `Unexpected error`."""
    cached, other = tmp_path / "food[bold]", tmp_path / "a[" / "x]"  # a path that holds `[/x]`
    chunks, _ = batches(4, 2)
    meta = {"dataset": features.dataset_name(cached)}
    features.store("net", "train", "abc", meta, lambda d: features.extract(chunks, lambda b: b, 4, 2, d))
    cleared = CliRunner().invoke(app, ["cache", "clear", "--dataset", str(other)])
    assert cleared.exit_code == 0, cleared.output
    assert f"nothing cached is for --dataset {other}; cached: {cached} (zoo cache list)" in cleared.stdout
    listed = CliRunner().invoke(app, ["cache", "list"])
    assert str(cached) in listed.stdout
