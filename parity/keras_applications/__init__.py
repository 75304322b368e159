"""keras.applications -> canonical state converters, one module per family.

Each module defines CONVERTERS = {keras model name: (catalogue name, fn(model) -> state)}.
"""
import importlib
import pkgutil


def _all_converters() -> dict:
    table = {}
    for info in pkgutil.iter_modules(__path__):
        table.update(importlib.import_module(f"{__name__}.{info.name}").CONVERTERS)
    return table


def converter_for(model):
    if any("." in layer.name for layer in model.layers):  # keras_impl names layers by torch paths
        raise ValueError(f"{model.name!r} is a keras_impl model, not a keras.applications one; "
                         "use parity.state_dict(model) for its canonical state")
    table = _all_converters()
    key = model.name.lower()
    if key not in table:
        raise ValueError(f"no converter for keras.applications model {model.name!r}; "
                         f"supported: {', '.join(sorted(table))}")
    return table[key]


def weights_by_layer(model) -> dict:
    """{layer name: [numpy arrays]} for every layer that holds weights."""
    from keras import ops
    return {layer.name: [ops.convert_to_numpy(w) for w in layer.weights] for layer in model.layers if layer.weights}
