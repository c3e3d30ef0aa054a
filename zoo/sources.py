"""zoo's own builders for the sources every spec can name: `keras.applications` and `hub`.

They implement the same `zoo_build_backbone` hook as any plugin, registered first.
"""

from __future__ import annotations

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
        raise ZooError(f"keras.applications has no {spec.reference!r} (backbone {spec.name})")
    return constructor(
        include_top=False,
        weights=weights,
        input_shape=(spec.input_size, spec.input_size, 3),
        pooling="avg",
    )
