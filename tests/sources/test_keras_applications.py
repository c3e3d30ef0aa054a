"""`keras.applications`: zoo builds the constructor `reference` names, for any plugin."""

import dataclasses

import pytest

from zoo import get_backbone
from zoo.errors import ZooError
from zoo.sources import source_of


def test_builds_the_named_constructor_pooled_and_without_top():
    spec = dataclasses.replace(get_backbone("mobilenet_v2"), input_size=32)
    model = source_of(spec).build(spec, None)
    assert model.output_shape == (None, spec.feature_dim)
    assert model.input_shape == (None, 32, 32, 3)


def test_an_unknown_constructor_is_named():
    spec = dataclasses.replace(get_backbone("mobilenet_v2"), reference="NoSuchNet")
    with pytest.raises(ZooError, match="keras.applications has no 'NoSuchNet' \\(backbone mobilenet_v2\\)"):
        source_of(spec).build(spec, None)
