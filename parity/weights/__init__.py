"""Importing weights into canonical state: from other libraries' models, from the source
tutorials' checkpoints, and from weight files of any of the three frameworks. The commands
on a model's weights (list, summary, convert) are commands.py."""
from typing import Any


def from_keras_applications(model: Any) -> tuple[str, dict]:
    """(catalogue name, canonical state) reproducing a keras.applications model (a keras.Model).

    Works with random or ImageNet weights; the returned state loads strictly into the
    named model in every framework. Converters live in parity/keras_applications/.
    """
    from ..keras_applications import converter_for

    name, convert = converter_for(model)
    return name, convert(model)


def from_tutorial(model_name: str, state_dict: Any, **build_kwargs: Any) -> dict:
    """Canonical state of catalogue model `model_name` from a state dict saved by the source
    tutorial's own code (d2l's `nn.Sequential` indices, seed 004's module names); builder
    options such as num_classes as the tutorial used them. Every unknown, missing and
    mis-shaped key is listed in one StateDictError. Renames live in parity/tutorials.py."""
    from ..tutorials import from_tutorial as convert
    return convert(model_name, state_dict, **build_kwargs)


def weight_format(path: str) -> str:
    path = str(path).rstrip("/")
    if path.endswith(".safetensors"):
        return "canonical"
    if path.endswith((".pt", ".pth", ".bin")):
        return "torch"
    if path.endswith(".weights.h5"):
        return "keras"
    if path.endswith(".tfckpt"):
        return "tf"
    raise ValueError(f"{path}: unknown weight format; use .safetensors, .pt/.pth, .weights.h5 or a .tfckpt directory")


def read_state(name, path, options=None) -> dict:
    """Canonical state of catalogue model `name` from a weight file: .safetensors and
    .pt/.pth as saved, .weights.h5 and .tfckpt through the framework's model (built
    with `options`, e.g. num_classes)."""
    from ..adapters import adapter
    from ..io import load_state
    kind = weight_format(path)
    if kind in ("canonical", "torch"):
        return load_state(path)
    model = adapter(kind).build(name, **(options or {}))
    adapter(kind).load_native(model, path)
    return adapter(kind).state_dict(model)
