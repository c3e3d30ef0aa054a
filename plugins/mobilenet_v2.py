"""MobileNetV2 (1.0, 224) from keras.applications."""

from zoo import hookimpl
from zoo.registry import catalog_specs


@hookimpl
def zoo_backbones():
    return catalog_specs("mobilenet_v2")
