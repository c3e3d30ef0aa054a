"""zoo.predict: which files `zoo predict` reads, and how they and its classes are named."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_images
from typer.testing import CliRunner

from zoo.cli import app
from zoo.errors import ZooError
from zoo.predict import load, predict

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A real two-class Keras classifier of 16 px images, untrained, with no zoo.json beside it."""
    import keras

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(path)
    return path


def test_a_linked_folder_inside_a_folder_given_is_said_not_followed(model, tmp_path):
    make_images(tmp_path / "photos", {"mine": 1}, size=16)
    make_images(tmp_path / "elsewhere", {"theirs": 2}, size=16)
    (tmp_path / "photos/mine/theirs").symlink_to(tmp_path / "elsewhere/theirs", target_is_directory=True)
    (tmp_path / "photos/mine/loop").symlink_to(tmp_path / "photos", target_is_directory=True)
    predictions, skipped = predict(load(model), [tmp_path / "photos"])
    assert [Path(p.file).name for p in predictions] == ["mine_0.jpg"]
    assert skipped == {
        str(tmp_path / "photos/mine/loop"): "linked folder (not followed)",
        str(tmp_path / "photos/mine/theirs"): "linked folder (not followed)",
    }


def test_a_name_with_a_line_break_is_shown_escaped_in_the_table_and_the_skipped_note(model, tmp_path, monkeypatch):
    """It broke the table's row and the one-line note in two; --json and --csv keep the name as it is."""
    make_images(tmp_path / "photos", {"cat": 1}, size=16)
    (tmp_path / "photos/cat/cat_0.jpg").rename(tmp_path / "photos/cat/a\nb.jpg")
    (tmp_path / "photos/cat/c\td.jpg").write_text("not a picture")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["predict", str(model), "photos"])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if "photos/" in line]
    assert "'photos/cat/a\\nb.jpg'" in row
    [note] = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert note == "skipped 1 file: 1 not an image ('photos/cat/c\\td.jpg')"
    result = runner.invoke(app, ["predict", str(model), "photos", "--json"])
    assert [p["file"] for p in json.loads(result.stdout)["predictions"]] == ["photos/cat/a\nb.jpg"]


def test_a_file_named_twice_or_with_its_folder_is_predicted_once_where_it_first_comes(model, tmp_path):
    make_images(tmp_path / "photos", {"cat": 3}, size=16)
    folder = tmp_path / "photos/cat"
    (tmp_path / "link.jpg").symlink_to(folder / "cat_0.jpg")
    given = [folder / "cat_2.jpg", folder, folder / "cat_2.jpg", f"{folder}/../cat/cat_1.jpg", tmp_path / "link.jpg"]
    predictions, skipped = predict(load(model), given)
    assert [p.file for p in predictions] == [str(folder / name) for name in ("cat_2.jpg", "cat_0.jpg", "cat_1.jpg")]
    assert skipped == {}


def test_a_line_of_spaces_in_labels_txt_keeps_its_place(model, tmp_path):
    """It was dropped, so every later class took the name of the one before it."""
    shutil.copy(model, tmp_path / "tiny.keras")
    (tmp_path / "labels.txt").write_text("  \ndog\n\n\n")  # as an export writes a class folder named '  '
    assert load(tmp_path / "tiny.keras").class_names == ["  ", "dog"]


def test_a_labels_txt_saved_with_a_byte_order_mark_names_its_first_class_without_it(model, tmp_path):
    """Notepad writes UTF-8 with a BOM: the first class was '\ufeffcat', which prints as 'cat'."""
    shutil.copy(model, tmp_path / "tiny.keras")
    (tmp_path / "labels.txt").write_text("cat\r\ndog\r\n", encoding="utf-8-sig")
    assert load(tmp_path / "tiny.keras").class_names == ["cat", "dog"]


def test_a_labels_txt_that_is_not_utf8_is_refused_in_one_line(model, tmp_path):
    """It was ignored unsaid, the classes shown by index beside a labels.txt that names them."""
    shutil.copy(model, tmp_path / "tiny.keras")
    (tmp_path / "labels.txt").write_text("café\ndog\n", encoding="cp1252")
    with pytest.raises(ZooError) as error:
        load(tmp_path / "tiny.keras")
    assert str(error.value) == (
        f"{tmp_path / 'labels.txt'} is not UTF-8 text; save it as UTF-8, one class a line, "
        "or remove it to show the classes by index"
    )


def test_a_results_folder_given_as_the_model_suggests_an_export_that_runs_as_printed(tmp_path):
    out = tmp_path / "my results"
    out.mkdir()
    (out / "results.json").write_text("{}")
    with pytest.raises(ZooError) as error:
        load(out)
    assert str(error.value).endswith(f"or export the best first: zoo export '{out}'")


def test_a_missing_file_with_a_line_break_in_its_name_is_named_on_one_line(tmp_path):
    """As the skipped note and the table show such a name: escaped, the error one line."""
    from zoo.predict import image_files

    missing = str(tmp_path / "a\nb.jpg")
    with pytest.raises(ZooError) as error:
        image_files([missing])
    assert str(error.value) == f"{missing!r}: no such file or folder"
