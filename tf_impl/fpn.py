"""ResNet + Feature Pyramid Network, in the layout of torchvision's `resnet_fpn_backbone`.

Attribute paths (= canonical keys):
  body.*                      the ResNet trunk without fc (conv1 ... layer4), BatchNorm2d
  fpn.inner_blocks.{i}.0      1x1 lateral conv of stage i (layer{i+1}), with bias
  fpn.layer_blocks.{i}.0      3x3 output conv of level i, padding 1, with bias

Outputs (NHWC), finest first: p2, p3, p4, p5 and pool = max_pool2d(p5, kernel 1, stride 2).
The top-down path upsamples with torch's nearest rule, not tf.image.resize's (see
torch_nearest_indices).

fpn_shared_head: seed 000's FPN (torch_impl/fpn.py): a ResNet-50 trunk at the top level (conv1 ...
layer4), laterals C2toM2 .. C5toM5, one 3x3 conv MtoP for every level, and bilinear upsampling
with align_corners=True written out (resize_bilinear_corners): tf.image.resize's bilinear uses
half-pixel centres. Outputs p2..p5.
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


def corner_aligned_sources(in_size, out_size, dtype=tf.float32):
    """Under align_corners=True output index i reads src = i * (in - 1) / (out - 1), computed in
    the map's dtype as torch's kernel does: (lower index, upper index, weight of the upper)."""
    scale = tf.cast(in_size - 1, dtype) / tf.cast(tf.maximum(out_size - 1, 1), dtype)
    src = tf.cast(tf.range(out_size), dtype) * scale
    lower = tf.cast(src, tf.int32)  # src >= 0: truncation is floor
    return lower, tf.minimum(lower + 1, in_size - 1), src - tf.cast(lower, dtype)


def _lerp_axis(x, axis, out_size):
    lower, upper, weight = corner_aligned_sources(spatial_size(x)[axis - 1], out_size, x.dtype)
    weight = tf.reshape(weight, [-1, 1] if axis == 1 else [-1])[..., tf.newaxis]
    return tf.gather(x, lower, axis=axis) * (1 - weight) + tf.gather(x, upper, axis=axis) * weight


def resize_bilinear_corners(x, size):
    """NHWC bilinear resize with align_corners=True, torch's rule: along W, then along H, as
    torch's kernel weighs them (h0 * (w0 * a + w1 * b) + h1 * (...))."""
    return _lerp_axis(_lerp_axis(x, 2, size[1]), 1, size[0])


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


class SharedHeadFPN(tf.Module):
    def __init__(self, *, out_channels=256):
        super().__init__(name="fpn_shared_head")
        self.arch = "fpn_shared_head"
        trunk = resnet50(include_top=False)
        self.conv1, self.bn1 = trunk.conv1, trunk.bn1
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.MtoP = Conv2d(out_channels, out_channels, 3, padding=1)  # one conv, shared by the four levels
        self.C2toM2 = Conv2d(256, out_channels, 1)
        self.C3toM3 = Conv2d(512, out_channels, 1)
        self.C4toM4 = Conv2d(1024, out_channels, 1)
        self.C5toM5 = Conv2d(2048, out_channels, 1)

    def __call__(self, x, training=False):
        c2, c3, c4, c5 = resnet_stage_features(self, x, training=training).values()
        m5 = self.C5toM5(c5)
        m4 = self._upsample_add(m5, self.C4toM4(c4))
        m3 = self._upsample_add(m4, self.C3toM3(c3))
        m2 = self._upsample_add(m3, self.C2toM2(c2))
        return [self.MtoP(m) for m in (m2, m3, m4, m5)]

    @staticmethod
    def _upsample_add(top, lateral):
        return resize_bilinear_corners(top, spatial_size(lateral)) + lateral


def fpn_shared_head(**kwargs):
    return SharedHeadFPN(**kwargs)


def resnet18_fpn(**kwargs):
    return ResNetFPN("resnet18_fpn", resnet18, **kwargs)


def resnet34_fpn(**kwargs):
    return ResNetFPN("resnet34_fpn", resnet34, **kwargs)


def resnet50_fpn(**kwargs):
    return ResNetFPN("resnet50_fpn", resnet50, **kwargs)


def resnet101_fpn(**kwargs):
    return ResNetFPN("resnet101_fpn", resnet101, **kwargs)
