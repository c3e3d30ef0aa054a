"""ResNet50V2 from keras.applications."""

from zoo import hookimpl
from zoo.registry import catalog_specs


@hookimpl
def zoo_backbones():
    return catalog_specs("resnet_v2")
