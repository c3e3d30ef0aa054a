"""zoo.testing: the built-in plugins pass the contract check, and each check catches its mistake."""

import os
import re
import textwrap
from importlib import metadata

import pytest

from zoo import plugin_manager, testing
from zoo.spec import BackboneSpec


def builtin_specs() -> list[BackboneSpec]:
    """Every backbone of the plugins that the zoo distribution itself registers."""
    ours = {ep.name for ep in metadata.distribution("zoo").entry_points if ep.group == "zoo.backbones"}
    return [spec for spec in plugin_manager.catalog().backbones.values() if spec.plugin in ours]


@pytest.mark.parametrize("spec", builtin_specs(), ids=lambda spec: spec.name)
def test_built_in_backbones_meet_the_contract(spec):
    # hub ones are not built (network); the others are built at 64 px, saved and loaded back
    assert testing.check_backbone(spec.name, input_size=64) == spec


def test_built_in_plugins_pass_as_a_whole():
    assert [spec.name for spec in testing.check_plugin("mobilenet_v2", input_size=64)][0] == "mobilenet_v2"


PLUGIN = """
from zoo import BackboneSpec, hookimpl

def preprocess(images):
    return {preprocess}

SPEC = BackboneSpec(name="kit_net", family="test", source="custom", reference="in code",
                    input_size=32, preprocessing={preprocessing}, feature_dim={feature_dim}, params={params})

@hookimpl
def zoo_backbones():
    return [SPEC]

@hookimpl
def zoo_build_backbone(spec, weights):
    if spec.name != SPEC.name:
        return None
    import keras

    inputs = keras.Input((spec.input_size, spec.input_size, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    return keras.Model(inputs, {output})
"""


def load_plugin(tmp_path, monkeypatch, name="kit", **changes):
    """Write a custom plugin (fields as in PLUGIN, overridable) and put it on ZOO_PLUGINS."""
    fields = {"preprocess": "images / 255.0", "preprocessing": "preprocess", "feature_dim": 8,
              "output": "features", "params": 224, **changes}
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(PLUGIN.format(**fields)))
    paths = [p for p in os.environ.get("ZOO_PLUGINS", "").split(os.pathsep) if p]
    monkeypatch.setenv("ZOO_PLUGINS", os.pathsep.join([*paths, str(path)]))
    plugin_manager.plugin_manager.cache_clear()
    plugin_manager.catalog.cache_clear()


def test_a_correct_custom_plugin_passes(tmp_path, monkeypatch):
    # its callable preprocessing is saved by name and found again among the plugin's specs
    load_plugin(tmp_path, monkeypatch)
    [spec] = testing.check_plugin("kit")
    assert spec.name == "kit_net" and callable(spec.preprocessing)


def test_a_model_that_does_not_survive_saving_is_caught(tmp_path, monkeypatch):
    load_plugin(tmp_path, monkeypatch, output="keras.layers.Lambda(lambda x: x * 1.0)(features)")
    with pytest.raises(AssertionError, match="does not survive a .keras save and load"):
        testing.check_plugin("kit")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"feature_dim": 9}, "says (9,)"),
        ({"output": "features * float('nan')"}, "NaN or infinite features"),
        ({"preprocess": "images * float('inf')"}, "finite numbers"),
        ({"preprocess": "images.no_such_method()"},
         "preprocess, traced as the bench runs it, raised AttributeError: 'SymbolicTensor' object has no attribute"),
        ({"params": 5}, "kit_net: the spec declares params=5, the built model has 224; set params=224"),
        ({"preprocess": "__import__('numpy').asarray(images) / 255.0"},
         "traced as the bench runs it, raised NotImplementedError: Cannot convert a symbolic tf.Tensor"),
        ({"preprocess": "None"}, "preprocess returns NoneType, not a batch of images"),
        ({"preprocess": "__import__('keras').ops.cast(images, 'int32')"},
         "preprocess returns int32 values; return floating point ones"),
        ({"preprocess": "images[:, ::2, ::2, :] / 255.0"},
         "preprocess turns images of shape (2, 8, 8, 3) into shape (2, 4, 4, 3); it must keep the batch, height"),
    ],
    ids=["wrong_feature_dim", "nan_features", "infinite_preprocessing", "preprocessing_raises", "wrong_params",
         "numpy_preprocessing", "preprocessing_gives_none", "preprocessing_gives_int32", "preprocessing_resizes"],
)
def test_each_mistake_is_caught(changes, message, tmp_path, monkeypatch):
    load_plugin(tmp_path, monkeypatch, **changes)
    with pytest.raises(AssertionError, match=re.escape(message)):
        testing.check_plugin("kit")


def test_a_name_clash_is_caught(tmp_path, monkeypatch):
    load_plugin(tmp_path, monkeypatch, name="kit")
    load_plugin(tmp_path, monkeypatch, name="other")
    with pytest.raises(AssertionError, match="declared by kit and other"):
        testing.check_plugin("kit")


def test_an_invalid_spec_is_caught():
    spec = BackboneSpec(name="Bad Name", family="x", source="custom", reference="x",
                        input_size=32, preprocessing="unit", feature_dim=8, params=1)
    with pytest.raises(AssertionError, match="invalid name"):
        testing.check_spec(spec)


def test_a_broken_or_missing_plugin_is_named(tmp_path, monkeypatch):
    with pytest.raises(AssertionError, match="zoo has no plugin 'nowhere'"):
        testing.check_plugin("nowhere")
    (tmp_path / "crashy.py").write_text("raise RuntimeError('cannot start')\n")
    monkeypatch.setenv("ZOO_PLUGINS", str(tmp_path / "crashy.py"))
    plugin_manager.catalog.cache_clear()
    plugin_manager.plugin_manager.cache_clear()
    with pytest.raises(AssertionError, match="plugin crashy is broken: RuntimeError: cannot start"):
        testing.check_plugin("crashy")


def test_a_keras_model_that_rescales_itself_must_declare_no_preprocessing():
    spec = BackboneSpec(name="convnext_t", family="convnext", source="keras.applications", reference="ConvNeXtTiny",
                        input_size=32, preprocessing="torch", feature_dim=768, params=27820128)
    with pytest.raises(AssertionError, match="ConvNeXtTiny rescales its input itself.*declare preprocessing='none'"):
        testing.check_self_rescaling(spec)
    testing.check_self_rescaling(BackboneSpec(**{**vars(spec), "reference": "MobileNetV2", "preprocessing": "symmetric"}))


def test_a_hub_spec_on_disk_is_built_and_its_feature_dim_checked(tmp_path):
    import numpy as np
    import tensorflow as tf

    class Features(tf.Module):
        def __init__(self):
            self.kernel = tf.Variable(np.ones((3, 8), "float32"))

        @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
        def __call__(self, images):
            return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.kernel)

    tf.saved_model.save(Features(), str(tmp_path / "saved_model"))
    spec = BackboneSpec(name="local_hub", family="test", source="hub", reference=str(tmp_path / "saved_model"),
                        input_size=16, preprocessing="unit", feature_dim=4, params=24)
    with pytest.raises(AssertionError, match=re.escape("outputs features of shape (8,), but its spec says (4,)")):
        testing.check_backbone(spec)


def test_the_custom_plugin_that_docs_plugins_md_shows_passes(tmp_path, monkeypatch):
    """Its spec with pinned weights and its builder, as a plugin author copies them from the page."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs/plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page.split("## Models zoo cannot build")[1], re.S)
    spec = next(block for block in blocks if 'name="my_net"' in block)
    builder = next(block for block in blocks if "def zoo_build_backbone" in block)
    plugin = tmp_path / "from_the_docs.py"
    plugin.write_text("from zoo import BackboneSpec, Weights, hookimpl\n\n" + spec
                      + "\n@hookimpl\ndef zoo_backbones():\n    return [SPEC]\n\n" + builder)
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    [checked] = testing.check_plugin("from_the_docs")
    assert checked.weights.file == "my_net.weights.h5" and checked.weights.label == "imagenet"
