"""`custom`: a model the declaring plugin builds itself, through its `zoo_build_backbone`."""

from __future__ import annotations

from zoo.sources.base import Source
from zoo.spec import BackboneSpec


class Custom(Source):
    name = "custom"

    def build(self, spec: BackboneSpec, weights_path: str | None):
        from zoo.plugin_manager import call_plugin_builder

        return call_plugin_builder(spec, weights_path)
