"""DenseNet121 as a zoo backbone: the whole of a keras.applications plugin.

zoo's own `keras.applications` builder makes the model from `reference`, so the plugin only
describes it. DenseNet was trained on "torch"-style input: x/255, minus the ImageNet mean, over
its std. The weights are the file Keras itself downloads, pinned by the md5 Keras pins.
"""

from zoo import BackboneSpec, Weights, hookimpl

DENSENET121 = BackboneSpec(
    name="densenet121",
    family="densenet",
    source="keras.applications",
    reference="DenseNet121",
    input_size=224,
    preprocessing="torch",
    feature_dim=1024,
    params=7037504,
    weights=Weights(
        file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        url="https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        md5="30ee3e1110167f948a6b9946edeeb738",
        dataset="imagenet",  # what they were trained on: bench rows record it
    ),
    imagenet_top1=0.750,
    description="Densely connected convolutional network (Huang et al., 2017).",
)


@hookimpl
def zoo_backbones():
    return [DENSENET121]
