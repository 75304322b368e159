"""keras.applications DenseNet121/169/201 -> canonical (torchvision-style) state.

keras.applications names its layers conv1_conv, conv1_bn, conv{2..5}_block{i}_{0_bn,1_conv,
1_bn,2_conv}, pool{2..4}_{bn,conv}, bn and predictions; each maps one to one onto a torch
module path. The models compute our `*_keras` variants (BN epsilon 1.001e-5, zero padding
before the stem max-pool), see docs/densenet.md.
"""
import re

import numpy as np

from .. import layouts

# keras.applications layer name pattern -> torch module path (groups: block, layer)
_LAYER_PATHS = [
    (r"conv1_conv", lambda: "features.conv0"),
    (r"conv1_bn", lambda: "features.norm0"),
    (r"conv(\d)_block(\d+)_0_bn", lambda b, i: f"features.denseblock{int(b) - 1}.denselayer{i}.norm1"),
    (r"conv(\d)_block(\d+)_1_conv", lambda b, i: f"features.denseblock{int(b) - 1}.denselayer{i}.conv1"),
    (r"conv(\d)_block(\d+)_1_bn", lambda b, i: f"features.denseblock{int(b) - 1}.denselayer{i}.norm2"),
    (r"conv(\d)_block(\d+)_2_conv", lambda b, i: f"features.denseblock{int(b) - 1}.denselayer{i}.conv2"),
    (r"pool(\d)_bn", lambda b: f"features.transition{int(b) - 1}.norm"),
    (r"pool(\d)_conv", lambda b: f"features.transition{int(b) - 1}.conv"),
    (r"bn", lambda: "features.norm5"),
    (r"predictions", lambda: "classifier"),
]

# Keras variable name -> torch parameter name
_PARAM_NAMES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                "moving_mean": "running_mean", "moving_variance": "running_var"}


def torch_path(layer_name: str) -> str:
    for pattern, path in _LAYER_PATHS:
        match = re.fullmatch(pattern, layer_name)
        if match:
            return path(*match.groups())
    raise ValueError(f"keras.applications DenseNet: no canonical name for layer {layer_name!r}")


def _canonical(var_name, value):
    """A Keras variable's value in the canonical layout: kernels are transposed, the rest kept."""
    if var_name != "kernel":
        return value
    return layouts.to_canonical({4: "conv", 2: "linear"}[value.ndim], value)


def convert(model) -> dict[str, np.ndarray]:
    """Canonical state of a keras.applications DenseNet (with or without its top)."""
    from keras import ops

    state = {}
    for layer in model.layers:
        path = torch_path(layer.name) if layer.weights else None
        for var in layer.weights:
            if var.name not in _PARAM_NAMES:
                raise ValueError(f"keras.applications DenseNet: unexpected variable {var.path!r}")
            value = ops.convert_to_numpy(var).astype(np.float32)
            state[f"{path}.{_PARAM_NAMES[var.name]}"] = _canonical(var.name, value)
    return state


CONVERTERS = {
    "densenet121": ("densenet121_keras", convert),
    "densenet169": ("densenet169_keras", convert),
    "densenet201": ("densenet201_keras", convert),
}
