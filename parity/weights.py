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
