"""keras.applications VGG16 / VGG19 -> canonical state of torchvision-layout vgg16 / vgg19.

At 224x224 keras.applications' VGG is torchvision's VGG: its feature map is already 7x7, so
torchvision's adaptive pooling is the identity. fc1 reads an (H, W, C) flatten; the
canonical classifier.0 reads (C, H, W).
"""
import numpy as np

from .. import layouts
from . import weights_by_layer

_STAGES = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def _feature_indices(convs_per_stage):
    """torchvision's features.N index of every conv: conv, ReLU pairs, then a max-pool per stage."""
    index, names = 0, []
    for stage, convs in enumerate(convs_per_stage, start=1):
        for conv in range(1, convs + 1):
            names.append((f"block{stage}_conv{conv}", index))
            index += 2
        index += 1
    return names


def _converter(arch):
    def convert(model):
        weights = weights_by_layer(model)
        state = {}
        for keras_name, index in _feature_indices(_STAGES[arch]):
            kernel, bias = weights[keras_name]
            state[f"features.{index}.weight"] = layouts.to_canonical("conv", kernel)
            state[f"features.{index}.bias"] = bias
        kernel, bias = weights["fc1"]
        state["classifier.0.weight"] = layouts.flatten_linear_to_canonical(kernel, (512, 7, 7))
        state["classifier.0.bias"] = bias
        for keras_name, path in (("fc2", "classifier.3"), ("predictions", "classifier.6")):
            kernel, bias = weights[keras_name]
            state[f"{path}.weight"] = layouts.to_canonical("linear", kernel)
            state[f"{path}.bias"] = bias
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    return convert


CONVERTERS = {arch: (arch, _converter(arch)) for arch in _STAGES}
