"""Layers as small tf.Modules with torch-named variables in TF layouts.

Conv2d.weight is (kH, kW, I/g, O); Linear.weight is (in, out); ConvTranspose2d.weight is
(kH, kW, O/g, I). Every spatial padding is explicit and symmetric, as torch pads.
"""
import math

import numpy as np
import tensorflow as tf


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _he_normal(shape, fan_in):
    return tf.random.normal(shape, stddev=math.sqrt(2.0 / max(fan_in, 1)))


def _nhwc_pads(ph, pw):
    return [[0, 0], [ph, ph], [pw, pw], [0, 0]]


class WeightedLayer(tf.Module):
    """The base of the layers that hold weights (those named_layers yields): calling one runs
    its forward(). A watcher set with watch() sees each call's input before the layer runs and
    its output after, as torch's forward hooks do (parity's layer-by-layer diagnosis), with no
    class patched; unwatched, a call costs one dictionary lookup."""

    def __call__(self, x, *args, **kwargs):
        watcher = self.__dict__.get("_watcher")
        if watcher is not None:
            watcher(self, x, None)
        y = self.forward(x, *args, **kwargs)
        if watcher is not None:
            watcher(self, x, y)
        return y

    def watch(self, watcher):
        """`watcher(layer, x, y)`: called with y None before the layer runs, then with its
        output; watch(None) stops. Kept outside tf.Module's tracking (not a checkpoint value)."""
        if watcher is None:
            self.__dict__.pop("_watcher", None)
        else:
            object.__setattr__(self, "_watcher", watcher)


class Conv2d(WeightedLayer):
    layout = {"weight": "conv"}

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True):
        super().__init__()
        kh, kw = _pair(kernel_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: channels {in_channels}->{out_channels} not divisible by groups={groups}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.pads = _nhwc_pads(*self.padding) if any(self.padding) else "VALID"
        fan_in = kh * kw * in_channels // groups
        self.weight = tf.Variable(_he_normal([kh, kw, in_channels // groups, out_channels], fan_in), name="weight")
        self.bias = tf.Variable(tf.zeros([out_channels]), name="bias") if bias else None

    def forward(self, x):
        if self.groups > 1 and x.dtype == tf.float64:
            y = self._per_group(x)
        else:
            y = tf.nn.conv2d(x, self.weight, strides=self.stride, padding=self.pads, dilations=self.dilation)
        return y if self.bias is None else tf.nn.bias_add(y, self.bias)

    def _per_group(self, x):
        """One convolution per group, concatenated: TF's CPU kernels have no float64 gradient for
        a grouped convolution ("Gradients for grouped convolutions are not supported on CPU")."""
        pieces = zip(tf.split(x, self.groups, axis=-1), tf.split(self.weight, self.groups, axis=-1))
        return tf.concat([tf.nn.conv2d(xi, wi, strides=self.stride, padding=self.pads, dilations=self.dilation)
                          for xi, wi in pieces], axis=-1)


class ConvTranspose2d(WeightedLayer):
    layout = {"weight": "conv_transpose"}

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, bias=True):
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.out_channels = out_channels
        self.kernel, self.stride = (kh, kw), _pair(stride)
        self.padding, self.output_padding = _pair(padding), _pair(output_padding)
        self.weight = tf.Variable(_he_normal([kh, kw, out_channels, in_channels], kh * kw * in_channels), name="weight")
        self.bias = tf.Variable(tf.zeros([out_channels]), name="bias") if bias else None

    def forward(self, x):
        # Full transposed conv (VALID), then crop `padding` from both sides and keep
        # `output_padding` extra rows/cols at the bottom/right, exactly torch's size rule.
        n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        (kh, kw), (sh, sw) = self.kernel, self.stride
        full_h, full_w = (h - 1) * sh + kh, (w - 1) * sw + kw
        y = tf.nn.conv2d_transpose(x, self.weight, tf.stack([n, full_h, full_w, self.out_channels]),
                                   strides=self.stride, padding="VALID")
        (ph, pw), (oh, ow) = self.padding, self.output_padding
        y = tf.pad(y, [[0, 0], [0, oh], [0, ow], [0, 0]]) if oh or ow else y
        y = y[:, ph:full_h + oh - ph, pw:full_w + ow - pw, :]
        return y if self.bias is None else tf.nn.bias_add(y, self.bias)


class BatchNorm2d(WeightedLayer):
    """torch.nn.BatchNorm2d: batch statistics when training, running statistics updated with
    torch's rule (momentum 0.1 = the new batch's share, unbiased variance). A frozen layer
    (frozen=True, set by tf_impl.train for a frozen backbone) always runs in inference mode."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        self.eps, self.momentum, self.frozen = eps, momentum, False
        self.weight = tf.Variable(tf.ones([num_features]), name="weight") if affine else None
        self.bias = tf.Variable(tf.zeros([num_features]), name="bias") if affine else None
        self.running_mean = tf.Variable(tf.zeros([num_features]), trainable=False, name="running_mean")
        self.running_var = tf.Variable(tf.ones([num_features]), trainable=False, name="running_var")

    def forward(self, x, training=False):
        if not training or self.frozen:
            return tf.nn.batch_normalization(x, self.running_mean, self.running_var,
                                             self.bias, self.weight, self.eps)
        mean, var = tf.nn.moments(x, axes=[0, 1, 2])
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
        unbiased = var * count / tf.maximum(count - 1.0, 1.0)  # torch tracks the unbiased variance
        self.running_mean.assign_sub(self.momentum * (self.running_mean - mean))
        self.running_var.assign_sub(self.momentum * (self.running_var - unbiased))
        return tf.nn.batch_normalization(x, mean, var, self.bias, self.weight, self.eps)


class Linear(WeightedLayer):
    layout = {"weight": "linear"}

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = tf.Variable(tf.random.uniform([in_features, out_features], -bound, bound), name="weight")
        self.bias = tf.Variable(tf.random.uniform([out_features], -bound, bound), name="bias") if bias else None

    def forward(self, x):
        y = tf.matmul(x, self.weight)
        return y if self.bias is None else y + self.bias


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """torch.nn.MaxPool2d: padding counts as -inf; ceil_mode adds -inf rows at the bottom/right."""
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride or kernel_size)
    ph, pw = _pair(padding)
    extra_h, extra_w = (_ceil_extra(x.shape[1], kh, sh, ph), _ceil_extra(x.shape[2], kw, sw, pw)) if ceil_mode else (0, 0)
    if ph or pw or extra_h or extra_w:
        x = tf.pad(x, [[0, 0], [ph, ph + extra_h], [pw, pw + extra_w], [0, 0]], constant_values=-np.inf)
    return tf.nn.max_pool2d(x, (kh, kw), (sh, sw), "VALID")


def _ceil_extra(size, k, s, p):
    """Rows to add at the end so a VALID pool gives torch's ceil_mode output size."""
    out = -(-(size + 2 * p - k) // s) + 1
    if (out - 1) * s >= size + p:  # torch drops a last window that would start in the padding
        out -= 1
    return max((out - 1) * s + k - (size + 2 * p), 0)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride or kernel_size), _pair(padding)
    if not (ph or pw):
        return tf.nn.avg_pool2d(x, (kh, kw), (sh, sw), "VALID")
    padded = tf.pad(x, _nhwc_pads(ph, pw))
    if count_include_pad:
        return tf.nn.avg_pool2d(padded, (kh, kw), (sh, sw), "VALID")
    summed = tf.nn.avg_pool2d(padded, (kh, kw), (sh, sw), "VALID") * (kh * kw)
    ones = tf.pad(tf.ones_like(x[:1, :, :, :1]), _nhwc_pads(ph, pw))
    counts = tf.nn.avg_pool2d(ones, (kh, kw), (sh, sw), "VALID") * (kh * kw)
    return summed / counts


def adaptive_avg_pool2d(x, output_size):
    """torch bins: start = floor(i*H/out), end = ceil((i+1)*H/out); needs a static H, W."""
    oh, ow = _pair(output_size)
    h, w = x.shape[1], x.shape[2]
    if h % oh == 0 and w % ow == 0:
        return tf.nn.avg_pool2d(x, (h // oh, w // ow), (h // oh, w // ow), "VALID")
    rows = [tf.reduce_mean(x[:, (i * h) // oh:-(-((i + 1) * h) // oh)], axis=1, keepdims=True) for i in range(oh)]
    x = tf.concat(rows, axis=1)
    cols = [tf.reduce_mean(x[:, :, (j * w) // ow:-(-((j + 1) * w) // ow)], axis=2, keepdims=True) for j in range(ow)]
    return tf.concat(cols, axis=2)


def global_avg_pool(x):
    """(N, H, W, C) -> (N, C). Reducing with keepdims, then reshaping, lets tf2onnx cancel its
    layout transpose; a plain reduce_mean over H, W leaves one in the ONNX graph."""
    return tf.reshape(tf.reduce_mean(x, axis=[1, 2], keepdims=True), [-1, x.shape[-1]])


def flatten_chw(x):
    """Flatten a feature map in torch's (C, H, W) order."""
    return tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [tf.shape(x)[0], -1])


def check_input(x, model, first_layer, channels):
    """Raise a ValueError naming the model, its first layer and the bad shape or dtype."""
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[-1] != channels:
        raise ValueError(f"{model}: layer '{first_layer}' expects input (N, H, W, {channels}) (NHWC); got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{model}: layer '{first_layer}' got an empty batch, shape {shape}")
    if not tf.as_dtype(x.dtype).is_floating:
        raise ValueError(f"{model}: layer '{first_layer}' expects a floating-point input; got {tf.as_dtype(x.dtype).name}")


class Dropout:
    """torch.nn.Dropout: active only when training. While `masks` is set (train.injected_dropout), a
    training call multiplies by masks(shape, rate) (already scaled by 1/(1-rate)), fetched each
    time the step runs, instead of drawing from TF's RNG; `per_replica` (tf.distribute):
    masks(shape, rate, replica), this replica's rows of the global batch's mask."""

    def __init__(self, rate=0.5):
        self.rate, self.masks, self.per_replica = rate, None, False

    def __call__(self, x, training=False):
        if not training or self.rate == 0:
            return x
        if self.masks is None:
            return tf.nn.dropout(x, rate=self.rate)
        # The masks are looked up when the step runs, not when it was traced: a trainer whose
        # compiled step is reused with other masks (a replica's rows, a new run) draws from those.
        current = lambda *args: self.masks(*args)  # noqa: E731
        mask = tf.cast(fetch_mask(current, self.rate, tf.shape(x), self.per_replica), x.dtype)  # exact in float64
        return x * tf.reshape(mask, tf.shape(x))


def fetch_mask(masks, rate, shape, per_replica=False):
    """masks(...) as a graph op that runs every step (not once at trace time)."""
    if not per_replica:
        return tf.numpy_function(lambda s: masks(s, rate), [shape], tf.float32, stateful=True)
    replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
    return tf.numpy_function(lambda s, r: masks(s, rate, int(r)), [shape, replica], tf.float32, stateful=True)


def dropout_layers(module):
    """Every Dropout of a tf_impl model, walked as named_layers walks it."""
    if isinstance(module, Dropout):
        yield module
        return
    children = module if isinstance(module, (list, tuple)) else (v for _, v in _attributes(module))
    for child in children:
        if isinstance(child, (tf.Module, list, tuple, Dropout)):
            yield from dropout_layers(child)


def named_layers(module, prefix=""):
    """Yield (torch-style path, leaf layer) for every weighted layer, like torch's named_modules."""
    if isinstance(module, WeightedLayer):
        yield prefix, module
        return
    children = enumerate(module) if isinstance(module, (list, tuple)) else _attributes(module)
    for key, child in children:
        if isinstance(child, (tf.Module, list, tuple)):
            yield from named_layers(child, f"{prefix}.{key}" if prefix else str(key))


def _attributes(module):
    return ((k, v) for k, v in vars(module).items() if not k.startswith("_"))


def to_dtype(module, dtype):
    """Every variable of every weighted layer recreated in `dtype` (values cast), in place:
    tf_impl's counterpart of torch's `module.to(torch.float64)`. The ops follow their inputs'
    dtype, so a float64 model computes in float64 throughout (see unet.resize_bilinear for
    the one TF op that does not). Returns the module."""
    dtype = tf.as_dtype(dtype)
    for _, layer in named_layers(module):
        for name in ("weight", "bias", "running_mean", "running_var"):
            var = getattr(layer, name, None)
            if var is not None and var.dtype != dtype:
                setattr(layer, name, tf.Variable(tf.cast(var, dtype), trainable=var.trainable, name=name))
    return module


def dtype_of(module):
    """The dtype of a model's variables (tf.float32 unless to_dtype changed it)."""
    return next((layer.weight.dtype for _, layer in named_layers(module)), tf.float32)


def relu(x):
    """tf.nn.relu, looked up at call time: a layer list holding this (like torch's nn.ReLU in a
    Sequential) follows tf.nn.relu if it is wrapped or patched later (parity selftest does)."""
    return tf.nn.relu(x)
