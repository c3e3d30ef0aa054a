"""ResNet50V2 from keras.applications, and its TF Hub port as `resnet50_v2:hub`."""

from zoo import hookimpl
from zoo_plugins import declared


@hookimpl
def zoo_backbones():
    return declared(__file__)
