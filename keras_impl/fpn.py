"""ResNet + Feature Pyramid Network, in the layout of torchvision's `resnet_fpn_backbone`.

Layer names (= canonical keys):
  body.*                      the ResNet trunk without avgpool/fc (conv1 ... layer4)
  fpn.inner_blocks.{i}.0      1x1 lateral conv of stage i (layer{i+1}), with bias
  fpn.layer_blocks.{i}.0      3x3 output conv of level i, padding 1, with bias

Outputs (a list, NHWC), finest first: p2, p3, p4, p5 and pool = max-pool(p5, 1, stride 2).
The top-down path upsamples with TorchNearestResize (torch's nearest rule), not
UpSampling2D/Resizing, whose coordinate rules differ at odd sizes.

fpn_shared_head: seed 000's FPN (torch_impl/fpn.py): a ResNet-50 trunk named as torchvision's
(conv1 ... layer4), laterals C2toM2 .. C5toM5, one 3x3 conv layer MtoP called on every level,
and TorchBilinearCornersResize (align_corners=True; Keras' bilinear resizes use half-pixel
centres). Outputs p2..p5.
"""
import keras
from keras import layers, ops

from .features import resnet_stage_tensors, with_name_prefix
from .layers import conv2d
from .resnet import resnet18, resnet34, resnet50, resnet101

OUTPUT_NAMES = ("p2", "p3", "p4", "p5", "pool")


def torch_nearest_indices(in_size, out_size):
    """Source index of every output row under torch's F.interpolate(mode="nearest", size=...):
    src = min(floor(dst * scale), in - 1) with scale = in / out computed in float32."""
    scale = ops.divide(ops.cast(in_size, "float32"), ops.cast(out_size, "float32"))
    src = ops.floor(ops.multiply(ops.cast(ops.arange(out_size), "float32"), scale))
    return ops.minimum(ops.cast(src, "int32"), in_size - 1)


@keras.saving.register_keras_serializable(package="cnn_parity")
class TorchNearestResize(layers.Layer):
    """[x, ref] -> x resized (nearest, torch's rule) to ref's H, W, as two gathers."""

    def call(self, inputs):
        x, ref = inputs
        x = ops.take(x, torch_nearest_indices(ops.shape(x)[1], ops.shape(ref)[1]), axis=1)
        return ops.take(x, torch_nearest_indices(ops.shape(x)[2], ops.shape(ref)[2]), axis=2)

    def compute_output_shape(self, input_shape):
        x, ref = input_shape
        return (x[0], ref[1], ref[2], x[3])


def corner_aligned_sources(in_size, out_size, dtype="float32"):
    """Under align_corners=True output index i reads src = i * (in - 1) / (out - 1), computed in
    the map's dtype as torch's kernel does: (lower index, upper index, weight of the upper)."""
    scale = ops.divide(ops.cast(in_size - 1, dtype), ops.cast(ops.maximum(out_size - 1, 1), dtype))
    src = ops.multiply(ops.cast(ops.arange(out_size), dtype), scale)
    lower = ops.cast(src, "int32")  # src >= 0: truncation is floor
    return lower, ops.minimum(lower + 1, in_size - 1), ops.subtract(src, ops.cast(lower, dtype))


@keras.saving.register_keras_serializable(package="cnn_parity")
class TorchBilinearCornersResize(layers.Layer):
    """[x, ref] -> x resized to ref's H, W as F.upsample_bilinear does (bilinear, align_corners=True):
    along W, then along H, as torch's kernel weighs them (h0 * (w0 * a + w1 * b) + h1 * (...))."""

    def call(self, inputs):
        x, ref = inputs
        x = self._lerp(x, 2, ops.shape(ref)[2])
        return self._lerp(x, 1, ops.shape(ref)[1])

    @staticmethod
    def _lerp(x, axis, out_size):
        lower, upper, weight = corner_aligned_sources(ops.shape(x)[axis], out_size, x.dtype)
        weight = ops.reshape(weight, (-1, 1, 1) if axis == 1 else (-1, 1))
        return ops.add(ops.multiply(ops.take(x, lower, axis=axis), ops.subtract(1.0, weight)),
                       ops.multiply(ops.take(x, upper, axis=axis), weight))

    def compute_output_shape(self, input_shape):
        x, ref = input_shape
        return (x[0], ref[1], ref[2], x[3])


def feature_pyramid(features, out_channels=256, name="fpn"):
    """features: stage outputs, finest first -> pyramid levels, finest first, plus the pooled level."""
    last = len(features) - 1
    top = conv2d(features[last], out_channels, 1, name=f"{name}.inner_blocks.{last}.0")
    levels = [conv2d(top, out_channels, 3, padding=1, name=f"{name}.layer_blocks.{last}.0")]
    for i in range(last - 1, -1, -1):
        lateral = conv2d(features[i], out_channels, 1, name=f"{name}.inner_blocks.{i}.0")
        upsampled = TorchNearestResize(name=f"{name}.upsample{i}")([top, lateral])
        top = layers.Add(name=f"{name}.merge{i}")([lateral, upsampled])
        levels.insert(0, conv2d(top, out_channels, 3, padding=1, name=f"{name}.layer_blocks.{i}.0"))
    levels.append(layers.MaxPooling2D(1, 2, padding="valid", name=f"{name}.pool")(levels[-1]))
    return levels


def resnet_fpn(name, trunk_builder, *, out_channels=256, input_shape=None, **trunk_kwargs):
    trunk = with_name_prefix(trunk_builder(include_top=False, input_shape=input_shape, **trunk_kwargs), "body.")
    features = list(resnet_stage_tensors(trunk, prefix="body.").values())
    return keras.Model(trunk.input, feature_pyramid(features, out_channels), name=name)


def fpn_shared_head(*, out_channels=256, input_shape=None):
    trunk = resnet50(include_top=False, input_shape=input_shape)
    c2, c3, c4, c5 = resnet_stage_tensors(trunk).values()
    m5 = conv2d(c5, out_channels, 1, name="C5toM5")
    m4 = _upsample_add(m5, conv2d(c4, out_channels, 1, name="C4toM4"), "M4")
    m3 = _upsample_add(m4, conv2d(c3, out_channels, 1, name="C3toM3"), "M3")
    m2 = _upsample_add(m3, conv2d(c2, out_channels, 1, name="C2toM2"), "M2")
    shared = layers.Conv2D(out_channels, 3, padding="same", name="MtoP")  # one layer, called on every level
    return keras.Model(trunk.input, [shared(m) for m in (m2, m3, m4, m5)], name="fpn_shared_head")


def _upsample_add(top, lateral, name):
    return layers.Add(name=f"{name}.add")([TorchBilinearCornersResize(name=f"{name}.upsample")([top, lateral]), lateral])


def resnet18_fpn(**kwargs):
    return resnet_fpn("resnet18_fpn", resnet18, **kwargs)


def resnet34_fpn(**kwargs):
    return resnet_fpn("resnet34_fpn", resnet34, **kwargs)


def resnet50_fpn(**kwargs):
    return resnet_fpn("resnet50_fpn", resnet50, **kwargs)


def resnet101_fpn(**kwargs):
    return resnet_fpn("resnet101_fpn", resnet101, **kwargs)
