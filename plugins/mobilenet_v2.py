"""MobileNetV2 (1.0, 224) from keras.applications, and its TF Hub port as `mobilenet_v2:hub`."""

from zoo import hookimpl
from zoo.registry import catalog_specs, hub_specs


@hookimpl
def zoo_backbones():
    return catalog_specs("mobilenet_v2") + hub_specs("mobilenet_v2")
