"""ResNet + Feature Pyramid Network, in the layout of torchvision's `resnet_fpn_backbone`.

Attribute paths (= canonical keys):
  body.*                      the ResNet trunk without fc (conv1 ... layer4), BatchNorm2d
  fpn.inner_blocks.{i}.0      1x1 lateral conv of stage i (layer{i+1}), with bias
  fpn.layer_blocks.{i}.0      3x3 output conv of level i, padding 1, with bias

Outputs (NHWC), finest first: p2, p3, p4, p5 and pool = max_pool2d(p5, kernel 1, stride 2).
The top-down path upsamples with torch's nearest rule, not tf.image.resize's (see
torch_nearest_indices).
"""
import tensorflow as tf

from .features import resnet_stage_features
from .layers import Conv2d, max_pool2d
from .resnet import resnet18, resnet34, resnet50, resnet101

OUTPUT_NAMES = ("p2", "p3", "p4", "p5", "pool")


def torch_nearest_indices(in_size, out_size):
    """Source index of every output row under torch's F.interpolate(mode="nearest", size=...):
    src = min(floor(dst * scale), in - 1) with scale = in / out computed in float32.
    tf.image.resize(method="nearest") uses other coordinates and differs at odd sizes."""
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    src = tf.floor(tf.cast(tf.range(out_size), tf.float32) * scale)
    return tf.minimum(tf.cast(src, tf.int32), in_size - 1)


def spatial_size(x):
    """(H, W) as Python ints where the graph knows them (the indices then fold to constants), else tensors."""
    dynamic = tf.shape(x)
    return tuple(dynamic[axis] if x.shape[axis] is None else x.shape[axis] for axis in (1, 2))


def resize_nearest(x, size):
    """NHWC nearest resize to size (H, W), torch's rule, as two gathers (ONNX: Gather)."""
    in_h, in_w = spatial_size(x)
    x = tf.gather(x, torch_nearest_indices(in_h, size[0]), axis=1)
    return tf.gather(x, torch_nearest_indices(in_w, size[1]), axis=2)


class FeaturePyramid(tf.Module):
    def __init__(self, in_channels_list, out_channels=256):
        super().__init__()
        self.inner_blocks = [[Conv2d(c, out_channels, 1)] for c in in_channels_list]
        self.layer_blocks = [[Conv2d(out_channels, out_channels, 3, padding=1)] for _ in in_channels_list]

    def __call__(self, features):
        """features: stage outputs, finest first -> pyramid levels, finest first, plus the pooled level."""
        top = self.inner_blocks[-1][0](features[-1])
        levels = [self.layer_blocks[-1][0](top)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[i][0](features[i])
            top = lateral + resize_nearest(top, spatial_size(lateral))
            levels.insert(0, self.layer_blocks[i][0](top))
        levels.append(max_pool2d(levels[-1], 1, 2))
        return levels


class ResNetFPN(tf.Module):
    def __init__(self, name, trunk_builder, *, out_channels=256, **trunk_kwargs):
        super().__init__(name=name)
        self.arch = name
        self.body = trunk_builder(include_top=False, **trunk_kwargs)
        c2 = self.body.inplanes // 8  # layer4 has 8x the channels of layer1
        self.fpn = FeaturePyramid([c2, c2 * 2, c2 * 4, c2 * 8], out_channels)

    def __call__(self, x, training=False):
        features = resnet_stage_features(self.body, x, training=training)
        return self.fpn(list(features.values()))


def resnet18_fpn(**kwargs):
    return ResNetFPN("resnet18_fpn", resnet18, **kwargs)


def resnet34_fpn(**kwargs):
    return ResNetFPN("resnet34_fpn", resnet34, **kwargs)


def resnet50_fpn(**kwargs):
    return ResNetFPN("resnet50_fpn", resnet50, **kwargs)


def resnet101_fpn(**kwargs):
    return ResNetFPN("resnet101_fpn", resnet101, **kwargs)
