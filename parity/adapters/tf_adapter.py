import contextlib

from .base import Adapter, to_nchw_outputs, to_nhwc, variable_slot

_PARAMS = ("weight", "bias", "running_mean", "running_var")


class TFAdapter(Adapter):
    framework = "tf"
    channels_last = True

    def owns(self, model):
        import sys
        tf = sys.modules.get("tensorflow")
        keras = sys.modules.get("keras")
        return (tf is not None and isinstance(model, tf.Module)
                and not (keras is not None and isinstance(model, keras.Model)))

    def native_name(self, model):
        return getattr(model, "arch", model.name)

    def cast(self, model, dtype):
        from tf_impl.layers import to_dtype
        return to_dtype(model, dtype)

    def dtype(self, model):
        from tf_impl.layers import dtype_of
        return dtype_of(model).name

    def slots(self, model):
        from tf_impl.layers import named_layers
        spec = self.spec(model)
        flatten = spec.flatten_linear if spec else {}
        slots, canonical = {}, self.canonical_paths(model, spec)
        for path, layer in named_layers(model):
            path = canonical(path)
            for param in _PARAMS:
                var = getattr(layer, param, None)
                if var is None:
                    continue
                kind = getattr(layer, "layout", {}).get(param, "identity")
                chw = flatten.get(path) if kind == "linear" else None
                slots[f"{path}.{param}"] = variable_slot(var, kind, lambda v: v.numpy(), chw)
        return slots

    def run(self, model, x_nchw, device="cpu"):
        from ..devices import placed
        x_nchw = self.check_input(model, x_nchw)
        with placed(self.framework, device):
            return to_nchw_outputs(_numpy(_inference_fn(model)(to_nhwc(x_nchw))))

    def layer_outputs(self, model, x_nchw):
        """{attribute path: output (NCHW)} for every weighted layer, in execution order (eager)."""
        x_nchw = self.check_input(model, x_nchw)
        with recording(model) as log:
            model(to_nhwc(x_nchw), training=False)
        canonical = self.canonical_paths(model)
        return {canonical(path): to_nchw_outputs(out.numpy())[0] for path, out in log.items()}

    def layer_dtypes(self, model, x_nchw):
        x_nchw = self.check_input(model, x_nchw)
        inputs = {}
        with recording(model, inputs) as outputs:
            try:
                model(to_nhwc(x_nchw), training=False)
            except Exception:  # noqa: BLE001 - the layers that ran say where it broke
                pass
        return [(path, x.dtype.name, outputs[path].dtype.name if path in outputs else None)
                for path, x in inputs.items()]

    def export_onnx(self, model, path, input_shape, output_names=("logits",)):
        from ..onnx.from_tf import export_tf_callable
        export_tf_callable(lambda x: model(x, training=False), path, input_shape, output_names,
                           model_name=self.model_name(model))

    def native_trainer(self, model, **options):
        from tf_impl.train import Trainer
        return Trainer(model, **options)

    def save_native(self, model, path):
        import tensorflow as tf

        from ..io import atomic_path
        with atomic_path(path, directory=True) as tmp:
            tf.train.Checkpoint(model=model).write(str(tmp / "ckpt"))

    def load_native(self, model, path):
        import tensorflow as tf

        from ..errors import WeightFileError
        try:
            tf.train.Checkpoint(model=model).read(str(path) + "/ckpt").assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as exc:
            raise WeightFileError(f"{path}: cannot load a tf_impl checkpoint into {self.model_name(model)}: "
                                  f"{str(exc).splitlines()[0]}") from None


@contextlib.contextmanager
def recording(model, inputs=None):
    """Record each weighted layer's first output by path while the model runs eagerly (and its
    first input into `inputs`, if given, before the layer runs), through the layers' watchers
    (tf_impl.layers.WeightedLayer.watch), as torch's forward hooks would."""
    from tf_impl.layers import named_layers
    log, layers = {}, dict(named_layers(model))

    def watcher_of(path):
        def watch(layer, x, y):
            if y is None:
                if inputs is not None:
                    inputs.setdefault(path, x)
            else:
                log.setdefault(path, y)
        return watch

    for path, layer in layers.items():
        layer.watch(watcher_of(path))
    try:
        yield log
    finally:
        for layer in layers.values():
            layer.watch(None)


def _inference_fn(model):
    """A tf.function of the inference call, cached on the model (outside tf.Module tracking)."""
    import tensorflow as tf
    fn = model.__dict__.get("_parity_inference_fn")
    if fn is None:
        # One trace per input shape: static H, W (adaptive pooling, flatten) need it.
        fn = tf.function(lambda x: model(x, training=False))
        object.__setattr__(model, "_parity_inference_fn", fn)
    return fn


def _numpy(out):
    if isinstance(out, dict):
        out = list(out.values())
    return [o.numpy() for o in out] if isinstance(out, (list, tuple)) else out.numpy()
