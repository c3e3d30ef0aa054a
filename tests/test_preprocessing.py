import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.preprocessing import normalize


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize(
    "kind, module",
    [
        ("none", "efficientnet"),
        ("symmetric", "mobilenet_v2"),
        ("symmetric", "resnet_v2"),
        ("caffe", "resnet50"),
        ("torch", "densenet"),
    ],
)
def test_named_kinds_match_keras_preprocess_input(images, kind, module):
    import keras

    expected = getattr(keras.applications, module).preprocess_input(images.copy())
    np.testing.assert_allclose(normalize(images, kind), np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_unit_scales_to_zero_one(images):
    np.testing.assert_allclose(normalize(images, "unit"), images / 255.0, rtol=1e-6)


def test_the_layer_does_inside_a_model_what_the_function_does(images):
    import keras

    from zoo import get_backbone
    from zoo.preprocessing import preprocessing_layer

    spec = get_backbone("mobilenet_v2")
    layer_output = np.asarray(preprocessing_layer(spec)(keras.ops.convert_to_tensor(images)))
    np.testing.assert_allclose(layer_output, images / 127.5 - 1, rtol=1e-5, atol=1e-5)


def test_a_saved_preprocessing_callable_comes_back_as_its_own_backbones(tmp_path, monkeypatch):
    """Two lambdas of one module share their qualified name: the model saved for the second must
    load with the second, not with whichever spec comes first."""
    import keras
    from conftest import PLUGIN_HEAD, write_plugins

    from zoo import get_backbone
    from zoo.preprocessing import preprocessing_layer

    plugin = PLUGIN_HEAD + (
        "@hookimpl\ndef zoo_backbones():\n"
        "    return [_spec('lam_a', preprocessing=lambda x: x / 255.0),"
        " _spec('lam_b', preprocessing=lambda x: x * 0.0 + 7.0)]\n"
    )
    write_plugins(tmp_path, monkeypatch, lambdas=plugin)
    inputs = keras.Input((4, 4, 3))
    path = tmp_path / "b.keras"
    keras.Model(inputs, preprocessing_layer(get_backbone("lam_b"))(inputs)).save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(np.full((1, 4, 4, 3), 255.0, np.float32))), 7.0)


def test_a_saved_preprocessing_of_a_plugin_not_loaded_says_to_install_it_or_pass_plugin():
    from zoo.layers import Preprocess

    with pytest.raises(ZooError) as caught:
        Preprocess(function="zoo_local_plugin_gone.preprocess", backbone="gone_net")  # as a saved model loads
    assert str(caught.value) == (
        "this model's preprocessing zoo_local_plugin_gone.preprocess comes from a plugin that is not loaded now; "
        "install the plugin that provides it, or pass --plugin FILE with its file"
    )
