"""Declaring specs from a TOML file a plugin ships, as the built-ins do, through a real plugin."""

import textwrap

import pytest

from zoo import BackboneSpec, Weights, plugin_manager, specs_from_mapping, specs_from_toml
from zoo.errors import ZooError

SHIPPED = """
[tiny_net]
family = "tiny"
source = "custom"
reference = "MobileNetV2 in code"
input_size = 32
preprocessing = "symmetric"
feature_dim = 1280
params = 2257984
hub = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/4"
build_args = { alpha = 1.0 }

[tiny_net.weights]
file = "tiny.h5"
url = "https://example.org/tiny.h5"
md5 = "00112233445566778899aabbccddeeff"
"""


def test_a_toml_file_declares_specs_with_weights_and_a_hub_variant(tmp_path):
    path = tmp_path / "backbones.toml"
    path.write_text(SHIPPED)
    spec, variant = specs_from_toml(path)
    assert spec == BackboneSpec(
        name="tiny_net", family="tiny", source="custom", reference="MobileNetV2 in code",
        input_size=32, preprocessing="symmetric", feature_dim=1280, params=2257984,
        weights=Weights("tiny.h5", url="https://example.org/tiny.h5", md5="00112233445566778899aabbccddeeff"),
        build_args={"alpha": 1.0},
    )
    # the custom builder's settings stay with it: the hub variant validates without them
    assert (variant.name, variant.source, variant.preprocessing, variant.weights, variant.build_args) == (
        "tiny_net:hub", "hub", "unit", None, {})
    variant.validate()
    assert variant.reference.startswith("https://tfhub.dev/")


def test_a_table_of_a_shared_file_and_overrides_for_what_toml_cannot_hold(tmp_path):
    path = tmp_path / "shared.toml"
    path.write_text(SHIPPED.replace("[tiny_net", "[mine.tiny_net").replace("hub = ", "# hub = "))

    def halve(images):
        return images / 2

    [spec] = specs_from_toml(path, table="mine", preprocessing=halve)
    assert spec.preprocessing is halve
    with pytest.raises(ZooError, match=r"has no table \[other\]"):
        specs_from_toml(path, table="other")


def test_from_python_the_same_layout():
    [spec] = specs_from_mapping({"py_net": {
        "family": "py", "source": "custom", "reference": "code", "input_size": 32,
        "preprocessing": "unit", "feature_dim": 8, "params": 1, "weights": {"file": "w.h5", "package": "p"},
    }})
    assert spec.name == "py_net" and spec.weights == Weights("w.h5", package="p")


@pytest.mark.parametrize(
    "change, words",
    [
        (("params = 2257984", "params = 2257984\nparms = 3"), "backbone 'tiny_net' has unknown field parms"),
        (("input_size = 32\n", ""), "missing 1 required positional argument: 'input_size'"),
        (('md5 = "', 'sha1 = "'), "weights have unknown field sha1"),
        (("[tiny_net]", "[tiny_net"), "is not valid TOML"),
    ],
)
def test_mistakes_in_the_file_are_one_line_naming_file_and_backbone(tmp_path, change, words):
    path = tmp_path / "backbones.toml"
    path.write_text(SHIPPED.replace(*change))
    with pytest.raises(ZooError, match=str(path)) as error:
        specs_from_toml(path)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_plugin_that_ships_its_toml_is_loaded_like_the_built_ins(tmp_path, monkeypatch):
    folder = tmp_path / "toml_plugin"
    folder.mkdir()
    (folder / "backbones.toml").write_text(SHIPPED)
    (folder / "__init__.py").write_text(textwrap.dedent(
        """
        from pathlib import Path
        from zoo import hookimpl, specs_from_toml

        @hookimpl
        def zoo_backbones():
            return specs_from_toml(Path(__file__).with_name("backbones.toml"))
        """
    ))
    monkeypatch.setenv("ZOO_PLUGINS", str(folder))
    catalog = plugin_manager.catalog()
    assert catalog.get("tiny_net").plugin == "toml_plugin"
    assert catalog.get("tiny_net:hub").plugin == "toml_plugin"
