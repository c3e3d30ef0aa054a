"""zoo: which pretrained backbone is best for my data, and at what cost?

The Python API in brief: `list_backbones()`, `get_backbone(name)`, `create_model(name, ...)`.
Importing zoo does not import TensorFlow; building a model does.
"""

from zoo.errors import ZooError
from zoo.hookspecs import hookimpl
from zoo.spec import PREPROCESSING, BackboneSpec, Normalization, Weights

__all__ = [
    "PREPROCESSING",
    "BackboneSpec",
    "Normalization",
    "Weights",
    "ZooError",
    "create_model",
    "get_backbone",
    "hookimpl",
    "list_backbones",
]


def list_backbones() -> list[str]:
    """Names of every backbone the installed plugins provide, sorted."""
    from zoo.plugin_manager import catalog

    return sorted(catalog().backbones)


def get_backbone(name: str) -> BackboneSpec:
    """The spec of one backbone; a ZooError suggests close names when there is none."""
    from zoo.plugin_manager import catalog

    return catalog().get(name)


def create_model(name: str, num_classes: int, weights: str = "auto"):
    """A Keras classifier: backbone `name` frozen, a new `num_classes` softmax head on top."""
    from zoo.models import create_model as create

    return create(name, num_classes, weights)
