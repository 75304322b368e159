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

It also routes Keras' torch 2-D convolutions around three layout copies per call
(`use_copy_free_conv`, below): the same conv2d on the same memory, without the copies.
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


# --- convolutions without layout copies -------------------------------------------------------
# Keras 3.15's torch `conv` makes three copies per 2-D convolution on every call: the NHWC
# input permuted to NCHW and made contiguous, that copy converted back to channels_last
# memory, and the HWIO kernel permuted and copied (30-42% of a ResNet-50 call on a CPU;
# benchmarks/keras_torch_profile.py). NHWC memory already is NCHW in channels_last, so
# conv2d can take the permuted view; the permuted kernel is kept per variable while no
# gradient is recorded and its value is unchanged. Anything else goes to Keras' own conv.

def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


class CopyFreeConv:
    """A drop-in for keras.src.backend.torch.nn.conv, same arguments, same result."""

    CACHE = "_cnn_parity_oihw"  # on the Keras variable: (version key, OIHW kernel)

    def __init__(self, original):
        self.original = original

    def __call__(self, inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        import torch
        from keras.src import backend

        size = tuple(kernel.shape[:2])
        stride, dilation = _pair(strides), _pair(dilation_rate)
        symmetric = padding == "same" and stride == (1, 1) and all(k % 2 for k in size)
        if (backend.standardize_data_format(data_format) != "channels_last" or len(inputs.shape) != 4
                or len(kernel.shape) != 4 or not (padding == "valid" or symmetric)
                or not isinstance(inputs, torch.Tensor)):
            return self.original(inputs, kernel, strides, padding, data_format, dilation_rate)
        weight = self._oihw(kernel)
        pad = tuple(d * (k - 1) // 2 for k, d in zip(size, dilation)) if symmetric else 0
        x = inputs.permute(0, 3, 1, 2)  # a view: no copy
        out = torch.nn.functional.conv2d(x, weight, stride=stride, padding=pad, dilation=dilation,
                                         groups=x.shape[1] // weight.shape[1])
        return out.permute(0, 2, 3, 1)

    def _oihw(self, kernel):
        import torch
        value = getattr(kernel, "value", kernel)
        permute = lambda: value.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)  # noqa: E731
        if torch.is_grad_enabled() or value is kernel:  # training, or a plain tensor: no cache
            return permute()
        key = (value.data_ptr(), value._version, value.device)
        cached = getattr(kernel, self.CACHE, None)
        if cached is None or cached[0] != key:
            cached = (key, permute())
            setattr(kernel, self.CACHE, cached)
        return cached[1]


def use_copy_free_conv() -> bool:
    """Route Keras' torch 2-D convolutions through CopyFreeConv; True once in place."""
    from keras.src.backend.torch import nn

    if not isinstance(nn.conv, CopyFreeConv):
        nn.conv = CopyFreeConv(nn.conv)
    return True
