"""`keras.applications`: the constructor named by `reference`, built by zoo for any plugin."""

from __future__ import annotations

from zoo.errors import ZooError
from zoo.sources.base import Source
from zoo.spec import BackboneSpec


class KerasApplications(Source):
    name = "keras.applications"

    def build(self, spec: BackboneSpec, weights_path: str | None):
        from keras import applications

        constructor = getattr(applications, spec.reference, None)
        if constructor is None:
            raise ZooError(f"keras.applications has no {spec.reference!r} (backbone {spec.name})")
        return constructor(
            include_top=False,
            weights=weights_path,
            input_shape=(spec.input_size, spec.input_size, 3),
            pooling="avg",
        )
