"""keras.applications ResNet50V2/101V2/152V2 and ResNet50/101/152 -> canonical state.

keras.applications names a residual unit's layers conv{S}_block{B}_{P}, S = 2..5 the
stage and B = 1.. the unit; our torch module paths are layer{S-1}.{B-1}.<part>:

    keras                       v2 (resnet*_v2)            v1 (resnet*_keras)
    conv1_conv                  conv1                      conv1
    conv1_bn                    -                          bn1
    convS_blockB_preact_bn      layerS-1.B-1.preact        -
    convS_blockB_0_conv         layerS-1.B-1.downsample    layerS-1.B-1.downsample.0
    convS_blockB_0_bn           -                          layerS-1.B-1.downsample.1
    convS_blockB_{1,2,3}_conv   layerS-1.B-1.conv{1,2,3}   layerS-1.B-1.conv{1,2,3}
    convS_blockB_{1,2,3}_bn     layerS-1.B-1.bn{1,2}       layerS-1.B-1.bn{1,2,3}
    post_bn                     post_bn                    -
    predictions                 fc                         fc

The state reproduces the model's logits: the `predictions` layer's activation (softmax
by default) is not part of our models, which output logits. A model built without its
top gives a state without `fc.*`: load it into a model built with include_top=False
(or strict=False); a model with `classes` other than 1000 needs num_classes to match.
"""
import re

import numpy as np

from .. import layouts

_PARAM_NAMES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                "moving_mean": "running_mean", "moving_variance": "running_var"}

_UNIT_LAYER = re.compile(r"conv(?P<stage>[2-5])_block(?P<unit>\d+)_(?P<part>preact_bn|[0-3]_conv|[0-3]_bn)")
_V2_PARTS = {"preact_bn": "preact", "0_conv": "downsample",
             "1_conv": "conv1", "1_bn": "bn1", "2_conv": "conv2", "2_bn": "bn2", "3_conv": "conv3"}
_V1_PARTS = {"0_conv": "downsample.0", "0_bn": "downsample.1",
             "1_conv": "conv1", "1_bn": "bn1", "2_conv": "conv2", "2_bn": "bn2", "3_conv": "conv3", "3_bn": "bn3"}
_V2_TOP = {"conv1_conv": "conv1", "post_bn": "post_bn", "predictions": "fc"}
_V1_TOP = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}


def torch_path(layer_name: str, preact: bool) -> str:
    """The torch module path of a keras.applications ResNet layer that holds weights."""
    top, parts = (_V2_TOP, _V2_PARTS) if preact else (_V1_TOP, _V1_PARTS)
    if layer_name in top:
        return top[layer_name]
    match = _UNIT_LAYER.fullmatch(layer_name)
    if match and match["part"] in parts:
        return f"layer{int(match['stage']) - 1}.{int(match['unit']) - 1}.{parts[match['part']]}"
    version = "v2" if preact else "v1"
    raise ValueError(f"keras.applications ResNet {version}: no canonical name for layer {layer_name!r}")


def _layout(var, var_name):
    if var_name != "kernel":
        return "identity"
    return "conv" if len(var.shape) == 4 else "linear"


def _convert(model, preact: bool) -> dict[str, np.ndarray]:
    from keras import ops

    state = {}
    for layer in model.layers:
        path = torch_path(layer.name, preact) if layer.weights else None
        for var in layer.weights:
            value = ops.convert_to_numpy(var).astype(np.float32)
            state[f"{path}.{_PARAM_NAMES[var.name]}"] = layouts.to_canonical(_layout(var, var.name), value)
    return state


def convert_v2(model) -> dict[str, np.ndarray]:
    """Canonical state of a keras.applications ResNet{50,101,152}V2 (pre-activation)."""
    return _convert(model, preact=True)


def convert_v1(model) -> dict[str, np.ndarray]:
    """Canonical state of a keras.applications ResNet{50,101,152} (Caffe-style v1)."""
    return _convert(model, preact=False)


CONVERTERS = {
    "resnet50v2": ("resnet50_v2", convert_v2),
    "resnet101v2": ("resnet101_v2", convert_v2),
    "resnet152v2": ("resnet152_v2", convert_v2),
    "resnet50": ("resnet50_keras", convert_v1),
    "resnet101": ("resnet101_keras", convert_v1),
    "resnet152": ("resnet152_keras", convert_v1),
}
