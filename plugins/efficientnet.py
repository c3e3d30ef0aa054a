"""EfficientNet B0 and V2-B0 from keras.applications (they rescale their own input), and
their TF Hub ports as `efficientnet_b0:hub` and `efficientnet_v2_b0:hub`."""

from zoo import hookimpl
from zoo_plugins import declared


@hookimpl
def zoo_backbones():
    return declared(__file__)
