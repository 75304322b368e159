"""Keras' torch backend and dotted layer names.

keras_impl names every weighted layer by its torch module path ("layer1.0.conv1"). Keras'
torch backend registers each layer's variables in a torch.nn.ParameterDict keyed by the
variable path ("layer1.0.conv1/kernel"), and torch refuses "." in parameter names, so
building any keras_impl model there raised KeyError. We register the parameters under the
same path with "." spelled "::". Paths without a dot keep their key, so any model Keras
already accepted is registered exactly as before; layer names, variable paths, saving and
loading are untouched. Applied once, on the torch backend only (keras_impl/__init__.py),
and only while Keras still refuses a dotted layer name (a Keras that accepts them is left
alone).
"""

DOT = "::"


def parameter_key(variable) -> str:
    return variable.path.replace(".", DOT)


def keras_refuses_dotted_names() -> bool:
    import keras
    try:
        keras.layers.Dense(1, name="probe.dotted.name").build((None, 1))
        return False
    except KeyError:
        return True


def accept_dotted_layer_names() -> bool:
    """Patch Keras' TorchLayer if it needs it; True when the fix is in place."""
    import torch
    from keras.src.backend.torch.layer import TorchLayer

    if getattr(TorchLayer, "_cnn_parity_dotted_names", False):
        return True
    if not keras_refuses_dotted_names():
        return False

    def _track_variables(self):
        self._torch_params = torch.nn.ParameterDict({parameter_key(v): v.value for v in self.variables})

    def _post_track_variable(self, variable):
        if hasattr(self, "_torch_params") and parameter_key(variable) not in self._torch_params:
            self._torch_params[parameter_key(variable)] = variable.value

    def _post_untrack_variable(self, variable):
        if hasattr(self, "_torch_params") and parameter_key(variable) in self._torch_params:
            self._torch_params.pop(parameter_key(variable))

    TorchLayer._track_variables = _track_variables
    TorchLayer._post_track_variable = _post_track_variable
    TorchLayer._post_untrack_variable = _post_untrack_variable
    TorchLayer._cnn_parity_dotted_names = True
    return True
