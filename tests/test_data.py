"""zoo.data: listing a dataset folder, what is skipped and why, and the image pipeline."""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_images, python_output
from PIL import Image

from zoo.data import image_batches, labeled_batches, load_dataset, skipped_summary
from zoo.errors import ZooError


@pytest.fixture
def messy(tmp_path) -> Path:
    """Two classes with good images, plus the junk a scraped or copied folder picks up."""
    make_images(tmp_path / "train", {"cat": 3, "dog": 2}, size=32)
    make_images(tmp_path / "test", {"cat": 1, "dog": 1}, size=32, seed=1)
    (tmp_path / "train/cat/.DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "train/cat/empty.jpg").write_bytes(b"")
    (tmp_path / "train/dog/readme.txt").write_text("scraped from the web")
    (tmp_path / "train/dog/404.jpg").write_text("<html>Not Found</html>")
    (tmp_path / "test/dog/Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "train/.ipynb_checkpoints").mkdir()  # hidden folders are not classes
    return tmp_path


def test_good_images_are_listed_with_their_labels_and_bad_ones_skipped_with_reasons(messy):
    dataset = load_dataset(messy)
    assert dataset.class_names == ("cat", "dog")
    assert [Path(f).name for f in dataset.train.files] == ["cat_0.jpg", "cat_1.jpg", "cat_2.jpg",
                                                          "dog_0.jpg", "dog_1.jpg"]
    assert dataset.train.labels == (0, 0, 0, 1, 1)
    assert dataset.test.labels == (0, 1)
    reasons = {Path(s.path).relative_to(messy).as_posix(): s.reason for s in dataset.skipped}
    assert reasons == {
        "train/cat/.DS_Store": "hidden file",
        "train/cat/empty.jpg": "empty file",
        "train/dog/404.jpg": "not an image",
        "train/dog/readme.txt": "not an image file type",
        "test/dog/Thumbs.db": "not an image file type",
    }


def test_the_skip_summary_counts_by_reason_with_examples(messy):
    summary = skipped_summary(load_dataset(messy))
    assert summary.startswith("skipped 5 files: 2 not an image file type (")
    assert "train/dog/readme.txt" in summary and "1 empty file (train/cat/empty.jpg)" in summary
    assert "\n" not in summary


def test_a_file_beside_the_class_folders_is_said_as_not_in_a_class_folder(messy):
    """It was left out unsaid: a photo meant for a class that never reached it. Hidden files
    there (the .DS_Store macOS leaves) stay unsaid."""
    Image.new("RGB", (32, 32)).save(messy / "train/photo.jpg")
    (messy / "test/notes.txt").write_text("where these came from")
    (messy / "train/.DS_Store").write_bytes(b"\0\0\0\1Bud1")
    dataset = load_dataset(messy)
    loose = [Path(s.path).relative_to(messy).as_posix() for s in dataset.skipped if s.reason == "not in a class folder"]
    assert loose == ["train/photo.jpg", "test/notes.txt"]
    assert "2 not in a class folder (train/photo.jpg, test/notes.txt)" in skipped_summary(dataset)
    assert len(dataset.train) == 5 and len(dataset.test) == 2


def test_a_skipped_name_with_a_line_break_or_tab_is_shown_escaped_on_the_one_line(messy):
    (messy / "train/cat/notes\nfrom the web.txt").write_text("")
    (messy / "train/dog/tab\there.jpg").write_bytes(b"")
    summary = skipped_summary(load_dataset(messy))
    assert "\n" not in summary and "\t" not in summary
    assert "'train/cat/notes\\nfrom the web.txt'" in summary and "'train/dog/tab\\there.jpg'" in summary


def test_a_class_whose_every_file_is_bad_is_an_error_that_counts_why(messy):
    for path in (messy / "test/dog").iterdir():
        path.write_bytes(b"")
    with pytest.raises(ZooError) as error:
        load_dataset(messy)
    message = str(error.value)
    assert "test/dog has no usable images (" in message
    assert "1 empty file" in message and "1 not an image file type" in message
    assert "remove this class from both train/ and test/" in message


def test_symlinked_class_folders_and_unusual_file_names_are_read(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    make_images(elsewhere, {"chat noir": 2}, size=32)
    root = tmp_path / "data"
    make_images(root / "test", {"chat noir": 1, "dog": 1}, size=32)
    make_images(root / "train", {"dog": 1}, size=32)
    (root / "train/chat noir").symlink_to(elsewhere / "chat noir", target_is_directory=True)
    Image.new("RGB", (32, 32), (255, 0, 0)).save(root / "test/chat noir/crème brûlée 猫 (1).jpg")
    dataset = load_dataset(root)
    assert dataset.class_names == ("chat noir", "dog")
    assert len(dataset.train) == 3 and len(dataset.test) == 3 and not dataset.skipped
    assert any("crème brûlée 猫 (1).jpg" in f for f in dataset.test.files)
    batches = list(image_batches(dataset.test.files + dataset.train.files, 16, 4))
    assert [len(b) for b in batches] == [4, 2]


def test_image_batches_read_a_file_whose_name_is_not_utf8(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1, as an old camera or zip may write it
    Image.new("RGB", (20, 20), (0, 0, 255)).save(tmp_path / name)
    [batch] = list(image_batches((str(tmp_path / name),), 8, 4))
    assert np.allclose(batch.numpy()[0, 4, 4], (0, 0, 255))


def test_a_file_name_that_is_not_utf8_is_shown_escaped_as_a_utf8_terminal_can_print_it():
    from zoo.data import shown_path, skipped_line

    name = os.fsdecode(b"photos/caf\xe9.png")
    assert shown_path(name) == "'photos/caf\\udce9.png'" and shown_path("photos/café.png") == "photos/café.png"
    skipped_line([(name, "truncated or corrupt")]).encode("utf-8")  # strict, as a terminal's UTF-8 is


def test_image_batches_keep_file_order_and_size(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    files = []
    for index, colour in enumerate(colours):
        files.append(str(tmp_path / f"{index}.png"))
        Image.new("RGB", (50, 20), colour).save(files[-1])
    [batch] = list(image_batches(tuple(files), 24, 8))
    assert batch.shape == (3, 24, 24, 3) and batch.dtype == "float32"
    assert np.allclose(batch.numpy()[:, 5, 5], colours)


def test_image_batches_resize_with_the_specs_interpolation(tmp_path):
    """A 2x2 checkerboard upscaled: nearest keeps pure black and white, bilinear blends them."""
    path = tmp_path / "board.png"
    Image.fromarray(np.array([[[0] * 3, [255] * 3], [[255] * 3, [0] * 3]], dtype=np.uint8)).save(path)
    [nearest] = list(image_batches((str(path),), 8, 1, "nearest"))
    [bilinear] = list(image_batches((str(path),), 8, 1, "bilinear"))
    assert set(np.unique(nearest.numpy())) == {0.0, 255.0}
    assert len(np.unique(bilinear.numpy())) > 2


def test_a_rerun_decodes_only_what_changed(messy, monkeypatch):
    from zoo import images

    load_dataset(messy)
    decoded = []
    monkeypatch.setattr(images, "decode", lambda contents: decoded.append(contents))
    load_dataset(messy)
    assert decoded == []
    make_images(messy / "train", {"cat": 4}, size=32, seed=5)  # rewrites three, adds one
    load_dataset(messy)
    assert len(decoded) == 4


def test_decoded_images_are_shared_until_no_later_backbone_needs_their_size(tmp_path):
    from zoo import data

    make_images(tmp_path / "train", {"cat": 3, "dog": 2}, size=40, seed=9)  # files no other test decoded
    files = tuple(str(path) for path in sorted((tmp_path / "train").rglob("*.jpg")))

    def decodes(size: int) -> int:
        before = data.decoded_count
        assert sum(len(batch) for batch in data.decoded_batches(files, size, 2)) == len(files)
        return data.decoded_count - before

    assert (decodes(8), decodes(12), decodes(8), decodes(12)) == (5, 5, 0, 0)
    data.keep_decoded({8})  # what the bench does between backbones
    assert (decodes(8), decodes(12)) == (0, 5)


def test_a_split_over_the_decode_budget_is_shared_through_a_file_on_disk(tmp_path, monkeypatch):
    from zoo import data

    make_images(tmp_path / "train", {"cat": 3, "dog": 2}, size=40, seed=13)  # files no other test decoded
    files = tuple(str(path) for path in sorted((tmp_path / "train").rglob("*.jpg")))
    monkeypatch.setenv("ZOO_DECODE_BUDGET_MB", "0.001")  # 1 KB: five 16x16 images do not fit
    before = data.decoded_count
    first = np.concatenate(list(data.decoded_batches(files, 16, 2)))
    assert data.decoded_count == before + len(files)
    [kept] = list((data.cache_dir("decoded")).glob("*.npy"))
    np.testing.assert_array_equal(np.load(kept), first)
    again = np.concatenate(list(data.decoded_batches(files, 16, 2)))  # read back, not decoded
    assert data.decoded_count == before + len(files)
    np.testing.assert_array_equal(again, first)


def test_decoded_images_a_killed_run_left_on_disk_are_never_read_and_go_with_the_next_bench(tmp_path, monkeypatch):
    """A file of decoded images is its process's own: one left by a killed run (its atexit never
    ran), garbled or not, is neither served nor kept."""
    import subprocess
    import sys

    from zoo import data, features

    make_images(tmp_path / "train", {"cat": 3, "dog": 2}, size=40, seed=17)  # files no other test decoded
    files = tuple(str(path) for path in sorted((tmp_path / "train").rglob("*.jpg")))
    monkeypatch.setenv("ZOO_DECODE_BUDGET_MB", "0.001")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = data.cache_dir("decoded") / f"{data._decoded_key(files, 16, 'bilinear')}.{gone.pid}.npy"
    np.save(left, np.zeros((len(files), 16, 16, 3), np.uint8))  # what a killed run left, or worse
    before = data.decoded_count
    decoded = np.concatenate(list(data.decoded_batches(files, 16, 2)))
    assert data.decoded_count == before + len(files) and decoded.any()  # decoded anew, not the zeros
    assert [item["running"] for item in features.partials() if item["path"] == str(left)] == [False]
    features.remove_stale_partials()  # what the next bench's first store does; `zoo cache clear` too
    assert not left.exists()


def test_the_decode_budget_must_be_a_number_of_megabytes(monkeypatch):
    from zoo import data

    for value in ("inf", "lots"):
        monkeypatch.setenv("ZOO_DECODE_BUDGET_MB", value)
        with pytest.raises(ZooError, match="ZOO_DECODE_BUDGET_MB must be a number of megabytes"):
            data.decode_budget()


def test_the_first_batch_decodes_only_its_own_files_until_the_split_is_decoded(tmp_path):
    from zoo import data

    make_images(tmp_path / "train", {"cat": 3, "dog": 2}, size=40, seed=11)  # files no other test decoded
    files = tuple(str(path) for path in sorted((tmp_path / "train").rglob("*.jpg")))
    before = data.decoded_count
    alone = data.first_batch(files, 16, 2)
    assert alone.shape == (2, 16, 16, 3) and alone.dtype == np.uint8
    assert data.decoded_count == before  # not the split's shared decode: two files only
    whole = list(data.decoded_batches(files, 16, 2))
    np.testing.assert_array_equal(alone, whole[0])
    np.testing.assert_array_equal(data.first_batch(files, 16, 2), whole[0])  # read from the shared decode
    assert data.decoded_count == before + len(files)


@pytest.mark.slow
def test_the_food_photos_all_pass_the_check_and_a_rerun_is_cached(food):
    import time

    dataset = load_dataset(food)
    assert (len(dataset.class_names), len(dataset.train), len(dataset.test)) == (10, 750, 500)
    assert dataset.skipped == ()  # train/.DS_Store lies beside the class folders, not in one
    start = time.perf_counter()
    assert load_dataset(food) == dataset
    assert time.perf_counter() - start < 1.0


def test_images_in_subfolders_of_a_class_are_included_as_keras_does_and_counted(tmp_path):
    make_images(tmp_path / "train", {"cat": 1, "dog": 1}, size=16)
    make_images(tmp_path / "test", {"cat": 1, "dog": 1}, size=16, seed=1)
    make_images(tmp_path / "train/cat/2023/summer", {"kitten": 2}, size=16)  # train/cat/2023/summer/kitten/*
    make_images(tmp_path / "train/cat/.ipynb_checkpoints", {"copy": 1}, size=16)  # hidden: left out
    dataset = load_dataset(tmp_path)
    assert dataset.class_names == ("cat", "dog")
    assert len(dataset.train) == 4 and dataset.train.labels == (0, 0, 0, 1)
    assert dataset.nested == 2 and not dataset.skipped


def test_a_linked_folder_inside_a_class_is_said_as_not_followed(tmp_path):
    """Its images went unsaid; a link to a folder above (a loop) must not be walked forever."""
    make_images(tmp_path / "train", {"cat": 1, "dog": 1}, size=16)
    make_images(tmp_path / "test", {"cat": 1, "dog": 1}, size=16, seed=1)
    make_images(tmp_path / "elsewhere", {"kittens": 2}, size=16)
    (tmp_path / "train/cat/kittens").symlink_to(tmp_path / "elsewhere/kittens", target_is_directory=True)
    (tmp_path / "train/dog/loop").symlink_to(tmp_path / "train", target_is_directory=True)
    dataset = load_dataset(tmp_path)
    assert len(dataset.train) == 2 and dataset.nested == 0
    assert {Path(s.path).relative_to(tmp_path).as_posix(): s.reason for s in dataset.skipped} == {
        "train/cat/kittens": "linked folder (not followed)",
        "train/dog/loop": "linked folder (not followed)",
    }


def test_class_folders_that_differ_only_in_spaces_at_their_ends_are_refused(tmp_path):
    """'cat' and 'cat ' were two classes that print alike in every table."""
    for split in ("train", "test"):
        make_images(tmp_path / split, {"cat": 1, "cat ": 1, "dog": 1}, size=16)
    with pytest.raises(ZooError) as error:
        load_dataset(tmp_path)
    assert str(error.value) == (
        f"--data {tmp_path}: class folders 'cat' and 'cat ' differ only in spaces at the start or end of their "
        "names; rename one of them in train/ and test/"
    )


@pytest.mark.parametrize("name", ["hot\ndog", "hot\tdog", "red\x1b[31m"])
def test_a_class_folder_with_a_line_break_tab_or_other_control_character_is_refused(tmp_path, name):
    """labels.txt holds a class a line, and a tab or an escape in a class broke every table's row
    (the predict table's class cells) or wrote terminal codes."""
    for split in ("train", "test"):
        make_images(tmp_path / split, {name: 1, "dog": 1}, size=16)
    with pytest.raises(ZooError) as error:
        load_dataset(tmp_path)
    assert str(error.value) == (
        f"--data {tmp_path}: class folder {name!r} has a line break, tab or other control character in its "
        "name; rename it in train/ and test/"
    )


def load_error_as_a_user(root: Path) -> str:
    """The ZooError of load_dataset(root), run as user nobody when we are root (root reads any folder)."""
    if os.geteuid() != 0:
        with pytest.raises(ZooError) as error:
            load_dataset(root)
        return str(error.value)
    code = (
        "import os, sys\n"
        "from zoo.data import load_dataset\n"
        "from zoo.errors import ZooError\n"
        "os.setgid(65534); os.setuid(65534)  # after the imports: Python's own files may be root's only\n"
        "try:\n    load_dataset(sys.argv[1])\nexcept ZooError as exc:\n    print(exc)\n"
    )
    return python_output(code, str(root), env={**os.environ, "ZOO_CACHE_DIR": str(root / "cache")})


@pytest.mark.parametrize("where", ["train/dog", "train/dog/sub", "test"])
def test_an_unreadable_folder_is_one_line_naming_it_and_the_fix(where):
    root = Path(tempfile.mkdtemp(prefix="zoo-unreadable-"))  # outside pytest's root-only folder
    try:
        root.chmod(0o755)
        make_images(root / "train", {"cat": 1, "dog": 1}, size=16)
        make_images(root / "test", {"cat": 1, "dog": 1}, size=16, seed=1)
        (root / where).mkdir(exist_ok=True)
        (root / where).chmod(0)
        message = load_error_as_a_user(root)
    finally:
        (root / where).chmod(0o755)
        shutil.rmtree(root)
    assert f"cannot read {root / where} (Permission denied)" in message and "chmod" in message


def test_the_chmod_an_unreadable_folder_is_told_runs_as_printed_whatever_its_name():
    """Python's repr quoted "it's $HOME" in double quotes, where the shell expands $HOME."""
    import shlex

    root = Path(tempfile.mkdtemp(prefix="zoo-unreadable-"))
    folder = root / "train" / "it's $HOME"
    try:
        root.chmod(0o755)
        for split in ("train", "test"):
            make_images(root / split, {"cat": 1, "it's $HOME": 1}, size=16)
        folder.chmod(0)
        message = load_error_as_a_user(root)
    finally:
        folder.chmod(0o755)
        shutil.rmtree(root)
    assert f"fix its permissions (chmod -R u+rX {shlex.quote(str(folder))}) or move it out" in message


def test_labeled_batches_pair_each_image_with_its_label_in_a_seeded_order(tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    batches = labeled_batches(dataset.train, 16, 5, seed=3)
    assert batches.cardinality().numpy() == 3  # 12 images in batches of 5
    images, labels = (np.concatenate(parts) for parts in zip(*[(x.numpy(), y.numpy()) for x, y in batches]))
    assert images.shape == (12, 16, 16, 3) and sorted(labels) == sorted(dataset.train.labels)
    # make_images paints class 1 ("light") 60 levels brighter than class 0 ("dark")
    brightness = images.mean(axis=(1, 2, 3))
    assert brightness[labels == 1].min() > brightness[labels == 0].max()
    again = np.concatenate([y.numpy() for _, y in labeled_batches(dataset.train, 16, 5, seed=3)])
    np.testing.assert_array_equal(labels, again)
