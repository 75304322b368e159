"""keras.applications.InceptionV3 -> canonical state of the catalogue's `inception_v3_keras`.

keras.applications leaves its convolutions and batch norms unnamed, so Keras numbers them
with global counters (conv2d, conv2d_1, ...; batch_normalization, batch_normalization_1,
...) in creation order; `model.layers` is in graph-depth order instead. The converter
sorts both by their counters: the k-th convolution created is the k-th path of
CONV_PATHS (the order keras.applications builds its branches, which is torchvision's
order too) and the k-th batch norm is the one right behind it.

Its BatchNormalization has scale=False (no gamma): the canonical BatchNorm weight is
filled with ones. `predictions` becomes `fc`, whatever its activation; our models output
logits, so compare against a model built with classifier_activation=None.
"""
import re

import numpy as np

from .. import layouts

_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
_BLOCK_CONVS = {
    "A": ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3",
          "branch_pool"),
    "B": ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    "C": ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1", "branch7x7dbl_2",
          "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"),
    "D": ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
    "E": ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
          "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
}
_BLOCKS = (("Mixed_5b", "A"), ("Mixed_5c", "A"), ("Mixed_5d", "A"), ("Mixed_6a", "B"), ("Mixed_6b", "C"),
           ("Mixed_6c", "C"), ("Mixed_6d", "C"), ("Mixed_6e", "C"), ("Mixed_7a", "D"), ("Mixed_7b", "E"),
           ("Mixed_7c", "E"))
CONV_PATHS = (*_STEM, *(f"{block}.{conv}" for block, kind in _BLOCKS for conv in _BLOCK_CONVS[kind]))
BN_EPSILON = 1e-3  # torchvision's BasicConv2d and keras.applications agree


def _in_creation_order(layers, prefix):
    pattern = re.compile(rf"{prefix}(?:_(\d+))?")
    matches = [(pattern.fullmatch(layer.name), layer) for layer in layers]
    unnamed = [layer.name for match, layer in matches if match is None]
    if unnamed:
        raise ValueError(f"InceptionV3 converter: layer names {unnamed[:3]} are not Keras' automatic "
                         f"'{prefix}_N' names, so their creation order is unknown")
    return [layer for match, layer in sorted(matches, key=lambda m: int(m[0].group(1) or 0))]


def _numpy(variable):
    from keras import ops
    return np.asarray(ops.convert_to_numpy(variable), dtype=np.float32)


def _batch_norm_state(path, bn):
    if abs(bn.epsilon - BN_EPSILON) > 1e-12:
        raise ValueError(f"InceptionV3 converter: {bn.name} has epsilon {bn.epsilon}; expected {BN_EPSILON}")
    beta = _numpy(bn.beta) if bn.center else np.zeros(bn.moving_mean.shape, np.float32)
    return {f"{path}.bn.weight": _numpy(bn.gamma) if bn.scale else np.ones_like(beta),
            f"{path}.bn.bias": beta,
            f"{path}.bn.running_mean": _numpy(bn.moving_mean),
            f"{path}.bn.running_var": _numpy(bn.moving_variance)}


def convert_inception_v3(model) -> dict:
    from keras import layers

    convs = _in_creation_order([x for x in model.layers if isinstance(x, layers.Conv2D)], "conv2d")
    norms = _in_creation_order([x for x in model.layers if isinstance(x, layers.BatchNormalization)],
                               "batch_normalization")
    if not len(convs) == len(norms) == len(CONV_PATHS):
        raise ValueError(f"InceptionV3 converter: expected {len(CONV_PATHS)} convolutions and batch norms; "
                         f"got {len(convs)} and {len(norms)}")
    try:
        predictions = model.get_layer("predictions")
    except ValueError:
        raise ValueError("InceptionV3 converter: the model has no 'predictions' layer; "
                         "build it with include_top=True") from None
    state = {}
    for path, conv, bn in zip(CONV_PATHS, convs, norms):
        kernel = _numpy(conv.kernel)
        if kernel.shape[-1] != bn.moving_mean.shape[0]:
            raise ValueError(f"InceptionV3 converter: {bn.name} does not follow {conv.name}")
        state[f"{path}.conv.weight"] = layouts.to_canonical("conv", kernel)
        state.update(_batch_norm_state(path, bn))
    state["fc.weight"] = layouts.to_canonical("linear", _numpy(predictions.kernel))
    state["fc.bias"] = _numpy(predictions.bias)
    return state


CONVERTERS = {"inception_v3": ("inception_v3_keras", convert_inception_v3)}
