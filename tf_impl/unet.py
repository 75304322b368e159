"""U-Net (Ronneberger et al., 2015) with padded 3x3 convs, so the output has the input's size.

Attribute paths (= canonical keys, defined in torch_impl/unet.py):
  encoder.{i}.conv1, .bn1, .conv2, .bn2    i = 0..depth (depth = bottleneck)
  decoder.{j}.up      ConvTranspose2d(2x2, stride 2)            (bilinear=False)
  decoder.{j}.reduce  1x1 Conv2d after bilinear x2 upsampling   (bilinear=True)
  decoder.{j}.conv1, .bn1, .conv2, .bn2    on concat([skip, upsampled]), deepest first
  head                1x1 Conv2d to num_classes

Bilinear x2 is tf.image.resize(method="bilinear", antialias=False): half-pixel centres,
which equal torch's align_corners=False when upsampling. An upsampled map one row/col
short of its skip is zero-padded, floor(diff/2) top/left and the rest bottom/right.
"""
import tensorflow as tf

from .layers import BatchNorm2d, Conv2d, ConvTranspose2d, check_input, max_pool2d


class DoubleConv(tf.Module):
    """(3x3 conv, [BN], ReLU) twice."""

    def __init__(self, in_ch, out_ch, batch_norm=True):
        super().__init__()
        self.conv1 = Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm)
        self.bn1 = BatchNorm2d(out_ch) if batch_norm else None
        self.conv2 = Conv2d(out_ch, out_ch, 3, padding=1, bias=not batch_norm)
        self.bn2 = BatchNorm2d(out_ch) if batch_norm else None

    def __call__(self, x, training=False):
        x = self.conv1(x)
        x = tf.nn.relu(x if self.bn1 is None else self.bn1(x, training))
        x = self.conv2(x)
        return tf.nn.relu(x if self.bn2 is None else self.bn2(x, training))


class UpBlock(DoubleConv):
    """Upsample x2 to half the channels, pad to the skip, concat([skip, up]), DoubleConv."""

    def __init__(self, in_ch, out_ch, batch_norm=True, bilinear=False):
        super().__init__(in_ch, out_ch, batch_norm)
        self.bilinear = bilinear
        if bilinear:
            self.reduce = Conv2d(in_ch, out_ch, 1)
        else:
            self.up = ConvTranspose2d(in_ch, out_ch, 2, stride=2)

    def upsample(self, x):
        if self.bilinear:
            size = 2 * tf.shape(x)[1:3]
            return self.reduce(resize_bilinear(x, size))
        return self.up(x)

    def __call__(self, x, skip, training=False):
        x = pad_to_match(self.upsample(x), skip)
        return super().__call__(tf.concat([skip, x], axis=-1), training)


def resize_bilinear(x, size):
    """tf.image.resize(bilinear, half-pixel centres), in x's dtype. TF's bilinear kernel
    computes and returns float32 whatever its input, so a float64 map is interpolated here
    with the same formula (two taps per axis, the source clamped to the edges)."""
    if x.dtype != tf.float64:
        return tf.image.resize(x, size, method="bilinear", antialias=False)
    for axis in (1, 2):
        x = _interpolate_axis(x, axis, size[axis - 1])
    return x


def _interpolate_axis(x, axis, out_size):
    in_size = tf.shape(x)[axis]
    scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    source = tf.maximum((tf.cast(tf.range(out_size), tf.float64) + 0.5) * scale - 0.5, 0.0)
    low = tf.minimum(tf.cast(tf.floor(source), tf.int32), in_size - 1)
    high = tf.minimum(low + 1, in_size - 1)
    weight = source - tf.cast(low, tf.float64)
    shape = [1, -1, 1, 1] if axis == 1 else [1, 1, -1, 1]
    weight = tf.reshape(weight, shape)
    return tf.gather(x, low, axis=axis) * (1.0 - weight) + tf.gather(x, high, axis=axis) * weight


def pad_to_match(x, ref):
    """Zero-pad x's H, W to ref's: floor(diff/2) top/left, the rest bottom/right."""
    x_hw, ref_hw = tf.TensorShape(x.shape[1:3]), tf.TensorShape(ref.shape[1:3])
    if x_hw.is_fully_defined() and x_hw == ref_hw:  # nothing to pad: keep the graph free of a Pad
        return x
    dh = tf.shape(ref)[1] - tf.shape(x)[1]
    dw = tf.shape(ref)[2] - tf.shape(x)[2]
    return tf.pad(x, [[0, 0], [dh // 2, dh - dh // 2], [dw // 2, dw - dw // 2], [0, 0]])


class UNet(tf.Module):
    def __init__(self, name="unet", *, depth=4, base_width=64, in_channels=3, num_classes=2,
                 batch_norm=True, bilinear=False):
        super().__init__(name=name)
        if depth < 1:
            raise ValueError(f"{name}: depth must be at least 1; got {depth}")
        self.arch, self.in_channels = name, in_channels
        widths = [base_width * 2 ** i for i in range(depth + 1)]
        self.encoder = [DoubleConv(c_in, c_out, batch_norm)
                        for c_in, c_out in zip([in_channels, *widths[:-1]], widths)]
        self.decoder = [UpBlock(widths[i + 1], widths[i], batch_norm, bilinear) for i in reversed(range(depth))]
        self.head = Conv2d(widths[0], num_classes, 1)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "encoder.0.conv1", self.in_channels)
        skips = []
        x = self.encoder[0](x, training)
        for block in self.encoder[1:]:
            skips.append(x)
            x = block(max_pool2d(x, 2), training)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(x, skip, training)
        return self.head(x)


def unet(**kwargs):
    return UNet("unet", **kwargs)


def unet_bilinear(**kwargs):
    return UNet("unet_bilinear", bilinear=True, **kwargs)
