"""EfficientNet B0 and V2-B0 from keras.applications; they rescale their own input."""

from zoo import hookimpl
from zoo.registry import catalog_specs


@hookimpl
def zoo_backbones():
    return catalog_specs("efficientnet")
