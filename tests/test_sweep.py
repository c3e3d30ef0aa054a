"""A sweep spread over jobs: `zoo bench --shard I/N` and `zoo report --merge`, on real small models."""

import json
import os
import textwrap

import pytest
from conftest import PLUGIN_HEAD, write_plugins
from typer.testing import CliRunner

from zoo.cli import app
from zoo.errors import ZooError
from zoo.sweep import Shard

runner = CliRunner()

# Four real backbones kept small: two Keras applications at 32 px and two tiny CNNs.
PLUGIN = PLUGIN_HEAD + textwrap.dedent(
    """
    @hookimpl
    def zoo_backbones():
        return [
            _spec("mobilenet_v3_small_32", source="keras.applications", reference="MobileNetV3Small",
                  preprocessing="none", feature_dim=576),
            _spec("mobilenet_v2_32", source="keras.applications", reference="MobileNetV2",
                  preprocessing="symmetric", feature_dim=1280),
            _spec("tiny_a"),
            _spec("tiny_b"),
            _spec("broken_net", source="keras.applications", reference="NoSuchNet"),
        ]

    @hookimpl
    def zoo_build_backbone(spec, weights):
        return _tiny_cnn() if spec.source == "custom" else None
    """
)
NAMES = ["mobilenet_v2_32", "mobilenet_v3_small_32", "tiny_a", "tiny_b"]
TIMINGS = {"extract_seconds", "head_seconds", "validation_seconds", "finetune_seconds", "train_seconds", "total_seconds", "finished_at",
           "images_per_sec", "latency_ms_p50", "latency_ms_p95", "peak_rss_mb",
           "runtime_note",  # it says how much faster TFLite was
           "speed_from"}  # a latency is measured once per architecture: by whichever shard benches it first


@pytest.fixture
def four_backbones(tmp_path, monkeypatch):
    write_plugins(tmp_path, monkeypatch, four=PLUGIN)


def bench(tiny_dataset, out, *extra, names=NAMES):
    result = runner.invoke(app, [
        "bench", *names, "--data", str(tiny_dataset), "--weights", "none", "--epochs", "2",
        "--batch-size", "4", "--out", str(out), *extra,
    ])
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def untimed(row):
    return {key: value for key, value in row.items() if key not in TIMINGS}


def test_shards_cover_every_backbone_once_and_merge_into_a_single_runs_rows(
    four_backbones, tiny_dataset, tmp_path, monkeypatch
):
    shards = [bench(tiny_dataset, tmp_path / f"s{i}", "--shard", f"{i}/3") for i in (1, 2, 3)]
    assert [[row["backbone"] for row in shard["backbones"]] for shard in shards] == [
        ["mobilenet_v2_32", "tiny_b"], ["mobilenet_v3_small_32"], ["tiny_a"]
    ]
    assert [shard["shard"] for shard in shards] == [{"index": i, "count": 3} for i in (1, 2, 3)]

    result = runner.invoke(app, ["report", "--merge", *(str(tmp_path / f"s{i}") for i in (1, 2, 3)),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert sorted(row["backbone"] for row in merged["backbones"] if row["kind"] == "backbone") == NAMES
    assert merged["missing_shards"] == [] and len(merged["merged_from"]) == 3
    assert [source["command"] for source in merged["merged_from"]] == [shard["command"] for shard in shards]
    assert merged["started_at"] >= shards[2]["finished_at"]  # the merge's, not shard 1's
    assert merged.get("finished_at") != shards[0]["finished_at"]
    assert (tmp_path / "merged" / "accuracy_vs_speed.png").stat().st_size > 0
    assert "| tiny_a |" in (tmp_path / "merged" / "results.md").read_text()

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "fresh-cache"))  # extract again, as the shards did
    single = bench(tiny_dataset, tmp_path / "single")
    # the same rows, the ensemble of them all included; each classifier stays in its shard's folder
    expected = {row["backbone"]: {**untimed(row), "classifier": None} for row in single["backbones"]}
    assert {row["backbone"]: {**untimed(row), "classifier": None} for row in merged["backbones"]} == expected
    assert merged["dataset"] == single["dataset"]
    assert merged["no_ensemble"].split(" beat ")[1] == single["no_ensemble"].split(" beat ")[1]  # chosen of all
    exported = runner.invoke(app, ["export", str(tmp_path / "merged"), "--out", str(tmp_path / "best")])
    assert exported.exit_code == 0, exported.output

    # --resume works per shard: a rerun of shard 1 keeps both of its rows without benching them
    rerun = runner.invoke(app, ["bench", *NAMES, "--data", str(tiny_dataset), "--weights", "none", "--epochs", "2",
                                "--batch-size", "4", "--out", str(tmp_path / "s1"), "--shard", "1/3", "--resume"])
    assert rerun.exit_code == 0, rerun.output
    assert rerun.stderr.count("finished before with these settings") == 2


def test_merging_shards_of_other_settings_or_data_is_refused(four_backbones, tiny_dataset, tmp_path):
    bench(tiny_dataset, tmp_path / "s1", "--shard", "1/2", "--no-mirror", names=["tiny_a", "tiny_b"])
    bench(tiny_dataset, tmp_path / "s2", "--shard", "2/2", names=["tiny_a", "tiny_b"])
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "mirror False vs True" in line and "same settings" in line
    assert not (tmp_path / "merged").exists()

    other = json.loads((tmp_path / "s2" / "results.json").read_text())
    other["dataset"]["test_images"] += 1
    (tmp_path / "s2" / "results.json").write_text(json.dumps(other))
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 2 and "dataset differs" in result.stderr and "test_images 6 vs 7" in result.stderr

    other["dataset"]["test_images"] -= 1
    other["zoo_version"] = "0.0.1"  # a shard benched by another zoo, with the same settings as s1
    other["backbones"] = [{**row, "mirror": False} for row in other["backbones"] if row["kind"] == "backbone"]
    (tmp_path / "s2" / "results.json").write_text(json.dumps(other))
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    ours = json.loads((tmp_path / "s1" / "results.json").read_text())["zoo_version"]
    assert f"benched by zoo 0.0.1, {tmp_path / 's1'} by zoo {ours}; bench every shard with the same zoo version" in line


def test_shards_of_one_command_merge_whatever_weights_each_backbone_got(four_backbones, tiny_dataset, tmp_path):
    """The --weights mode is the setting; which weights a row got (random, or none: it failed)
    differs from backbone to backbone."""
    for shard in (1, 2):  # broken_net in the first, which fails (exit 1) and keeps it as a failed row
        runner.invoke(app, ["bench", "tiny_a", "broken_net", "--data", str(tiny_dataset), "--weights", "none",
                            "--epochs", "2", "--batch-size", "4", "--out", str(tmp_path / f"s{shard}"),
                            "--shard", f"{shard}/2"])
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "merged" / "results.json").read_text())["backbones"]
    assert {(row["backbone"], row["status"], row["weights_mode"]) for row in rows} == {
        ("tiny_a", "ok", "none"), ("broken_net", "failed", "none")}


def test_a_merge_with_a_shard_missing_says_which(four_backbones, tiny_dataset, tmp_path):
    bench(tiny_dataset, tmp_path / "s3", "--shard", "3/3", names=["tiny_a", "tiny_b", "mobilenet_v2_32"])
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s3"), "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert "Shards 1/3, 2/3 are missing" in result.stderr


@pytest.mark.parametrize("text", ["0/3", "4/3", "2", "a/b", "1/0", "-1/2"])
def test_a_bad_shard_is_one_line(text):
    with pytest.raises(ZooError, match=r"give I/N with 1 <= I <= N"):
        Shard.parse(text)


def test_shards_interleave_in_name_order_and_refuse_to_be_empty():
    names = ["d", "a", "c", "b", "e"]
    parts = [Shard(i, 2).select(names, name=str) for i in (1, 2)]
    assert parts == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(ZooError, match="use at most 5 shards"):
        Shard(1, 6).select(names, name=str)


def test_report_takes_one_folder_unless_merging(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 2 and "--merge DIR... --out MERGED" in result.stderr
    result = runner.invoke(app, ["report", "--merge", str(tmp_path)])
    assert result.exit_code == 2 and "--merge needs --out" in result.stderr


@pytest.mark.parametrize("shard", ["2/3", {"index": 2}, {"index": 4, "count": 3}, [2, 3]])
def test_a_shard_field_hand_edited_or_damaged_is_one_line_not_a_crash(four_backbones, tiny_dataset, tmp_path, shard):
    bench(tiny_dataset, tmp_path / "s1", "--shard", "1/2", names=["tiny_a", "tiny_b"])
    bench(tiny_dataset, tmp_path / "s2", "--shard", "2/2", names=["tiny_a", "tiny_b"])
    edited = json.loads((tmp_path / "s2" / "results.json").read_text())
    (tmp_path / "s2" / "results.json").write_text(json.dumps({**edited, "shard": shard}))
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "results.json has shard" in line and "rerun the bench" in line


def test_a_merge_never_overwrites_a_benchs_results_and_replaces_an_earlier_merge_whole(
    four_backbones, tiny_dataset, tmp_path
):
    for i in (1, 2):
        bench(tiny_dataset, tmp_path / f"s{i}", "--shard", f"{i}/2", names=["tiny_a", "tiny_b"])
    before = (tmp_path / "s1" / "results.json").read_text()
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s2"), "--out", str(tmp_path / "s1")])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "holds results that are not an earlier merge's" in line and "give a new folder" in line
    assert (tmp_path / "s1" / "results.json").read_text() == before

    merged = tmp_path / "merged"
    for folders in (["s1", "s2"], ["s1"]):  # merged again, with one shard fewer
        result = runner.invoke(app, ["report", "--merge", *(str(tmp_path / f) for f in folders), "--out", str(merged)])
        assert result.exit_code == 0, result.output
    assert [row["backbone"] for row in json.loads((merged / "results.json").read_text())["backbones"]] == ["tiny_a"]
    assert sorted(path.name for path in (merged / "predictions").iterdir()) == ["tiny_a.npz"]
    assert not (merged / "confusion_tiny_b.png").exists()


def test_a_shard_given_twice_is_named_as_such(four_backbones, tiny_dataset, tmp_path, monkeypatch):
    bench(tiny_dataset, tmp_path / "s1", "--shard", "1/2", names=["tiny_a", "tiny_b"])
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", "--merge", "s1", str(tmp_path / "s1"), "--out", "merged"])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"{tmp_path / 's1'} is given twice (also as s1); give each folder to merge once" in line
    assert not (tmp_path / "merged").exists()


def test_a_merge_of_shards_of_different_sweep_sizes_warns_that_backbones_may_be_left_out(
    four_backbones, tiny_dataset, tmp_path
):
    """1/3 of tiny_a, tiny_b, mobilenet_v2_32 is mobilenet_v2_32; 2/2 of tiny_a, tiny_b is tiny_b: tiny_a is in neither."""
    bench(tiny_dataset, tmp_path / "s1", "--shard", "1/3", names=["tiny_a", "tiny_b", "mobilenet_v2_32"])
    bench(tiny_dataset, tmp_path / "s2", "--shard", "2/2", names=["tiny_a", "tiny_b"])
    result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                 "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert "Shards 1/3, 2/2 come from sweeps of different sizes, so some backbones may be in none" in " ".join(
        result.stderr.split())
    assert json.loads((tmp_path / "merged" / "results.json").read_text())["mixed_sweeps"] == ["1/3", "2/2"]


def test_a_shard_still_being_benched_is_not_merged(four_backbones, tiny_dataset, tmp_path):
    from zoo.report import results_lock

    bench(tiny_dataset, tmp_path / "s1", "--shard", "1/2", names=["tiny_a", "tiny_b"])
    with results_lock(tmp_path / "s1"):  # as a bench of it still running holds it
        result = runner.invoke(app, ["report", "--merge", str(tmp_path / "s1"), "--out", str(tmp_path / "merged")])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert f"{tmp_path / 's1'} is still being written by a zoo bench (pid {os.getpid()}); wait for it" in line
    assert not (tmp_path / "merged").exists()
