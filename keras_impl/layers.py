"""Building blocks shared by the keras_impl architectures.

Every spatial padding is symmetric, as torch's: an explicit pad followed by a VALID op, or
Keras' padding="same" where that is the same thing (stride 1, odd effective kernel). At
stride 2 "same" pads bottom/right more than top/left, so it is never used there.
"""
import contextlib

import keras
from keras import layers, ops


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@contextlib.contextmanager
def floatx(dtype):
    """Build under Keras' default float `dtype` ("float32" or "float64"): layers, inputs and
    optimizer variables (the learning rate too) take it; the previous defaults come back after.
    Both floatx and the global dtype policy are set: once a policy has been set (restoring one
    after mixed precision does), layers follow it and ignore floatx.
    On JAX, float64 also needs jax_enable_x64, which is switched on (and stays on: JAX cannot
    turn it off safely once arrays exist)."""
    if dtype == "float64" and keras.backend.backend() == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
    previous, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)
        keras.config.set_dtype_policy(previous_policy)


def dtype_of(model):
    """The dtype of a model's variables ("float32" unless built under floatx("float64"))."""
    return str(model.weights[0].dtype) if model.weights else "float32"


@keras.saving.register_keras_serializable(package="cnn_parity")
class NegInfPadding2D(layers.Layer):
    """Pads H and W with -inf, so a following max-pool ignores the padding (torch semantics)."""

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        (self.top, self.bottom), (self.left, self.right) = padding

    def call(self, x):
        pads = [[0, 0], [self.top, self.bottom], [self.left, self.right], [0, 0]]
        return ops.pad(x, pads, constant_values=float("-inf"))

    def compute_output_shape(self, shape):
        grow = lambda n, a, b: None if n is None else n + a + b  # noqa: E731
        return (shape[0], grow(shape[1], self.top, self.bottom), grow(shape[2], self.left, self.right), shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": ((self.top, self.bottom), (self.left, self.right))}


@keras.saving.register_keras_serializable(package="cnn_parity")
class InputCheck(layers.Layer):
    """torch_impl's check_input in a functional model: a wrong channel count or an empty batch
    is refused before the first layer runs, naming the model, that layer and the shape (Keras'
    own message names an inner layer, or, for an empty batch, the wrong one). Shapes unknown
    while a graph is traced are left to the run."""

    def __init__(self, model, first_layer, channels, **kwargs):
        super().__init__(**kwargs)
        self.model_name, self.first_layer, self.channels = model, first_layer, channels

    def call(self, x):
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[-1] not in (None, self.channels):
            raise ValueError(f"{self.model_name}: layer '{self.first_layer}' expects input (N, H, W, {self.channels}) "
                             f"(NHWC); got shape {shape}")
        if shape[0] == 0:
            raise ValueError(f"{self.model_name}: layer '{self.first_layer}' got an empty batch, shape {shape}")
        return x

    def get_config(self):
        return {**super().get_config(), "model": self.model_name, "first_layer": self.first_layer,
                "channels": self.channels}


@keras.saving.register_keras_serializable(package="cnn_parity")
class Dropout(layers.Dropout):
    """keras.layers.Dropout whose masks can come from outside: while `masks` is set
    (train.injected_dropout), a training call multiplies by masks(shape, rate) (already scaled
    by 1/(1-rate)) instead of drawing from Keras' seed generator; `per_replica` (tf.distribute):
    masks(shape, rate, replica), this replica's rows of the global batch's mask."""

    def __init__(self, rate, **kwargs):
        super().__init__(rate, **kwargs)
        self.masks, self.per_replica = None, False

    def call(self, inputs, training=False):
        if self.masks is None or not training or self.rate == 0:
            return super().call(inputs, training=training)
        return inputs * ops.cast(FETCH_MASK[keras.backend.backend()](self, inputs), inputs.dtype)


def _tensorflow_mask(layer, inputs):
    """Looked up when the compiled step runs, not when it was traced: a step reused with other
    masks (a replica's rows, a new run) draws from those."""
    import tensorflow as tf
    shape, rate = tf.shape(inputs), layer.rate
    if layer.per_replica:
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        mask = tf.numpy_function(lambda s, r: layer.masks(s, rate, int(r)), [shape, replica], tf.float32,
                                 stateful=True)
    else:
        mask = tf.numpy_function(lambda s: layer.masks(s, rate), [shape], tf.float32, stateful=True)
    return tf.reshape(mask, shape)


def _torch_mask(layer, inputs):
    import torch
    return torch.from_numpy(layer.masks(tuple(inputs.shape), layer.rate)).to(inputs.device)


def _jax_mask(layer, inputs):
    """The masks the step was traced with (its callback may run after the step returns); the
    mask itself is fetched each time the step runs."""
    import jax
    import numpy as np
    masks, shape, rate = layer.masks, tuple(inputs.shape), layer.rate
    return jax.pure_callback(lambda: np.asarray(masks(shape, rate), np.float32),
                             jax.ShapeDtypeStruct(shape, np.float32))


FETCH_MASK = {"tensorflow": _tensorflow_mask, "torch": _torch_mask, "jax": _jax_mask}


def dropout_layers(layer):
    """Every Dropout of a Keras model, nested models included; a plain keras.layers.Dropout,
    which cannot take masks, is refused by name."""
    for child in getattr(layer, "layers", ()):
        if isinstance(child, Dropout):
            yield child
        elif isinstance(child, layers.Dropout) and child.rate > 0:
            raise ValueError(f"layer '{child.name}' is a keras.layers.Dropout, which cannot take the given "
                             "dropout masks: build it with keras_impl.layers.Dropout")
        else:
            yield from dropout_layers(child)


def check_input(x, model, first_layer, channels):
    """`x` through an InputCheck (see there)."""
    return InputCheck(model, first_layer, channels, name="input_check")(x)


def conv2d(x, filters, kernel_size, *, name, stride=1, padding=0, dilation=1, groups=1, bias=True):
    """torch.nn.Conv2d: symmetric zero padding, then a VALID convolution; where Keras' "same"
    pads exactly that (stride 1, padding = dilation * (kernel - 1) / 2), the conv pads itself."""
    same = dict(padding="same") if _same_is_symmetric(kernel_size, stride, padding, dilation) else {}
    if any(_pair(padding)) and not same:
        x = layers.ZeroPadding2D(_pair(padding), name=f"{name}_pad")(x)
    return _conv_class(groups)(filters, kernel_size, strides=stride, padding=same.get("padding", "valid"),
                               dilation_rate=dilation, groups=groups, use_bias=bias, name=name)(x)


def _conv_class(groups):
    if groups > 1 and keras.backend.backend() == "tensorflow":  # see _tf_backend.py: no retrace per call
        from ._tf_backend import GroupedConv2D
        return GroupedConv2D
    return layers.Conv2D


def _same_is_symmetric(kernel_size, stride, padding, dilation):
    # At stride 1, "same" pads d*(k-1) per axis, split evenly only when that is even.
    return _pair(stride) == (1, 1) and any(_pair(padding)) and all(
        (d * (k - 1)) % 2 == 0 and p == d * (k - 1) // 2
        for k, p, d in zip(_pair(kernel_size), _pair(padding), _pair(dilation)))


@keras.saving.register_keras_serializable(package="cnn_parity")
class TorchBatchNormalization(layers.BatchNormalization):
    """BatchNormalization whose training step keeps torch's running statistics.

    Keras stores the biased batch variance in moving_variance; torch stores the unbiased one
    (n/(n-1) times larger, n = N*H*W). Normalization itself uses the biased variance in both.
    Inference, and a frozen layer (trainable=False: Keras normalizes with the moving
    statistics and leaves them alone), are Keras' own code path.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            if mask is None and not self.renorm and _float64_outside_tensorflow(inputs):
                # Keras' own call computes in result_type(x, float32), float32 for float64 there
                return ops.batch_normalization(inputs, self.moving_mean, self.moving_variance, axis=self.axis,
                                               offset=self.beta if self.center else None,
                                               scale=self.gamma if self.scale else None, epsilon=self.epsilon)
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, backend_float(inputs))
        count = ops.cast(ops.size(x) // ops.shape(x)[self.axis], x.dtype)
        if self.synchronized and _replica_context() is not None:  # issue 14: moments of the global batch
            mean, variance, count = _global_moments(x, count, _replica_context(), self.axis)
        else:
            mean, variance = self._moments(x, mask)
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum))
        y = ops.batch_normalization(x, mean, variance, axis=self.axis, offset=self.beta if self.center else None,
                                    scale=self.gamma if self.scale else None, epsilon=self.epsilon)
        return ops.cast(y, self.compute_dtype)


def _float64_outside_tensorflow(x):
    """Keras 3.15 promotes float64 to float32 on every backend but tensorflow (its result_type
    follows JAX without x64: BIT64_TO_BIT32_DTYPE), so the layers that compute in
    result_type(...) (Dense, BatchNormalization) round a float64 model there."""
    return keras.backend.backend() != "tensorflow" and keras.backend.standardize_dtype(x.dtype) == "float64"


@keras.saving.register_keras_serializable(package="cnn_parity")
class Linear(layers.Dense):
    """keras.layers.Dense (torch's nn.Linear), kept float64 in a float64 model on every backend:
    Dense's ops.matmul computes float64 in float32 outside TensorFlow (_float64_outside_tensorflow;
    5.7e-7 off, and the bias add casts the result back to float64). Here a float64 model's
    linear layers multiply with the backend's own matmul; everything else is Dense."""

    def call(self, inputs, training=None):
        if not _float64_outside_tensorflow(inputs):
            return super().call(inputs, training=training)
        x = _backend_matmul(inputs, ops.convert_to_tensor(self.kernel))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return self.activation(x) if self.activation is not None else x


def _backend_matmul(a, b):
    if keras.backend.backend() == "torch":
        import torch
        return torch.matmul(a, b)
    import jax.numpy as jnp
    return jnp.matmul(a, b)


def _replica_context():
    """The tf.distribute replica context a synchronized BatchNormalization runs in (TF backend only)."""
    import tensorflow as tf
    return tf.distribute.get_replica_context()


def _global_moments(x, local_count, context, axis):
    """Mean, biased variance and sample count of the global batch, in two all-reduces: the sums
    with the count, then the squared deviations from the global mean. Keras' own synchronized
    moments are one pass, E[x^2] - E[x]^2: the forward is close, but in float32 the gradient
    through that difference cancels where the mean is large next to the spread, and ResNet-18's
    first-step gradients came out 0.36 off (docs/distributed.md)."""
    import tensorflow as tf
    axes = [a for a in range(len(x.shape)) if a != axis % len(x.shape)]
    total = tf.distribute.ReduceOp.SUM
    sums, count = context.all_reduce(total, [tf.reduce_sum(x, axis=axes), local_count])
    mean = sums / count
    variance = context.all_reduce(total, tf.reduce_sum(tf.square(x - mean), axis=axes)) / count
    return mean, variance, count


def backend_float(x):
    # BN statistics in float32 at least, as Keras computes them for half-precision inputs.
    return "float64" if keras.backend.standardize_dtype(x.dtype) == "float64" else "float32"


def batch_norm(x, *, name, eps=1e-5, momentum=0.1):
    """torch.nn.BatchNorm2d(eps, momentum): Keras counts momentum the other way (0.1 -> 0.9),
    defaults to epsilon 1e-3 (torch 1e-5) and keeps a biased running variance (fixed above)."""
    return TorchBatchNormalization(axis=-1, epsilon=eps, momentum=1.0 - momentum, name=name)(x)


def max_pool(x, kernel_size, stride=None, padding=0, *, name, ceil_mode=False):
    """torch.nn.MaxPool2d: -inf padding; ceil_mode adds -inf rows at the bottom/right."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride or kernel_size), _pair(padding)
    extra_h = _ceil_extra(x.shape[1], kh, sh, ph) if ceil_mode else 0
    extra_w = _ceil_extra(x.shape[2], kw, sw, pw) if ceil_mode else 0
    if ph or pw or extra_h or extra_w:
        x = NegInfPadding2D(((ph, ph + extra_h), (pw, pw + extra_w)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D((kh, kw), (sh, sw), padding="valid", name=name)(x)


def _ceil_extra(size, k, s, p):
    if size is None:
        raise ValueError("ceil_mode pooling needs a static input size; build the model with input_shape=(H, W, C)")
    out = -(-(size + 2 * p - k) // s) + 1
    if (out - 1) * s >= size + p:  # torch drops a last window that would start in the padding
        out -= 1
    return max((out - 1) * s + k - (size + 2 * p), 0)


def relu(x, name=None):
    return layers.ReLU(name=name)(x)


def global_avg_pool(x, *, name):
    """Global average pooling to (N, C). Pooling with keepdims, then flattening, lets tf2onnx
    cancel its layout transpose; GlobalAveragePooling2D alone leaves one in the ONNX graph."""
    x = GlobalAvgPool2D(keepdims=True, name=name)(x)
    return layers.Flatten(name=f"{name}_flatten")(x)


@keras.saving.register_keras_serializable(package="cnn_parity")
class GlobalAvgPool2D(layers.GlobalAveragePooling2D):
    """keras.layers.GlobalAveragePooling2D, kept float64 in a float64 model on every backend:
    its ops.mean computes in result_type(x, float32) (_float64_outside_tensorflow; ResNet-18's
    fc 2.1e-8 off on the torch backend). A float64 map is averaged by `mean` instead."""

    def call(self, inputs):
        if not _float64_outside_tensorflow(inputs):
            return super().call(inputs)
        return mean(inputs, axis=(1, 2) if self.data_format == "channels_last" else (2, 3), keepdims=self.keepdims)


def mean(x, axis=None, keepdims=False):
    """ops.mean, but a float64 x is summed and divided outside TensorFlow, where ops.mean
    computes in result_type(x, float32) (_float64_outside_tensorflow)."""
    if not _float64_outside_tensorflow(x):
        return ops.mean(x, axis=axis, keepdims=keepdims)
    axes = range(len(x.shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
    count = 1
    for a in axes:
        count *= ops.shape(x)[a]
    return ops.sum(x, axis=axis, keepdims=keepdims) / count


def float64_rounding_layers(model) -> list[tuple[str, str]]:
    """(layer name, the keras_impl layer that keeps float64) for each of Keras' own Dense,
    GlobalAveragePooling2D and BatchNormalization in `model` that rounds a float64 model to
    float32 on this backend (_float64_outside_tensorflow; none on tensorflow)."""
    if keras.backend.backend() == "tensorflow":
        return []
    safe = (Linear, GlobalAvgPool2D, TorchBatchNormalization)
    kinds = ((layers.Dense, "Linear"), (layers.GlobalAveragePooling2D, "GlobalAvgPool2D"),
             (layers.BatchNormalization, "TorchBatchNormalization"))
    return [(layer.name, replacement) for layer in model._flatten_layers(include_self=False)
            if not isinstance(layer, safe) for kind, replacement in kinds if isinstance(layer, kind)]


def adaptive_bins(size, bins):
    """torch's AdaptiveAvgPool bins: [floor(i*size/bins), ceil((i+1)*size/bins)) for each i."""
    return [((i * size) // bins, -(-((i + 1) * size) // bins)) for i in range(bins)]


@keras.saving.register_keras_serializable(package="cnn_parity")
class AdaptiveAvgPool2D(layers.Layer):
    """torch.nn.AdaptiveAvgPool2d on NHWC, with torch's bin boundaries.

    Bins overlap and differ in size when the input does not divide the output, so no single
    average pool expresses it: each axis is averaged bin by bin. H and W may be unknown
    while the graph is built; the bins then follow the runtime size.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _pair(output_size)

    def call(self, x):
        _, h, w, _ = ops.shape(x)  # ints when static, scalar tensors in a graph of unknown size
        oh, ow = self.output_size
        if isinstance(h, int) and isinstance(w, int) and h % oh == 0 and w % ow == 0:
            window = (h // oh, w // ow)
            return x if window == (1, 1) else ops.average_pool(x, window, window, padding="valid")
        return _mean_over_bins(_mean_over_bins(x, 1, h, oh), 2, w, ow)

    def compute_output_shape(self, shape):
        return (shape[0], *self.output_size, shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def _mean_over_bins(x, axis, size, bins):
    if isinstance(size, int) and size == bins:
        return x
    parts = []
    for start, end in adaptive_bins(size, bins):
        window = [slice(None)] * 4
        window[axis] = slice(start, end)
        parts.append(mean(x[tuple(window)], axis=axis, keepdims=True))
    return ops.concatenate(parts, axis=axis)
