"""`keras.applications`: the constructor named by `reference`, built by zoo for any plugin."""

from __future__ import annotations

import difflib

from zoo.errors import ZooError
from zoo.sources.base import Source
from zoo.spec import BackboneSpec


class KerasApplications(Source):
    name = "keras.applications"

    def build(self, spec: BackboneSpec, weights_path: str | None):
        from keras import applications

        constructor = getattr(applications, spec.reference, None)
        if constructor is None:
            close = difflib.get_close_matches(spec.reference, [n for n in dir(applications) if n[:1].isupper()], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ZooError(
                f"keras.applications has no {spec.reference!r} (backbone {spec.name}); {hint}fix the "
                f"reference in plugin {spec.plugin}'s spec"
            )
        return constructor(
            include_top=False,
            weights=weights_path,
            input_shape=(spec.input_size, spec.input_size, 3),
            pooling="avg",
        )
