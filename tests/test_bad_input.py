"""The reliability suite: bad input, built for real, through the real CLI.

Each case ends in a bench that finishes and counts what it skipped, or in one line that names
the problem and the fix (exit 2) — never a traceback, a hang, or a lost results.json.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import damaged_inside, make_images, python_output, write_plugins
from PIL import Image
from typer.testing import CliRunner

from zoo import weights
from zoo.cli import app
from zoo.errors import ZooError
from zoo.report import write_results
from zoo.spec import BackboneSpec, Weights

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


def test_a_class_name_in_another_unicode_normalization_is_said_so(tmp_path):
    """macOS writes 'é' as 'e' and an accent (NFD): both print alike, so 'is it X?' named a class
    that looked the same as the one said to be missing."""
    make_images(tmp_path / "data/train", {"cat": 1, unicodedata.normalize("NFC", "café"): 1})
    make_images(tmp_path / "data/test", {"cat": 1, unicodedata.normalize("NFD", "café"): 1})
    one_line_error(bench(tmp_path / "data", tmp_path / "out"), "accents encoded differently", "rename one")


def test_a_dataset_of_one_class_is_refused(tmp_path):
    """A one-class softmax always says that class: the bench reported 100 % top-1."""
    make_images(tmp_path / "data/train", {"cat": 6})
    make_images(tmp_path / "data/test", {"cat": 2})
    one_line_error(bench(tmp_path / "data", tmp_path / "out", "--folds", "2"), "has one class, 'cat'", "two or more")


def test_a_class_folder_that_is_a_broken_link_is_refused(tmp_path):
    """A class folder linked to a drive that is gone was no class at all: linked so in both splits
    the class dropped out unsaid, in one split the message said 'train/ has no ...' beside it."""
    make_images(tmp_path / "data/train", {"cat": 1, "dog": 1})
    make_images(tmp_path / "data/test", {"cat": 1, "dog": 1})
    for split in ("train", "test"):
        (tmp_path / "data" / split / "fox").symlink_to(tmp_path / "unmounted/fox", target_is_directory=True)
    one_line_error(bench(tmp_path / "data", tmp_path / "out"), "train/fox is a broken link", "unmounted/fox")


def test_a_class_name_with_a_line_break_is_refused(tmp_path):
    """labels.txt holds one class a line: an export of such a class split it in two, and predict
    then refused the model (2 outputs, 3 classes named)."""
    make_images(tmp_path / "data/train", {"cat": 1, "hot\ndog": 1})
    make_images(tmp_path / "data/test", {"cat": 1, "hot\ndog": 1})
    one_line_error(bench(tmp_path / "data", tmp_path / "out"), "'hot\\ndog' has a line break", "rename it")


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
    assert row["test_images"] == 4
    # every test image, the symlinked class's included, is scored once: top-1 is the confusion's diagonal
    confusion = np.array(row["confusion_matrix"])
    assert confusion.sum() == 4 and row["top1"] == np.trace(confusion) / 4


def test_a_single_image_class_in_a_100_to_1_imbalance_still_gets_its_accuracy(messy_bench):
    [row] = rows_of(messy_bench[1])
    assert row["status"] == "ok", row["error"]
    # classes in sorted order, with 2, 1 and 1 test images; each one's accuracy is its own row's recall
    confusion = np.array(row["confusion_matrix"])
    assert confusion.sum(axis=1).tolist() == [2, 1, 1]
    expected = {name: confusion[i, i] / confusion[i].sum() for i, name in enumerate(["crème brûlée", "dog", "rare"])}
    assert row["per_class_accuracy"] == pytest.approx(expected)


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
    assert (
        "backbone twin_net is declared by twin_a and twin_b; left out until you disable one with "
        "ZOO_DISABLE_PLUGINS=<plugin>"
    ) in warnings
    # files given in ZOO_PLUGINS: fixed or taken out of it (ZOO_DISABLE_PLUGINS is for installed plugins)
    assert all(line.endswith(f"fix {tmp_path / line.split()[1]}.py, or take it out of ZOO_PLUGINS")
               for line in warnings[:-1])
    assert len(warnings) == len(BROKEN_PLUGINS) + 1


# 9. weights. Covered in tests/test_weights.py: a checksum mismatch on disk
# (test_a_wrong_file_is_refused_named_and_kept) and in a download
# (test_a_download_with_the_wrong_hash_is_refused_and_not_kept); a mirror that 404s
# (test_a_mirror_404_falls_back_to_the_pinned_url), stalls, breaks off or 404s everywhere, each
# ending within the timeout (test_failed_transfers_end_fast_in_one_line_and_leave_nothing);
# offline with nothing cached (test_offline_with_nothing_cached_is_one_line_naming_file_url_and_fixes,
# and through the real `zoo` in test_offline_is_one_clean_line_and_auto_benches_random).
# Here: files on disk that are truncated or cannot be read at all.

WEIGHTS = b"pretend weights " * 1000


def weights_spec(**pins) -> BackboneSpec:
    pins = pins or {"sha256": hashlib.sha256(WEIGHTS).hexdigest(), "size": len(WEIGHTS)}
    return BackboneSpec(
        name="pinned_net", family="test", source="keras.applications", reference="MobileNetV2",
        input_size=32, preprocessing="symmetric", feature_dim=1280, params=2257984,
        weights=Weights(file="pinned.h5", url="http://127.0.0.1:9/pinned.h5", **pins),
    )


def refused(spec: BackboneSpec, *expected: str) -> str:
    """imagenet refuses the file in one line; auto benches random weights and says why."""
    with pytest.raises(ZooError) as caught:
        weights.resolve(spec, "imagenet")
    message = str(caught.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, message
    fallback = weights.resolve(spec, "auto")
    assert fallback.path is None and fallback.label == "random" and message in fallback.note
    ok, detail = weights.verify_local(spec)  # `zoo weights verify` reports it too
    assert ok is False and detail == message
    return message


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    return tmp_path


def test_a_truncated_weights_file(weights_dir):
    (weights_dir / "pinned.h5").write_bytes(WEIGHTS[:5000])
    refused(weights_spec(), str(weights_dir / "pinned.h5"), f"has 5000 bytes, expected {len(WEIGHTS)}",
            "truncated", "replace it")


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_something_named_like_the_weights_file_that_is_not_a_file(kind, weights_dir):
    """Never downloaded over, and a fifo is never opened (reading it would block for ever)."""
    made = weights_dir / "pinned.h5"
    made.mkdir() if kind == "folder" else os.mkfifo(made)
    refused(weights_spec(), f"weights file {made} is not a regular file", "replace it")


def test_a_weights_file_that_fails_to_read(weights_dir):
    """/proc/self/mem opens, even for root, but reading its start fails with an I/O error."""
    if not Path("/proc/self/mem").is_file():
        pytest.skip("needs Linux /proc")
    (weights_dir / "pinned.h5").symlink_to("/proc/self/mem")
    refused(weights_spec(sha256="0" * 64), "pinned.h5 cannot be read (Input/output error)",
            "fix its permissions or replace it")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_weights_file_without_read_permission(weights_dir):
    (weights_dir / "pinned.h5").write_bytes(WEIGHTS)
    (weights_dir / "pinned.h5").chmod(0)
    refused(weights_spec(), "pinned.h5 cannot be read (Permission denied)", "fix its permissions")


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
    printed = python_output(code, str(tmp_path))
    assert "cannot write results to" in printed and "choose another --out" in printed
    assert (tmp_path / "results.json").read_text() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no half-written temporary


# 11. Ctrl-C while checking images, extracting, training and writing; then --resume finishes.
# A real SIGINT to a real `zoo bench`, sent while a test plugin's backbone holds its second
# forward pass (extraction by default, a training step with --augment) until the signal is sent.
# Ctrl-C in training the head on cached features: tests/test_bench.py
# (test_ctrl_c_loses_only_the_backbone_in_flight_and_resume_skips_finished_ones).

HOLD_PLUGIN = """
import os
import time
import unicodedata
from pathlib import Path

from zoo import BackboneSpec, hookimpl


@hookimpl
def zoo_backbones():
    return [BackboneSpec(name=name, family="test", source="custom", reference="tiny_cnn", input_size=32,
                         preprocessing="unit", feature_dim=8, params=224) for name in ("tiny_a", "tiny_b")]


def _hold(features):
    \"\"\"tiny_b's second batch: say so in $HOLD_DIR/holding, then wait for $HOLD_DIR/released.\"\"\"
    gate = Path(os.environ["HOLD_DIR"])
    _hold.calls = getattr(_hold, "calls", 0) + 1
    if _hold.calls == 2:
        (gate / "holding").touch()
        deadline = time.monotonic() + 60
        while not (gate / "released").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return features


@hookimpl
def zoo_build_backbone(spec, weights):
    import keras
    import tensorflow as tf

    class Hold(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.supports_jit = False  # it runs Python

        def call(self, x):
            return tf.ensure_shape(tf.numpy_function(_hold, [x], tf.float32, stateful=True), x.shape)

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if spec.name == "tiny_b" and os.environ.get("HOLD_DIR"):
        x = Hold()(x)
    return keras.Model(inputs, x)
"""
TINY = ["--weights", "none", "--epochs", "1", "--batch-size", "4"]
RESULTS = {".zoo-bench.lock", "results.json", "results.csv", "results.md", "accuracy_vs_speed.png", "tensorboard", "models"}


@pytest.fixture
def hold_plugin(tmp_path, monkeypatch):
    write_plugins(tmp_path, monkeypatch, hold_plugin=HOLD_PLUGIN)


def start_held_bench(gate: Path, *arguments: str) -> subprocess.Popen:
    """`zoo bench ARGUMENTS` in its own process, returned once tiny_b holds its second batch."""
    gate.mkdir()
    process = subprocess.Popen([ZOO, "bench", *arguments], env={**os.environ, "HOLD_DIR": str(gate)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (gate / "holding").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tiny_b never held its batch:\n{process.communicate()[1]}")
        time.sleep(0.02)
    return process


def ctrl_c(process: subprocess.Popen, gate: Path) -> str:
    """Press Ctrl-C, let the held batch go; the process must end at once, in one line, exit 130."""
    process.send_signal(signal.SIGINT)
    (gate / "released").touch()
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Interrupted")] == lines[-1:], stderr
    return lines[-1]


@pytest.mark.parametrize("phase, extra", [("extraction", []), ("training", ["--augment"])])
def test_ctrl_c_keeps_finished_rows_and_resume_finishes_the_rest(phase, extra, hold_plugin, tiny_dataset, tmp_path):
    out, features = tmp_path / "out", Path(os.environ["ZOO_CACHE_DIR"]) / "features"
    arguments = ["tiny_a", "tiny_b", "--data", str(tiny_dataset), "--out", str(out), *TINY, *extra, "--no-ensemble"]
    process = start_held_bench(tmp_path / "gate", *arguments)
    if phase == "extraction":
        assert list(features.glob(".tiny_b-train-*.partial"))  # the held batch is half written
    else:
        assert (out / "tensorboard/tiny_b/train").is_dir()  # model.fit has begun
    line = ctrl_c(process, tmp_path / "gate")
    assert line == (f"Interrupted: the backbones finished so far are in {out}/results.json; "
                    "run the same command with --resume to bench the rest")
    [saved] = rows_of(out)
    assert saved["backbone"] == "tiny_a" and saved["status"] == "ok"
    # No temporary file left; tiny_a's cross-validation predictions are whole.
    assert {path.name for path in out.iterdir()} - {"predictions"} == RESULTS | {"confusion_tiny_a.png"}
    assert [path.name for path in out.glob("predictions/*")] == (["tiny_a.npz"] if phase == "extraction" else [])
    assert not list(features.glob("*tiny_b*"))  # no half-written cache entry

    result = runner.invoke(app, ["bench", *arguments, "--resume"])
    assert result.exit_code == 0, result.output
    assert "tiny_a: finished before with these settings (--resume), kept" in result.stderr
    first, second = rows_of(out)
    assert first == saved and second["backbone"] == "tiny_b" and second["status"] == "ok"
    if phase == "extraction":
        assert second["feature_cache"] == "miss"


def test_ctrl_c_while_checking_images_stops_at_once_and_keeps_the_verdicts(tmp_path):
    from zoo.images import _cache_file, check_files

    make_images(tmp_path / "many", {"cat": 400}, size=8)
    files = sorted((tmp_path / "many/cat").iterdir())

    def ctrl_c_at_the_fifth(step, done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check_files(tmp_path / "many", files, ctrl_c_at_the_fifth)
    kept = json.loads(_cache_file(tmp_path / "many").read_text())
    assert 5 <= len(kept) < len(files)  # the rest were cancelled, not checked on the way out
    assert all(len(entry) == 4 for entry in kept.values())  # size, mtime, readable, verdict
    seen = []
    check_files(tmp_path / "many", files, lambda step, done, total: seen.append(total))
    assert seen[-1] == len(files) - len(kept)  # a rerun checks only what is left


def test_ctrl_c_between_writing_results_and_renaming_them_keeps_the_previous_file(tmp_path, monkeypatch):
    previous = [{"backbone": "tiny_a", "status": "ok", "top1": 0.5, "error": ""}]
    write_results(tmp_path, previous)
    before = (tmp_path / "results.json").read_bytes()

    def ctrl_c(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_results(tmp_path, [*previous, {"backbone": "tiny_b", "status": "ok", "top1": 1.0, "error": ""}])
    monkeypatch.undo()
    assert (tmp_path / "results.json").read_bytes() == before
    assert {path.name for path in tmp_path.iterdir()} == RESULTS - {".zoo-bench.lock", "tensorboard", "models"}


# 12. two benches into one --out at once: the second is refused at once; a killed one never blocks


def test_a_second_bench_into_a_busy_out_is_refused_and_a_killed_one_does_not_block(
    hold_plugin, tiny_dataset, tmp_path
):
    out = tmp_path / "out"
    arguments = ["--data", str(tiny_dataset), "--out", str(out), *TINY]
    first = start_held_bench(tmp_path / "gate", "tiny_b", *arguments)
    try:
        start = time.monotonic()
        second = runner.invoke(app, ["bench", "tiny_a", *arguments])
        assert time.monotonic() - start < 10
        one_line_error(second, f"{out} is in use by another zoo bench (pid {first.pid})",
                       "wait for it to finish, or choose another --out")
    finally:
        first.kill()  # as the OOM killer or `kill -9` would: no cleanup runs
        first.communicate(timeout=60)
    assert (out / ".zoo-bench.lock").read_text() == str(first.pid)  # left behind, yet
    third = runner.invoke(app, ["bench", "tiny_a", *arguments])
    assert third.exit_code == 0, third.output
    assert [row["backbone"] for row in rows_of(out)] == ["tiny_a"]


def test_out_is_checked_before_any_work_and_a_bad_data_leaves_no_folder(tmp_path, tiny_dataset):
    (tmp_path / "taken").write_text("not a folder")
    one_line_error(bench(tiny_dataset, tmp_path / "taken"), "cannot write results to", "choose another --out")
    assert not (Path(os.environ["ZOO_CACHE_DIR"]) / "scans").exists()  # not one image was checked
    one_line_error(bench(tmp_path / "nowhere", tmp_path / "new/out"), "nowhere: no such folder")
    assert not (tmp_path / "new/out").exists()


# 13. bad options


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--batch-size", "0"], ("--batch-size 0", "must be 1 to 4096")),
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


def test_bench_without_tensorflow_says_which_extra_to_install():
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # what an install without the extra sees
        "from zoo.cli import main; sys.argv = ['zoo', 'bench', 'mobilenet_v2']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "TensorFlow is not installed; pip install 'zoo[cpu]'" in result.stderr
    assert "Traceback" not in result.stderr


# Round two (issue 17). Most benches here use the tiny 32-px backbones of HOLD_PLUGIN.


# 17.3 a plugin calling sys.exit at import, or raising SystemExit in a hook, is only broken


def test_a_plugin_that_exits_is_isolated_like_any_broken_one(tmp_path, monkeypatch):
    write_plugins(
        tmp_path, monkeypatch, tiny=HOLD_PLUGIN, exits_at_import="import sys\nsys.exit(0)\n",
        exits_in_hook="import zoo\n@zoo.hookimpl\ndef zoo_backbones():\n    raise SystemExit(3)\n",
    )
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "mobilenet_v2" in result.stdout and "tiny_a" in result.stdout
    assert "plugin exits_at_import is broken: SystemExit: 0;" in result.stderr
    assert "plugin exits_in_hook is broken: SystemExit: 3;" in result.stderr
    assert runner.invoke(app, ["info", "tiny_b"]).exit_code == 0


# 17.16, 17.17 --debug shows a broken plugin's traceback; its backbones are not just "unknown"


def test_debug_shows_why_a_plugin_is_broken_and_its_backbones_name_it(tmp_path, monkeypatch):
    write_plugins(tmp_path, monkeypatch, my_net="import torch_that_is_not_installed\n")
    result = runner.invoke(app, ["--debug", "list"])
    assert result.exit_code == 0, result.output
    assert "Traceback (most recent call last)" in result.stderr
    assert "import torch_that_is_not_installed" in result.stderr
    one_line_error(
        runner.invoke(app, ["info", "my_net"]),
        "unknown backbone 'my_net': plugin my_net failed to load: ModuleNotFoundError: No module named "
        "'torch_that_is_not_installed'", "zoo --debug list",
    )


def test_a_broken_plugin_is_named_even_when_the_name_is_close_to_another_plugins(tmp_path, monkeypatch):
    write_plugins(tmp_path, monkeypatch, my_net="import torch_that_is_not_installed\n", tiny=HOLD_PLUGIN)
    one_line_error(
        runner.invoke(app, ["info", "tiny_x"]),
        "unknown backbone 'tiny_x': did you mean tiny_b, tiny_a?; plugin my_net failed to load: ModuleNotFoundError",
    )


# 17.19, 17.22 `zoo list --plugin X`; small parameter counts readable; ZOO_* in `zoo --help`


def test_list_takes_plugin_after_the_command_and_shows_small_counts_readably(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(HOLD_PLUGIN.replace("params=224", "params=23584"))
    result = runner.invoke(app, ["list", "--plugin", str(path)])
    assert result.exit_code == 0, result.output
    assert "tiny_a" in result.stdout and "23,584" in result.stdout and "0.0M" not in result.stdout


def test_help_names_the_environment_variables():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for variable in ("ZOO_PLUGINS", "ZOO_CACHE_DIR", "ZOO_WEIGHTS_DIR", "ZOO_DOWNLOAD_TIMEOUT", "KERAS_HOME"):
        assert variable in result.stdout


# 17.16, 17.21 builder mistakes name the plugin and the real cause


BUILDER_MISTAKES = """
import zoo

def _spec(name, **fields):
    base = dict(name=name, family="test", source="custom", reference="x", input_size=32,
                preprocessing="unit", feature_dim=8, params=224)
    return zoo.BackboneSpec(**{**base, **fields})

def _divide_by_zero(images):
    return images / 0 if images is None else 1 // 0

@zoo.hookimpl
def zoo_backbones():
    return [_spec("returns_none"), _spec("raises"), _spec("bad_preprocessing", preprocessing=_divide_by_zero),
            _spec("wrong_reference", source="keras.applications", reference="ConvNextTiny"),
            _spec("wrong_input_size"), _spec("two_outputs")]

@zoo.hookimpl
def zoo_build_backbone(spec, weights):
    import keras
    if spec.name == "raises":
        raise ValueError("boom")
    if spec.name == "two_outputs":
        inputs = keras.Input((32, 32, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
        return keras.Model(inputs, {"features": pooled, "logits": keras.layers.Dense(2)(pooled)})
    if spec.name in ("bad_preprocessing", "wrong_input_size"):
        inputs = keras.Input((48, 48, 3) if spec.name == "wrong_input_size" else (32, 32, 3))
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs)))
    return None
"""


@pytest.mark.parametrize(
    "name, expected",
    [
        ("returns_none", "plugin mistakes declares backbone 'returns_none' but its zoo_build_backbone returned None"),
        ("raises", "plugin mistakes's zoo_build_backbone failed for raises: ValueError: boom"),
        ("bad_preprocessing", "plugin mistakes: the preprocessing of bad_preprocessing "
                              "(zoo_local_plugin_mistakes._divide_by_zero) raised ZeroDivisionError"),
        ("wrong_reference", "keras.applications has no 'ConvNextTiny' (backbone wrong_reference); "
                            "did you mean 'ConvNeXtTiny'?"),
        ("wrong_input_size", "wrong_input_size builds a model for 48x48 images, but its spec says input_size=32; "
                             "plugin mistakes must build for spec.input_size or fix input_size"),
        ("two_outputs", "two_outputs outputs a dict of tensors, not one tensor of features; plugin mistakes must "
                        "build a model with a single (8,) output"),
    ],
)
def test_builder_mistakes_name_the_plugin_and_the_real_cause(name, expected, tmp_path, monkeypatch):
    from zoo import create_model

    write_plugins(tmp_path, monkeypatch, mistakes=BUILDER_MISTAKES)
    with pytest.raises(ZooError) as caught:
        create_model(name, 2, weights="none")
    assert expected in str(caught.value)


# 17.6, 17.7 environment variables set to files or bad numbers


@pytest.mark.parametrize("variable", ["ZOO_CACHE_DIR", "KERAS_HOME", "TFHUB_CACHE_DIR", "ZOO_WEIGHTS_DIR"])
def test_a_folder_variable_set_to_a_file_is_one_line(variable, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv(variable, str(tmp_path / "a_file"))
    one_line_error(runner.invoke(app, ["weights", "list"]), f"{variable}={tmp_path / 'a_file'} is a file, not a folder",
                   "point it at a folder, or unset it")
    monkeypatch.setenv(variable, str(tmp_path / "a_file" / "sub"))  # under a file: no folder can be made there
    one_line_error(runner.invoke(app, ["cache", "list"] if variable == "ZOO_CACHE_DIR" else ["weights", "list"]),
                   f"{variable}={tmp_path / 'a_file' / 'sub'} is inside {tmp_path / 'a_file'}, a file, not a folder")


def test_auto_weights_fall_back_to_random_when_keras_home_is_unusable(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "a_file"))
    fallback = weights.resolve(weights_spec(), "auto")
    assert fallback.label == "random" and "KERAS_HOME=" in fallback.note


@pytest.mark.parametrize("value", ["inf", "1e400", "-1", "0", "abc", "nan"])
def test_a_bad_download_timeout_is_one_line_before_any_work(value, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", value)
    one_line_error(bench(tiny_dataset, tmp_path / "out"), f"= {value!r} from env ZOO_DOWNLOAD_TIMEOUT",
                   "is not a number of seconds above 0")
    assert not (tmp_path / "out").exists()


# 17.10 results.json with bad rows, or that is a folder


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"backbone": "x", "top1": 0.5}, "has no 'status' text"),
        ("a string", "is a str, not an object"),
        ({"backbone": "x", "status": "ok", "top1": "0.5"}, "has top1='0.5', not a number"),
        ({"backbone": "x", "status": "ok", "top1": float("nan")}, "has top1=nan, not a number"),
        ({"backbone": "x", "status": "ok", "top1": 33.3}, "has top1=33.3, not a fraction from 0 to 1"),
        ({"backbone": "x", "status": "ok", "val_top1": "0.5"}, "has val_top1='0.5', not a number"),
        ({"backbone": "x", "status": "ok", "latency_ms_p50": "fast"}, "has latency_ms_p50='fast', not a number"),
        ({"backbone": "x", "status": "ok", "confusion_matrix": [[1, 2], [3]]}, "has a confusion_matrix that is not a square table"),
        ({"backbone": "x", "status": "ok", "test_predictions": ["1"]}, "has test_predictions that are not a list of class numbers"),
        ({"backbone": "x", "status": "ok", "per_class_accuracy": "x"}, "has a per_class_accuracy that is not a table"),
        ({"backbone": "x", "status": "failed"}, "failed without saying why (no 'error' text)"),
        ({"backbone": "tiny_a", "status": "ok", "top1": 0.5}, "repeats backbone tiny_a"),
    ],
)
def test_results_json_with_a_bad_row_is_one_line_for_report_and_resume(row, problem, tiny_dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    good = {"backbone": "tiny_a", "status": "ok", "top1": 1.0, "error": ""}
    (out / "results.json").write_text(json.dumps({"format": "zoo-bench-results/1", "backbones": [good, row]}))
    expected = (f"{out / 'results.json'}: backbone row 2 {problem}", "delete that row")
    one_line_error(runner.invoke(app, ["report", str(out)]), *expected)
    one_line_error(bench(tiny_dataset, out, "--resume"), *expected)
    assert not (Path(os.environ["ZOO_CACHE_DIR"]) / "scans").exists()  # refused before any work


@pytest.mark.parametrize(
    "labels, problem",
    [
        ([0, 1, "2"], "has dataset test_labels that are not a list of class numbers"),
        ([0, 1], "backbone row 1 has 3 test_predictions for the dataset's 2 test_labels"),
    ],
)
def test_results_json_whose_test_labels_do_not_fit_is_one_line(labels, problem, tmp_path):
    """Labels that do not pair with the predictions would leave every p-value out, unsaid."""
    row = {"backbone": "tiny_a", "status": "ok", "top1": 1.0, "test_predictions": [0, 1, 2]}
    results = {"format": "zoo-bench-results/1", "dataset": {"test_labels": labels}, "backbones": [row]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    one_line_error(runner.invoke(app, ["report", str(tmp_path)]), problem, "rerun the bench")


def test_results_json_that_is_a_folder_is_refused_before_any_work(tiny_dataset, tmp_path):
    (tmp_path / "out/results.json").mkdir(parents=True)
    one_line_error(bench(tiny_dataset, tmp_path / "out"), "results.json is a folder", "move it away")
    assert not (Path(os.environ["ZOO_CACHE_DIR"]) / "scans").exists()
    one_line_error(runner.invoke(app, ["report", str(tmp_path / "out")]), "results.json is a folder")


# 17.4, 17.12, 17.23 brackets in paths; images in class subfolders; specs without weights


def test_paths_with_brackets_nested_images_and_specs_without_weights(tiny_dataset, tmp_path, monkeypatch):
    import shutil

    write_plugins(tmp_path, monkeypatch, tiny=HOLD_PLUGIN.replace("params=224", "params=5"))  # 17.19: wrong count

    data = tmp_path / "food [copy]"
    shutil.copytree(tiny_dataset, data)
    make_images(data / "train/dark/[old]", {"more": 2}, size=32)
    out = tmp_path / "o/run[/x]"
    result = runner.invoke(app, ["bench", "tiny_a", "--data", str(data), "--out", str(out), *TINY, "--weights", "auto"])
    assert result.exit_code == 0, result.output
    assert f"2 classes, 14 train and 6 test images from {data} (2 of them in subfolders of class folders)" in result.stderr
    assert "food [copy]" in result.stdout  # the table's title
    assert f"Results written to {out}/" in result.stderr
    assert "RANDOM weights (their specs declare no pretrained weights): tiny_a." in result.stderr
    assert "no usable pretrained file" not in result.stderr
    assert "tiny_a: its spec declares params=5, the built model has 224; plugin tiny should set params=224" in result.stderr
    [row] = rows_of(out)
    assert row["status"] == "ok"


# 17.13-15 Ctrl-C while importing; SIGTERM as Ctrl-C; no results.json named that was never written


def test_ctrl_c_while_zoo_is_starting_is_quiet():
    """Ctrl-C while the command is imported (typer, rich, zoo.cli: most of the start-up). Before
    that, Python itself and the `zoo` package load, which is why the package loads no more than
    it must (not numpy, not zoo.bench); their time is measured and waited out."""
    start = time.monotonic()
    loaded = python_output("import sys, zoo; print(sorted({'numpy', 'zoo.bench'} & set(sys.modules)))")
    floor = time.monotonic() - start
    assert loaded == "[]"
    for delay in (1.5 * floor, 2 * floor, 3 * floor):
        process = subprocess.Popen([ZOO, "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=60)[1]
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
        assert process.returncode in (0, 130, -signal.SIGINT), stderr


def test_sigterm_is_ctrl_c_and_leaves_no_lock_folder_or_partial_file(hold_plugin, tiny_dataset, tmp_path):
    out, features = tmp_path / "out", Path(os.environ["ZOO_CACHE_DIR"]) / "features"
    process = start_held_bench(tmp_path / "gate", "tiny_b", "--data", str(tiny_dataset), "--out", str(out), *TINY)
    assert list(features.glob(".tiny_b-train-*.partial")) and (out / ".zoo-bench.lock").exists()
    process.send_signal(signal.SIGTERM)
    (tmp_path / "gate/released").touch()
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "Interrupted: no backbone had finished, so no results were written"
    assert "oneDNN" not in stderr and "absl::InitializeLog" not in stderr  # 17.18: TensorFlow's C++ log is silenced
    assert not out.exists()  # nothing finished: no half-made --out, no lock
    assert not list(features.glob("*tiny_b*"))


# 17.18 JPEGs that TensorFlow's decoder (libjpeg) would complain about are skipped, and counted,
# so that the bench never decodes them: libjpeg prints its complaints itself, past TensorFlow's
# log level. Damage its segments show is found undecoded; damage inside the compressed data
# (conftest.damaged_inside) by what libjpeg prints while the check decodes.


def test_damaged_jpegs_are_skipped_and_counted_and_the_decoder_says_nothing(hold_plugin, tmp_path):
    data = tmp_path / "data"
    make_images(data / "train", {"a": 3, "b": 3}, size=32)
    make_images(data / "test", {"a": 1, "b": 1}, size=32, seed=1)
    photo = (data / "train/a/a_0.jpg").read_bytes()
    tables = photo.index(b"\xff\xdb")
    (data / "train/a/cut.jpg").write_bytes(photo[: len(photo) // 2])  # TensorFlow: Premature end of JPEG data
    (data / "train/a/no_end.jpg").write_bytes(photo[:-2])
    (data / "train/b/stray.jpg").write_bytes(photo[:tables] + b"abc" + photo[tables:])  # 3 extraneous bytes
    for name, contents in damaged_inside(photo).items():
        (data / "train/b" / name).write_bytes(contents)
    done = subprocess.run([ZOO, "bench", "tiny_a", "--data", str(data), "--out", str(tmp_path / "out"), *TINY],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for complaint in ("JPEG data", "extraneous bytes", "jpeg_mem.cc", "E0000"):
        assert complaint not in done.stderr + done.stdout, done.stderr
    [summary] = [line for line in done.stderr.splitlines() if line.startswith("skipped ")]
    assert summary == (
        "skipped 5 files: 2 truncated or corrupt (train/a/cut.jpg, train/a/no_end.jpg); "
        "2 damaged JPEG (corrupt compressed data) (train/b/junk_at_end.jpg, train/b/lost_block.jpg); "
        "1 damaged JPEG (stray bytes between its segments) (train/b/stray.jpg)"
    )
    assert "2 classes, 6 train and 2 test images" in done.stderr


# 17.1 a batch size that cannot fit


@pytest.mark.parametrize("size", ["1000000000", "99999999999999999999"])
def test_a_batch_size_too_large_to_hold_is_one_line(size, tiny_dataset, tmp_path):
    one_line_error(bench(tiny_dataset, tmp_path / "out", "--batch-size", size), f"--batch-size {size}: it must be 1 to 4096")


# 17.16 a failed row keeps its traceback; --debug shows it


def test_a_failed_row_keeps_its_traceback_and_debug_shows_it(tiny_dataset, tmp_path, monkeypatch):
    write_plugins(tmp_path, monkeypatch, mistakes=BUILDER_MISTAKES)
    out = tmp_path / "out"
    result = runner.invoke(app, ["--debug", "bench", "raises", "--data", str(tiny_dataset), "--out", str(out), *TINY])
    assert result.exit_code == 1, result.output
    [row] = rows_of(out)
    assert row["error"] == "plugin mistakes's zoo_build_backbone failed for raises: ValueError: boom"
    assert row["traceback"].startswith("Traceback (most recent call last)") and "ValueError: boom" in row["traceback"]
    assert "Traceback (most recent call last)" in result.stderr and 'raise ValueError("boom")' in result.stderr


def test_a_columns_typo_and_a_results_file_path_are_one_line_before_any_work(tiny_dataset, tmp_path):
    one_line_error(bench(tiny_dataset, tmp_path / "out", "--columns", "top1,bogus"), "--columns bogus: no such column")
    assert not (Path(os.environ["ZOO_CACHE_DIR"]) / "scans").exists()  # refused before any work
    (tmp_path / "results.json").write_text("{}")
    one_line_error(runner.invoke(app, ["report", str(tmp_path / "results.json")]),
                   "results.json is a file, not a results folder; give the folder results.json is in")
