"""Importing weights from other libraries' models into canonical state."""
from typing import Any


def from_keras_applications(model: Any) -> tuple[str, dict]:
    """(catalogue name, canonical state) reproducing a keras.applications model (a keras.Model).

    Works with random or ImageNet weights; the returned state loads strictly into the
    named model in every framework. Converters live in parity/keras_applications/.
    """
    from .keras_applications import converter_for

    name, convert = converter_for(model)
    return name, convert(model)


def from_tutorial(model_name: str, state_dict: Any, **build_kwargs: Any) -> dict:
    """Canonical state of catalogue model `model_name` from a state dict saved by the source
    tutorial's own code (d2l's `nn.Sequential` indices, seed 004's module names); builder
    options such as num_classes as the tutorial used them. Every unknown, missing and
    mis-shaped key is listed in one StateDictError. Renames live in parity/tutorials.py."""
    from .tutorials import from_tutorial as convert
    return convert(model_name, state_dict, **build_kwargs)
