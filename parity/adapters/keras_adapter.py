from ..errors import InputError
from .base import Adapter, to_nchw_outputs, to_nhwc, variable_slot

# Keras variable name -> torch parameter name
_TORCH_NAME = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}


class KerasAdapter(Adapter):
    framework = "keras"
    channels_last = True

    def owns(self, model):
        import sys
        keras = sys.modules.get("keras")
        return keras is not None and isinstance(model, keras.Model)

    def native_name(self, model):
        return model.name

    def build(self, name, input_size=None, dtype="float32", **kwargs):
        from ..catalogue import registry
        spec = registry.get(name)
        if spec.fixed_size and "input_shape" not in kwargs:
            c, h, w = input_size or spec.input_size
            kwargs["input_shape"] = (h, w, c)
        return super().build(name, dtype=dtype, **kwargs)

    def building_in(self, dtype):
        """Keras' floatx and dtype policy set to `dtype`: for building, and for running a float64
        model, whose ops on the torch backend otherwise promote float64 with float64 to floatx
        (ops.matmul of two float64 tensors returns float32 when floatx is float32, and a Dense
        layer's bias add casts it back: 5.7e-7 off, with every dtype saying float64)."""
        from keras_impl.layers import floatx
        return floatx(dtype)

    def input_channels(self, model):
        return model.inputs[0].shape[-1] if getattr(model, "inputs", None) else None

    def dtype(self, model):
        from keras_impl.layers import dtype_of
        return dtype_of(model)

    def slots(self, model):
        from keras import layers, ops
        spec = self.spec(model)
        flatten = spec.flatten_linear if spec else {}
        slots, canonical = {}, self.canonical_paths(model, spec)
        for layer in model.layers:
            kind = ("conv_transpose" if isinstance(layer, layers.Conv2DTranspose)
                    else "conv" if isinstance(layer, layers.Conv2D)
                    else "linear" if isinstance(layer, layers.Dense) else "identity")
            path = canonical(layer.name)
            for var in layer.weights:
                key = f"{path}.{_TORCH_NAME.get(var.name, var.name)}"
                weight_kind = kind if var.name == "kernel" else "identity"
                chw = flatten.get(path) if weight_kind == "linear" else None
                if weight_kind == "linear" and chw is None and (read := _spatial_flatten(layer)):
                    raise InputError(f"{self.model_name(model)}: '{path}' is a Linear after a spatial flatten of a "
                                     f"{read} (C, H, W) map, whose features Keras orders (H, W, C): register the "
                                     f"model with flatten_linear={{'{path}': {read}}}")
                slots[key] = variable_slot(var, weight_kind, ops.convert_to_numpy, chw)
        return slots

    def run(self, model, x_nchw, device="cpu"):
        from keras import ops

        from ..devices import placed
        x_nchw = self.check_input(model, x_nchw)
        with placed(self.framework, device), self.building_in(self.dtype(model)):  # see building_in
            out = model(to_nhwc(x_nchw), training=False)
        out = [ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
        return to_nchw_outputs(out)

    def layer_outputs(self, model, x_nchw):
        """{layer name: output (NCHW)} for every layer holding weights, via a probe model. A layer
        with an activation folded in (Conv2D(..., activation="relu")) gives its output before
        the activation, as torch's layer does: run again on its probed input, activation off."""
        import keras
        from keras import ops

        x_nchw = self.check_input(model, x_nchw)
        inference = getattr(model, "inference_model", model)  # aux heads do not run (and may not fit) here
        weighted = [layer for layer in inference.layers if layer.weights]
        linear = (None, keras.activations.linear)
        folded = [layer for layer in weighted if getattr(layer, "activation", None) not in linear]
        probe = keras.Model(inference.inputs, [layer.output for layer in weighted] + [layer.input for layer in folded])
        with self.building_in(self.dtype(model)):
            outs = probe([to_nhwc(x_nchw)], training=False)  # the structure of `inference.inputs`, a list
            outs, inputs = list(outs[:len(weighted)]), outs[len(weighted):]
            for layer, given in zip(folded, inputs):
                outs[weighted.index(layer)] = _without_activation(layer, given)
        canonical = self.canonical_paths(model)
        return dict(zip([canonical(layer.name) for layer in weighted],
                        to_nchw_outputs([ops.convert_to_numpy(o) for o in outs])))

    def layer_dtypes(self, model, x_nchw):
        """Read from the functional graph: each layer's symbolic input and output, as the layer
        before it left it (Keras casts a layer's inputs to its compute dtype inside the call)."""
        from keras.backend import standardize_dtype
        self.check_input(model, x_nchw)
        inference = getattr(model, "inference_model", model)
        return [(layer.name, standardize_dtype(layer.input.dtype), standardize_dtype(layer.output.dtype))
                for layer in inference.layers if layer.weights]

    def float64_rounding(self, model):
        import keras

        from keras_impl.layers import float64_rounding_layers
        found = float64_rounding_layers(model)
        if not found:
            return None
        names = ", ".join(f"{name} ({replacement})" for name, replacement in found[:6]) + \
            (f", ... (+{len(found) - 6})" if len(found) > 6 else "")
        return (f"on Keras' {keras.backend.backend()} backend, Keras' own Dense, GlobalAveragePooling2D and "
                f"BatchNormalization compute a float64 model in float32 (Keras 3.15's type promotion): {names}; "
                f"keras_impl.layers' float64-safe layer in brackets keeps float64, or judge on the tensorflow backend")

    def export_onnx(self, model, path, input_shape, output_names=("logits",)):
        import keras
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(f"ONNX export of keras_impl models needs the tensorflow backend; "
                               f"KERAS_BACKEND is {keras.backend.backend()!r}")
        from ..onnx.from_tf import export_tf_callable
        export_tf_callable(lambda x: model(x, training=False), path, input_shape, output_names,
                           model_name=self.model_name(model))

    def native_trainer(self, model, **options):
        from keras_impl.train import Trainer
        return Trainer(model, **options)

    def save_native(self, model, path):
        from ..io import atomic_path
        if not str(path).endswith(".weights.h5"):
            raise ValueError(f"{path}: Keras weight files must end in .weights.h5")
        with atomic_path(path) as tmp:
            model.save_weights(tmp)

    def load_native(self, model, path):
        from ..errors import WeightFileError
        try:
            model.load_weights(path)
        except Exception as exc:  # h5py and Keras raise many types for a bad file
            raise WeightFileError(f"{path}: cannot load Keras weights into {model.name}: {exc}") from None


def _spatial_flatten(layer):
    """(C, H, W) of the map a Dense reads through a Flatten, where H x W > 1; else None."""
    from keras import layers
    try:
        source = layer.input._keras_history.operation
    except (AttributeError, ValueError):  # not in a functional graph, or called more than once
        return None
    shape = tuple(source.input.shape) if isinstance(source, layers.Flatten) else ()
    if len(shape) != 4 or None in shape[1:] or shape[1] * shape[2] == 1:
        return None
    return shape[3], shape[1], shape[2]


def _without_activation(layer, given):
    """`layer` on `given` with its folded activation switched off for the call."""
    import keras
    activation, layer.activation = layer.activation, keras.activations.linear
    try:
        return layer(given, training=False)
    finally:
        layer.activation = activation
