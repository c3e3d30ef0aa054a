"""Source kinds: where a backbone's model comes from, each one small object in a module here.

A spec's `source` names its kind (`zoo.spec.SOURCES`). The kind resolves the weights the
backbone is built with, builds it, and describes where its weights are (`zoo list`,
`zoo weights`): `keras.applications` and `hub` are built by zoo itself, `custom` by the
plugin that declared the spec. A new kind is one module here whose object joins KINDS.
"""

from __future__ import annotations

from zoo.sources.base import Source
from zoo.sources.custom import Custom
from zoo.sources.hub import Hub
from zoo.sources.keras_applications import KerasApplications
from zoo.spec import BackboneSpec

KINDS: dict[str, Source] = {kind.name: kind for kind in (KerasApplications(), Hub(), Custom())}


def source_of(spec: BackboneSpec) -> Source:
    """The source kind of `spec` (validated specs name one of KINDS)."""
    return KINDS[spec.source]
