"""zoo.predict: which files `zoo predict` reads, and how they and its classes are named."""

from pathlib import Path

import pytest
from conftest import make_images
from typer.testing import CliRunner

from zoo.cli import app
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
