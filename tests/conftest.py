"""Shared fixtures and helpers: a private zoo cache, a tiny generated dataset, the shared food
photos, test plugins written to files, and Python run in a process of its own."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_FOOD = Path(__file__).resolve().parents[1].parent / "shared/data/10_food_classes_10_percent"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty zoo cache, no user settings, and a fresh plugin catalog."""
    from zoo import config, plugin_manager

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("zoo-cache")))
    # The user's own config file and settings never reach the tests.
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path_factory.mktemp("zoo-config") / "config.toml"))
    for variable in ("ZOO_PLUGINS", "ZOO_WEIGHTS_DIR", *(s.env for s in config.SETTINGS.values())):
        monkeypatch.delenv(variable, raising=False)
    plugin_manager.plugin_manager.cache_clear()
    plugin_manager.catalog.cache_clear()
    yield
    plugin_manager._extra_paths.clear()
    plugin_manager.plugin_manager.cache_clear()
    plugin_manager.catalog.cache_clear()


def make_images(root: Path, classes: dict[str, int], size: int = 48, seed: int = 0) -> None:
    """Write `count` small JPEGs per class under root/<class>/, each class its own colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(count):
            pixels = rng.integers(0, 60, (size, size, 3)) + 60 * index
            Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(folder / f"{name}_{n}.jpg")


def damaged_inside(photo: bytes) -> dict[str, bytes]:
    """A JPEG's contents damaged inside its compressed data, by name, two ways its segments do not
    show: each decodes, garbled, while libjpeg prints a complaint."""
    scan = photo.index(b"\xff\xda")
    data = scan + 2 + int.from_bytes(photo[scan + 2 : scan + 4], "big")  # where the compressed data starts
    middle, lost = (data + len(photo)) // 2, (len(photo) - data) // 4
    return {
        # a block of it lost (a damaged copy): Corrupt JPEG data: premature end of data segment
        "lost_block.jpg": photo[:middle] + photo[middle + lost :],
        # junk after it: Corrupt JPEG data: 64 extraneous bytes before marker 0xd9
        "junk_at_end.jpg": photo[:-2] + b"\0" * 64 + photo[-2:],
    }


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Two classes, 6 train and 3 test images each: enough for a real bench in seconds."""
    root = tmp_path_factory.mktemp("tiny")
    make_images(root / "train", {"dark": 6, "light": 6})
    make_images(root / "test", {"dark": 3, "light": 3}, seed=1)
    return root


@pytest.fixture
def food() -> Path:
    """The shared reference dataset, or a skip that says why it is missing."""
    if not SHARED_FOOD.is_dir():
        pytest.skip(f"reference dataset not found at {SHARED_FOOD} (../shared beside the repo)")
    return SHARED_FOOD


#: The start of a test plugin's source: `_spec(name, **fields)`, a small custom-source spec, and
#: `_tiny_cnn()`, a real CNN base for 32 px images (840 parameters, 8 features) that benches in seconds.
PLUGIN_HEAD = textwrap.dedent(
    """
    from zoo import BackboneSpec, hookimpl

    def _spec(name, **fields):
        base = dict(family="test", source="custom", reference="tiny_cnn", input_size=32,
                    preprocessing="unit", feature_dim=8, params=840)
        return BackboneSpec(name=name, **{**base, **fields})

    def _tiny_cnn():
        import keras
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="tiny_cnn_base")
    """
)

#: Two tiny CNNs, and broken_net, which fails to build.
TINY_PLUGIN = PLUGIN_HEAD + textwrap.dedent(
    """
    @hookimpl
    def zoo_backbones():
        return [_spec("tiny_cnn"), _spec("tiny_cnn_b"),
                _spec("broken_net", source="keras.applications", reference="NoSuchNet")]

    @hookimpl
    def zoo_build_backbone(spec, weights):
        return _tiny_cnn() if spec.source == "custom" else None
    """
)


def write_plugins(folder: Path, monkeypatch, **plugins: str) -> list[Path]:
    """Write each plugin's source to FOLDER/NAME.py and load them all through ZOO_PLUGINS."""
    paths = []
    for name, text in plugins.items():
        paths.append(folder / f"{name}.py")
        paths[-1].write_text(text)
    monkeypatch.setenv("ZOO_PLUGINS", os.pathsep.join(map(str, paths)))
    return paths


@pytest.fixture
def tiny_plugin(tmp_path, monkeypatch):
    write_plugins(tmp_path, monkeypatch, tiny_plugin=TINY_PLUGIN)


def python_output(code: str, *arguments: str, timeout: float = 60, env: dict | None = None) -> str:
    """What `python -c code arguments...` prints, run in a process of its own (for limits set
    with `resource`, a user switched to, a module kept out); it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
