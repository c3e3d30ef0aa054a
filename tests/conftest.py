"""Shared fixtures: a private zoo cache, a tiny generated dataset, the shared food photos."""

import os
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
