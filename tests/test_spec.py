import dataclasses

import pytest

from zoo.errors import ZooError
from zoo.spec import PREPROCESSING, BackboneSpec, Weights, file_stem


def make_spec(**changes) -> BackboneSpec:
    fields = dict(
        name="tiny_net", family="tiny", source="keras.applications", reference="MobileNetV2",
        input_size=32, preprocessing="unit", feature_dim=8, params=100, plugin="my_plugin",
    )
    return BackboneSpec(**{**fields, **changes})


def test_a_good_spec_validates_and_is_plain_data():
    spec = make_spec(weights=Weights("w.h5", url="https://example.org/w.h5", md5="ab" * 16))
    spec.validate()
    data = spec.to_dict()
    assert data["weights"]["md5"] == "ab" * 16
    assert spec.weights.pinned_hash == ("md5", "ab" * 16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"preprocessing": "imagenet"}, "unknown preprocessing 'imagenet'"),
        ({"input_size": 0}, "input_size=0"),
        ({"feature_dim": -3}, "feature_dim=-3"),
        ({"source": "torch.hub"}, "unknown source 'torch.hub'"),
        ({"name": "Bad Name"}, "invalid name"),
        ({"name": "net\n"}, "backbone 'net\\n' has an invalid name"),  # a last line break, too
        ({"interpolation": "cubic"}, "unknown interpolation 'cubic'"),
        ({"weights": Weights("w.h5")}, "neither a url nor a package"),
        ({"weights": Weights("w.h5", url="https://e.org/w.h5", dataset="Random ")}, "weights dataset='Random '"),
        ({"imagenet_top1": 77.1}, "imagenet_top1=77.1; give a fraction from 0 to 1"),
        ({"imagenet_top1": "high"}, "imagenet_top1='high'"),
        ({"build_args": [1.0, 1.1]}, "build_args=[1.0, 1.1]; give a table of settings by name"),
        ({"build_args": {"alpha": 0.5}}, "has build_args, but zoo builds keras.applications backbones itself"),
        ({"source": "hub", "build_args": {"alpha": 0.5}}, "has build_args, but zoo builds hub backbones itself"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_plugin(changes, words):
    with pytest.raises(ZooError, match="plugin my_plugin") as error:
        make_spec(**changes).validate()
    assert words in str(error.value)


def test_a_callable_preprocessing_is_allowed_and_named():
    def halve(images):
        return images / 2

    spec = make_spec(preprocessing=halve)
    spec.validate()
    assert spec.preprocessing_name.endswith("halve")
    assert spec.to_dict()["preprocessing"] == spec.preprocessing_name


def test_output_ranges_of_the_named_kinds():
    assert PREPROCESSING["none"].output_range() == (0, 255)
    assert PREPROCESSING["unit"].output_range() == (0, 1)
    assert PREPROCESSING["symmetric"].output_range() == (-1, 1)
    low, high = PREPROCESSING["torch"].output_range()
    assert -2.2 < low < -2.0 and 2.6 < high < 2.7


@pytest.mark.parametrize("name", ["../../x", "/home", "..", ".", "a\\b", "", "a\0b"])
def test_a_name_that_is_a_path_names_no_file(name):
    """Every file and folder of a row (written, and removed by a later bench) is named by file_stem."""
    with pytest.raises(ZooError, match=r"^backbone .* is a path, not a name: its files would lie outside"):
        file_stem(name)
    assert file_stem("efficientnet_b0:hub") == "efficientnet_b0@hub"
