"""U-Net (Ronneberger et al., 2015) with padded 3x3 convs, so the output has the input's size.

Layer names (= canonical keys, defined in torch_impl/unet.py):
  encoder.{i}.conv1, .bn1, .conv2, .bn2    i = 0..depth (depth = bottleneck)
  decoder.{j}.up      ConvTranspose2d(2x2, stride 2)            (bilinear=False)
  decoder.{j}.reduce  1x1 Conv2d after bilinear x2 upsampling   (bilinear=True)
  decoder.{j}.conv1, .bn1, .conv2, .bn2    on concat([skip, upsampled]), deepest first
  head                1x1 Conv2d to num_classes

Bilinear x2 is UpSampling2D(interpolation="bilinear"): half-pixel centres, which equal
torch's align_corners=False when upsampling. Its kernel computes in float32 whatever the
input, so a float64 model (built under floatx("float64")) upsamples with BilinearUpsample2x,
the same formula in the map's dtype (tf_impl/unet.py's resize_bilinear is its twin).
An upsampled map one row/col short of its skip is zero-padded (PadToMatch), floor(diff/2)
top/left and the rest bottom/right.
"""
import keras
from keras import layers, ops

from .layers import _pair, batch_norm, conv2d, relu


@keras.saving.register_keras_serializable(package="cnn_parity")
class TorchConvTranspose2D(layers.Conv2DTranspose):
    """Conv2DTranspose with torch.nn.ConvTranspose2d's `padding` and `output_padding`:
    out = (in - 1) * stride - 2 * padding + kernel + output_padding.

    The full (VALID) transposed conv, `output_padding` zero rows/cols appended at the
    bottom/right, `padding` cropped from both sides, then the bias (so appended rows hold
    the bias, as in torch). Keras' own output_padding (or a kernel smaller than the
    stride) asks TF for a larger-than-full output, which tf2onnx turns into negative
    ConvTranspose pads that onnx.checker rejects; this form exports.
    Weight: Keras (kH, kW, O, I) <-> torch (I, O, kH, kW), no flip."""

    def __init__(self, filters, kernel_size, strides=1, torch_padding=0, torch_output_padding=0, **kwargs):
        for keras_only in ("padding", "output_padding", "data_format"):
            kwargs.pop(keras_only, None)
        super().__init__(filters, kernel_size, strides=strides, padding="valid", data_format="channels_last",
                         **kwargs)
        self.torch_padding, self.torch_output_padding = _pair(torch_padding), _pair(torch_output_padding)
        if any(o >= s for o, s in zip(self.torch_output_padding, self.strides)):
            raise ValueError(f"{self.name}: output_padding {self.torch_output_padding} must be smaller "
                             f"than the stride {self.strides}")

    def call(self, inputs):
        y = ops.conv_transpose(inputs, self.kernel, strides=self.strides, padding="valid", output_padding=0,
                               data_format="channels_last", dilation_rate=self.dilation_rate)
        (ph, pw), (oh, ow) = self.torch_padding, self.torch_output_padding
        if oh or ow:
            y = ops.pad(y, [[0, 0], [0, oh], [0, ow], [0, 0]])
        if ph or pw:
            y = y[:, ph:ops.shape(y)[1] - ph, pw:ops.shape(y)[2] - pw, :]
        return y if self.bias is None else ops.add(y, self.bias)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        sizes = [None if size is None else (size - 1) * s + (k - 1) * d + 1 + o - 2 * p
                 for size, s, k, d, o, p in zip((h, w), self.strides, self.kernel_size, self.dilation_rate,
                                                self.torch_output_padding, self.torch_padding)]
        return (n, *sizes, self.filters)

    def get_config(self):
        return {**super().get_config(), "torch_padding": self.torch_padding,
                "torch_output_padding": self.torch_output_padding}


def conv_transpose2d(x, filters, kernel_size, *, name, stride=1, padding=0, output_padding=0, bias=True):
    """torch.nn.ConvTranspose2d (groups=1, dilation=1) as a TorchConvTranspose2D layer."""
    return TorchConvTranspose2D(filters, kernel_size, strides=stride, torch_padding=padding,
                                torch_output_padding=output_padding, use_bias=bias, name=name)(x)


@keras.saving.register_keras_serializable(package="cnn_parity")
class PadToMatch(layers.Layer):
    """[x, ref] -> x zero-padded to ref's H, W: floor(diff/2) top/left, the rest bottom/right."""

    def call(self, inputs):
        x, ref = inputs
        dh = ops.shape(ref)[1] - ops.shape(x)[1]
        dw = ops.shape(ref)[2] - ops.shape(x)[2]
        return ops.pad(x, [[0, 0], [dh // 2, dh - dh // 2], [dw // 2, dw - dw // 2], [0, 0]])

    def compute_output_shape(self, input_shape):
        x, ref = input_shape
        return (x[0], ref[1], ref[2], x[3])


def double_conv(x, channels, *, name, batch_norm_on=True):
    """(3x3 conv, [BN], ReLU) twice."""
    for k in (1, 2):
        x = conv2d(x, channels, 3, padding=1, bias=not batch_norm_on, name=f"{name}.conv{k}")
        x = relu(batch_norm(x, name=f"{name}.bn{k}") if batch_norm_on else x)
    return x


@keras.saving.register_keras_serializable(package="cnn_parity")
class BilinearUpsample2x(layers.Layer):
    """x2 bilinear upsampling with half-pixel centres in the input's dtype: along each axis,
    out[2i] = 0.75 x[i] + 0.25 x[i-1] and out[2i+1] = 0.75 x[i] + 0.25 x[i+1], the
    neighbours clamped at the edges (torch's align_corners=False)."""

    def call(self, x):
        for axis in (1, 2):
            x = _upsample_axis(x, axis)
        return x

    def compute_output_shape(self, shape):
        double = lambda n: None if n is None else 2 * n  # noqa: E731
        return (shape[0], double(shape[1]), double(shape[2]), shape[3])


def _upsample_axis(x, axis):
    n = ops.shape(x)[axis]
    take = lambda start, stop: ops.take(x, ops.arange(start, stop), axis=axis)  # noqa: E731
    previous = ops.concatenate([take(0, 1), take(0, n - 1)], axis=axis)
    following = ops.concatenate([take(1, n), take(n - 1, n)], axis=axis)
    even, odd = 0.75 * x + 0.25 * previous, 0.75 * x + 0.25 * following
    doubled = list(ops.shape(x))
    doubled[axis] = 2 * n
    return ops.reshape(ops.stack([even, odd], axis=axis + 1), doubled)


def up_block(x, skip, channels, *, name, batch_norm_on=True, bilinear=False):
    """Upsample x2 to `channels`, pad to the skip, concat([skip, up]), double conv."""
    if bilinear:
        if keras.config.floatx() == "float64":  # UpSampling2D computes in float32
            x = BilinearUpsample2x(name=f"{name}.upsample")(x)
        else:
            x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}.upsample")(x)
        x = conv2d(x, channels, 1, name=f"{name}.reduce")
    else:
        x = conv_transpose2d(x, channels, 2, stride=2, name=f"{name}.up")
    x = PadToMatch(name=f"{name}.pad")([x, skip])
    x = layers.Concatenate(axis=-1, name=f"{name}.cat")([skip, x])
    return double_conv(x, channels, name=name, batch_norm_on=batch_norm_on)


def unet_model(name="unet", *, depth=4, base_width=64, in_channels=3, num_classes=2, batch_norm=True,
               bilinear=False, input_shape=None):
    if depth < 1:
        raise ValueError(f"{name}: depth must be at least 1; got {depth}")
    widths = [base_width * 2 ** i for i in range(depth + 1)]
    inputs = keras.Input(shape=input_shape or (None, None, in_channels), name="input")
    skips = []
    x = double_conv(inputs, widths[0], name="encoder.0", batch_norm_on=batch_norm)
    for i in range(1, depth + 1):
        skips.append(x)
        x = layers.MaxPooling2D(2, 2, padding="valid", name=f"encoder.{i}.pool")(x)
        x = double_conv(x, widths[i], name=f"encoder.{i}", batch_norm_on=batch_norm)
    for j, skip in enumerate(reversed(skips)):
        x = up_block(x, skip, widths[depth - 1 - j], name=f"decoder.{j}", batch_norm_on=batch_norm,
                     bilinear=bilinear)
    return keras.Model(inputs, conv2d(x, num_classes, 1, name="head"), name=name)


def unet(**kwargs):
    return unet_model("unet", **kwargs)


def unet_bilinear(**kwargs):
    return unet_model("unet_bilinear", bilinear=True, **kwargs)
