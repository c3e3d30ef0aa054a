"""What every source kind does, and the default for weights: a pinned file (zoo.weights)."""

from __future__ import annotations

from typing import Any

from zoo import weights
from zoo.progress import Progress, no_progress
from zoo.spec import BackboneSpec
from zoo.weights import ResolvedWeights


class Source:
    """One source kind. Subclasses name it and build; the weights are the spec's pinned
    `Weights` file (or a file given with --weights PATH) unless a kind says otherwise."""

    name: str = ""
    #: Whether a spec of this kind can be built with random weights (a TF Hub SavedModel cannot).
    random_init: bool = True

    def has_pretrained(self, spec: BackboneSpec) -> bool:
        """Whether `spec` has pretrained weights to fetch (`zoo weights fetch`)."""
        return spec.weights is not None

    def build(self, spec: BackboneSpec, weights_path: str | None) -> Any:
        """The Keras model for `spec` (preprocessed images → pooled features)."""
        raise NotImplementedError

    def resolve_weights(self, spec: BackboneSpec, mode: str, progress: Progress = no_progress) -> ResolvedWeights:
        return weights.resolve_file(spec, mode, progress)

    def weights_status(self, spec: BackboneSpec) -> str:
        return weights.file_status(spec)

    def describe_weights(self, spec: BackboneSpec) -> dict[str, str]:
        return weights.describe_file(spec)

    def verify_local(self, spec: BackboneSpec) -> tuple[bool | None, str]:
        return weights.verify_file(spec)
