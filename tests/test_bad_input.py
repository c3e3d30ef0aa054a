"""The reliability suite: bad input, built for real, through the real CLI.

Each case ends in a bench that finishes and counts what it skipped, or in one line that names
the problem and the fix (exit 2) — never a traceback, a hang, or a lost results.json.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images
from PIL import Image
from typer.testing import CliRunner

from zoo.cli import app

runner = CliRunner()
ZOO = Path(sys.executable).parent / "zoo"
FAST = ["--weights", "none", "--epochs", "1", "--batch-size", "8"]


def bench(data, out, *extra):
    return runner.invoke(app, ["bench", "mobilenet_v2", "--data", str(data), "--out", str(out), *FAST, *extra])


def one_line_error(result, *expected: str, code: int = 2) -> str:
    """Assert the command failed with exactly one `Error:` line holding `expected`; return it."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.strip().splitlines()[-1]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def rows_of(out: Path) -> list[dict]:
    results = json.loads((out / "results.json").read_text())
    return results["backbones"] if isinstance(results, dict) else results


# 1. --data missing, not a folder, or without train/ or test/


def test_data_that_does_not_exist(tmp_path):
    one_line_error(bench(tmp_path / "nowhere", tmp_path / "out"), "nowhere: no such folder", "train/ and test/")


def test_data_that_is_a_file(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"PK")
    one_line_error(bench(tmp_path / "data.zip", tmp_path / "out"), "data.zip is a file; give a folder")


@pytest.mark.parametrize("missing", ["train", "test"])
def test_data_without_a_split(missing, tmp_path):
    present = {"train", "test"} - {missing}
    make_images(tmp_path / "data" / present.pop(), {"cat": 1})
    one_line_error(bench(tmp_path / "data", tmp_path / "out"), f"has no {missing}/ folder", f"{missing}/<class>/")


# 2. a split with no class folders; a class folder with no images


def test_a_split_with_images_but_no_class_folders(tmp_path):
    make_images(tmp_path / "data/train", {"cat": 2})
    (tmp_path / "data/test").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "data/test/loose.jpg")
    one_line_error(bench(tmp_path / "data", tmp_path / "out"), "test has no class folders", "test/<class>/")


def test_a_class_folder_with_no_images(tmp_path):
    make_images(tmp_path / "data/train", {"cat": 2, "dog": 2})
    make_images(tmp_path / "data/test", {"cat": 1})
    (tmp_path / "data/test/dog").mkdir()
    (tmp_path / "data/test/dog/.DS_Store").write_bytes(b"\0")
    one_line_error(
        bench(tmp_path / "data", tmp_path / "out"),
        "test/dog has no usable images (1 hidden file)", "remove this class from both train/ and test/",
    )


# 3. test classes that differ from train classes


def test_a_class_missing_from_test(tmp_path):
    make_images(tmp_path / "data/train", {"cat": 1, "dog": 1, "fox": 1})
    make_images(tmp_path / "data/test", {"cat": 1, "dog": 1})
    one_line_error(bench(tmp_path / "data", tmp_path / "out"), "test/ has no 'fox'", "same class folders")


def test_an_extra_test_class_with_a_likely_typo(tmp_path):
    make_images(tmp_path / "data/train", {"cat": 1, "Doggo": 1})
    make_images(tmp_path / "data/test", {"cat": 1, "Doggo": 1, "doggo": 1})
    one_line_error(bench(tmp_path / "data", tmp_path / "out"), "train/ has no 'doggo' (is it 'Doggo'?)")


# 4–7. junk files, every image format, odd names, a symlinked class, one image of a class and a
# 100:1 imbalance: one bench run, checked several ways

JUNK = {
    ".DS_Store": b"\0\0\0\1Bud1",
    "Thumbs.db": b"\xd0\xcf\x11\xe0",
    "notes.txt": b"scraped from the web",
    "empty.jpg": b"",
    "404.jpg": b"<html>Not Found</html>",
}


@pytest.fixture(scope="module")
def messy_bench(tmp_path_factory):
    """A scraped-looking dataset: junk and truncated files, odd formats and names, a symlinked class.

    And its classes are as uneven as scraped ones: 100 dogs to 1 of "rare", in train and test alike.
    """
    root = tmp_path_factory.mktemp("messy")
    cat = root / "train/crème brûlée"
    make_images(root / "train", {"crème brûlée": 2, "dog": 100, "rare": 1}, size=32)
    for name, contents in JUNK.items():
        (cat / name).write_bytes(contents)
    photo = (root / "train/dog/dog_0.jpg").read_bytes()
    (cat / "half downloaded.jpg").write_bytes(photo[: len(photo) // 2])
    red = Image.new("RGB", (40, 30), (255, 0, 0))
    red.convert("L").save(cat / "grey.jpg")
    red.convert("CMYK").save(cat / "cmyk.jpg")
    Image.new("RGBA", (40, 30), (255, 0, 0, 100)).save(cat / "rgba.png")
    red.convert("P").save(cat / "palette.bmp")
    red.save(cat / "photo 1 (copy).gif", save_all=True, append_images=[Image.new("RGB", (40, 30))])
    Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(cat / "16-bit.png")
    Image.new("RGB", (8000, 8000), (255, 0, 0)).save(cat / "huge 8000×8000.jpg")
    red.save(cat / "фото 猫.jpg")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    make_images(elsewhere, {"crème brûlée": 2}, size=32, seed=1)
    make_images(root / "test", {"dog": 1, "rare": 1}, size=32, seed=1)
    (root / "test/crème brûlée").symlink_to(elsewhere / "crème brûlée", target_is_directory=True)
    out = root.parent / f"{root.name}-results"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        result = bench(root, out)
    return root, out, result


def test_junk_and_truncated_files_are_skipped_and_counted(messy_bench):
    root, out, result = messy_bench
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    [summary] = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert summary.startswith("skipped 6 files: ")
    for reason in ("1 hidden file", "2 not an image file type", "1 empty file", "1 not an image (",
                   "1 truncated or corrupt (train/crème brûlée/half downloaded.jpg)"):
        assert reason in summary, summary


def test_every_format_odd_name_and_symlinked_class_is_used(messy_bench):
    root, out, result = messy_bench
    # 2 + 8 odd-format or odd-name images of crème brûlée, 100 dogs, 1 rare; 2 + 1 + 1 test images
    assert "3 classes, 111 train and 4 test images" in result.stderr
    [row] = rows_of(out)
    assert row["status"] == "ok", row["error"]
    assert row["top1"] in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_a_single_image_class_in_a_100_to_1_imbalance_still_gets_its_accuracy(messy_bench):
    [row] = rows_of(messy_bench[1])
    assert row["status"] == "ok", row["error"]
    if "per_class_accuracy" in row:  # each class's share of its test images classified right
        assert set(row["per_class_accuracy"]) == {"crème brûlée", "dog", "rare"}
        assert row["per_class_accuracy"]["rare"] in (0.0, 1.0)
        assert row["per_class_accuracy"]["crème brûlée"] in (0.0, 0.5, 1.0)


# 8. broken plugins, through ZOO_PLUGINS and the CLI

BROKEN_PLUGINS = {
    "fails_to_import": "import torch_that_is_not_installed\n",
    "hook_raises": "from zoo import hookimpl\n@hookimpl\ndef zoo_backbones():\n    raise ValueError('boom')\n",
    "invalid_spec": (
        "from zoo import BackboneSpec, hookimpl\n@hookimpl\ndef zoo_backbones():\n"
        "    return [BackboneSpec(name='Bad Name!', family='x', source='custom', reference='x',"
        " input_size=32, preprocessing='unit', feature_dim=4, params=1)]\n"
    ),
}
TWIN = (
    "from zoo import BackboneSpec, hookimpl\n@hookimpl\ndef zoo_backbones():\n"
    "    return [BackboneSpec(name='twin_net', family='x', source='custom', reference='x',"
    " input_size=32, preprocessing='unit', feature_dim=4, params=1)]\n"
)


def test_broken_plugins_are_named_in_one_line_each_and_the_built_ins_still_listed(tmp_path, monkeypatch):
    paths = []
    for name, text in {**BROKEN_PLUGINS, "twin_a": TWIN, "twin_b": TWIN}.items():
        paths.append(tmp_path / f"{name}.py")
        paths[-1].write_text(text)
    monkeypatch.setenv("ZOO_PLUGINS", os.pathsep.join(map(str, paths)))
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for built_in in ("mobilenet_v2", "resnet50_v2", "efficientnet_b0"):
        assert built_in in result.stdout
    warnings = result.stderr.strip().splitlines()
    for name in BROKEN_PLUGINS:
        assert sum(line.startswith(f"plugin {name} is broken: ") for line in warnings) == 1, result.stderr
    assert "backbone twin_net is declared by twin_a and twin_b; left out" in warnings
    assert len(warnings) == len(BROKEN_PLUGINS) + 1


# 10. --out that cannot be written; results.json survives a failed write


def test_out_that_is_a_file(tmp_path, tiny_dataset):
    (tmp_path / "taken").write_text("not a folder")
    one_line_error(bench(tiny_dataset, tmp_path / "taken"), "taken", "choose another --out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_that_is_read_only(tmp_path, tiny_dataset):
    (tmp_path / "locked").mkdir(mode=0o500)
    one_line_error(bench(tiny_dataset, tmp_path / "locked"), "locked", "choose another --out")


def test_a_write_that_fails_midway_leaves_the_previous_results_whole(tmp_path):
    """The disk fills while writing results.json (a file-size limit stands in for a full disk)."""
    previous = '{"backbones": ["the previous run"]}\n'
    (tmp_path / "results.json").write_text(previous)
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from zoo.errors import ZooError\n"
        "from zoo.report import write_results\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "row = {'backbone': 'x' * 100_000, 'status': 'ok', 'top1': 0.5, 'error': ''}\n"
        "try:\n"
        "    write_results(Path(sys.argv[1]), [row])\n"
        "except ZooError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cannot write results to" in done.stdout and "choose another --out" in done.stdout
    assert (tmp_path / "results.json").read_text() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no half-written temporary


# 13. bad options


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--batch-size", "0"], ("--batch-size", "must be 1 or more")),
        (["--epochs", "-1"], ("--epochs", "must be 0 or more")),
        (["--weights", "imagenett"], ("--weights imagenett: no such file; did you mean imagenet?",)),
    ],
)
def test_bad_bench_options(arguments, expected, tiny_dataset):
    result = runner.invoke(app, ["bench", "mobilenet_v2", "--data", str(tiny_dataset), *arguments])
    one_line_error(result, *expected)


def test_an_unknown_backbone_suggests_the_closest_names(tiny_dataset):
    result = runner.invoke(app, ["bench", "mobilenet_v3", "--data", str(tiny_dataset)])
    one_line_error(result, "unknown backbone 'mobilenet_v3'", "did you mean mobilenet_v2")


# --debug: the traceback, and only then


def test_the_real_script_shows_a_traceback_only_with_debug():
    plain = subprocess.run([ZOO, "info", "nosuch_net"], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [plain.stderr.strip()]
    assert plain.stderr.startswith("Error: unknown backbone 'nosuch_net'")
    debug = subprocess.run([ZOO, "--debug", "info", "nosuch_net"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "zoo.errors.ZooError: unknown backbone 'nosuch_net'" in debug.stderr


def test_an_unexpected_exception_is_one_line_too_and_asks_for_a_report(monkeypatch):
    from zoo import weights

    def broken_status(spec):
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(weights, "status", broken_status)
    result = runner.invoke(app, ["info", "mobilenet_v2"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip() == (
        "Unexpected error: RuntimeError: a bug, not bad input (rerun with --debug for the "
        "traceback, and please report it)"
    )
    assert isinstance(runner.invoke(app, ["--debug", "info", "mobilenet_v2"]).exception, RuntimeError)
