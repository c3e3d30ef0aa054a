"""`custom` backbones are built by the plugin that declared them, and by no other."""

import os
import textwrap

import pytest

from zoo import plugin_manager
from zoo.errors import ZooError
from zoo.sources import KINDS
from zoo.spec import SOURCES


def builder_plugin(name: str, backbone: str, builds: str) -> str:
    """A plugin declaring `backbone` (custom) whose builder runs `builds` for any spec."""
    return textwrap.dedent(
        f"""
        from zoo import BackboneSpec, hookimpl

        @hookimpl
        def zoo_backbones():
            return [BackboneSpec(name={backbone!r}, family="test", source="custom",
                                 reference="code", input_size=32, preprocessing="unit",
                                 feature_dim=4, params=1)]

        @hookimpl
        def zoo_build_backbone(spec, weights):
            import keras
            {builds}
        """
    )


MODEL = (
    "inputs = keras.Input((32, 32, 3)); "
    "return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)), "
    "name=__name__ + '_model')"
)


def test_every_source_a_spec_may_name_is_one_kind():
    assert set(KINDS) == set(SOURCES)


def test_only_the_declaring_plugins_builder_is_called(tmp_path, monkeypatch):
    # Both builders answer every spec; before, the one registered last won for both.
    first = tmp_path / "first.py"
    first.write_text(builder_plugin("first", "first_net", MODEL))
    second = tmp_path / "second.py"
    second.write_text(builder_plugin("second", "second_net", MODEL))
    monkeypatch.setenv("ZOO_PLUGINS", os.pathsep.join([str(first), str(second)]))
    catalog = plugin_manager.catalog()
    assert plugin_manager.build_backbone(catalog.get("first_net"), None).name.endswith("first_model")
    assert plugin_manager.build_backbone(catalog.get("second_net"), None).name.endswith("second_model")


def test_a_builder_returning_none_for_its_own_spec_names_the_plugin(tmp_path, monkeypatch):
    path = tmp_path / "shy.py"
    path.write_text(builder_plugin("shy", "shy_net", "return None"))
    monkeypatch.setenv("ZOO_PLUGINS", str(path))
    spec = plugin_manager.catalog().get("shy_net")
    with pytest.raises(ZooError, match="plugin shy declares backbone 'shy_net' but its zoo_build_backbone returned None"):
        plugin_manager.build_backbone(spec, None)
