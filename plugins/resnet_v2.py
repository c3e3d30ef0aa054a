"""ResNet50V2 from keras.applications, and its TF Hub port as `resnet50_v2:hub`."""

from zoo import hookimpl
from zoo.registry import catalog_specs, hub_specs


@hookimpl
def zoo_backbones():
    return catalog_specs("resnet_v2") + hub_specs("resnet_v2")
