"""zoo's own builders for the sources every spec can name: `keras.applications` and `hub`.

They implement the same `zoo_build_backbone` hook as any plugin, registered first.
"""

from __future__ import annotations

import difflib

from zoo.errors import ZooError
from zoo.hookspecs import hookimpl


@hookimpl
def zoo_build_backbone(spec, weights):
    if spec.source == "hub":
        from zoo import hub

        return hub.build(spec, weights)
    if spec.source != "keras.applications":
        return None
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
        weights=weights,
        input_shape=(spec.input_size, spec.input_size, 3),
        pooling="avg",
    )
