"""ResNet + Feature Pyramid Network, in the layout of torchvision's `resnet_fpn_backbone`.

Layer names (= canonical keys):
  body.*                      the ResNet trunk without avgpool/fc (conv1 ... layer4)
  fpn.inner_blocks.{i}.0      1x1 lateral conv of stage i (layer{i+1}), with bias
  fpn.layer_blocks.{i}.0      3x3 output conv of level i, padding 1, with bias

Outputs (a list, NHWC), finest first: p2, p3, p4, p5 and pool = max-pool(p5, 1, stride 2).
The top-down path upsamples with TorchNearestResize (torch's nearest rule), not
UpSampling2D/Resizing, whose coordinate rules differ at odd sizes.
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


def resnet18_fpn(**kwargs):
    return resnet_fpn("resnet18_fpn", resnet18, **kwargs)


def resnet34_fpn(**kwargs):
    return resnet_fpn("resnet34_fpn", resnet34, **kwargs)


def resnet50_fpn(**kwargs):
    return resnet_fpn("resnet50_fpn", resnet50, **kwargs)


def resnet101_fpn(**kwargs):
    return resnet_fpn("resnet101_fpn", resnet101, **kwargs)
