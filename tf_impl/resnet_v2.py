"""Pre-activation ResNet v2 (He et al., "Identity Mappings in Deep Residual Networks").

TF-slim's resnet_v2 in TF2: stage specs as data (`Block(name, unit_fn, args)`), a
`conv2d_same` helper with explicit symmetric padding, residual units as small modules.
Layout of keras.applications' ResNet50V2, so its weights load: BN-ReLU pre-activation in
every unit, stride on the *last* unit of a stage, projection shortcut from the
pre-activated input, strided identity shortcut as a 1x1 max-pool, BN-ReLU after the last
stage. BN epsilon 1.001e-5; a conv not followed by a BN has a bias.

Attribute paths are the torch module paths of torch_impl/resnet_v2.py (conv1,
layerS.i.preact, layerS.i.downsample, layerS.i.conv1 ... conv3, post_bn, fc).
The stem pads with zeros before its max-pool, exactly as keras.applications does.
"""
from typing import NamedTuple

import tensorflow as tf

from .layers import BatchNorm2d, Conv2d, Linear, check_input, global_avg_pool

BN_EPS = 1.001e-5  # keras.applications' epsilon; its weights were trained with it


class Unit(NamedTuple):
    depth: int  # output channels
    depth_bottleneck: int  # channels inside the unit
    stride: int


class Block(NamedTuple):
    name: str  # attribute path of the stage
    unit_fn: type
    args: list  # one Unit per residual unit


def stage_units(width, units, stride, expansion):
    """TF-slim's stage spec: every unit at stride 1 except the last."""
    depth = width * expansion
    return [Unit(depth, width, 1)] * (units - 1) + [Unit(depth, width, stride)]


def resnet_v2_blocks(unit_fn, units_per_stage):
    strides = (2, 2, 2, 1)
    return [Block(f"layer{i + 1}", unit_fn, stage_units(64 * 2 ** i, n, strides[i], unit_fn.expansion))
            for i, n in enumerate(units_per_stage)]


def make_layer(block, in_ch):
    """One stage: a unit per spec in block.args, each fed by the previous one's depth."""
    units = []
    for unit in block.args:
        units.append(block.unit_fn(in_ch, *unit))
        in_ch = unit.depth
    return units


def batch_norm(channels):
    return BatchNorm2d(channels, eps=BN_EPS)


def conv2d_same(in_ch, out_ch, kernel_size, stride=1, bias=False):
    """A conv with symmetric (k - 1) // 2 zero padding: TF-slim's conv2d_same for odd kernels."""
    if kernel_size % 2 == 0:
        raise ValueError(f"conv2d_same pads symmetrically and needs an odd kernel; got {kernel_size}")
    return Conv2d(in_ch, out_ch, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=bias)


def zero_padded_max_pool(x, kernel_size=3, stride=2, padding=1):
    """keras.applications' stem pool: zero padding, then a VALID max-pool (not -inf padding)."""
    x = tf.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    return tf.nn.max_pool2d(x, kernel_size, stride, "VALID")


def subsample(x, stride):
    """The strided identity shortcut: a 1x1 max-pool, i.e. every stride-th pixel."""
    return x if stride == 1 else tf.nn.max_pool2d(x, 1, stride, "VALID")


class BottleneckV2(tf.Module):
    expansion = 4

    def __init__(self, in_ch, depth, depth_bottleneck, stride):
        super().__init__()
        self.stride = stride
        self.preact = batch_norm(in_ch)
        self.downsample = conv2d_same(in_ch, depth, 1, stride, bias=True) if in_ch != depth else None
        self.conv1 = conv2d_same(in_ch, depth_bottleneck, 1)
        self.bn1 = batch_norm(depth_bottleneck)
        self.conv2 = conv2d_same(depth_bottleneck, depth_bottleneck, 3, stride)
        self.bn2 = batch_norm(depth_bottleneck)
        self.conv3 = conv2d_same(depth_bottleneck, depth, 1, bias=True)

    def __call__(self, x, training=False):
        preact = tf.nn.relu(self.preact(x, training))
        shortcut = subsample(x, self.stride) if self.downsample is None else self.downsample(preact)
        y = tf.nn.relu(self.bn1(self.conv1(preact), training))
        y = tf.nn.relu(self.bn2(self.conv2(y), training))
        return shortcut + self.conv3(y)


class BasicV2(tf.Module):
    expansion = 1

    def __init__(self, in_ch, depth, depth_bottleneck, stride):
        super().__init__()
        self.stride = stride
        self.preact = batch_norm(in_ch)
        self.downsample = conv2d_same(in_ch, depth, 1, stride, bias=True) if in_ch != depth else None
        self.conv1 = conv2d_same(in_ch, depth_bottleneck, 3, stride)
        self.bn1 = batch_norm(depth_bottleneck)
        self.conv2 = conv2d_same(depth_bottleneck, depth, 3, bias=True)

    def __call__(self, x, training=False):
        preact = tf.nn.relu(self.preact(x, training))
        shortcut = subsample(x, self.stride) if self.downsample is None else self.downsample(preact)
        y = tf.nn.relu(self.bn1(self.conv1(preact), training))
        return shortcut + self.conv2(y)


class ResNetV2(tf.Module):
    def __init__(self, name, blocks, *, num_classes=1000, include_top=True):
        super().__init__(name=name)
        self.arch, self.include_top = name, include_top
        self._stage_names = [block.name for block in blocks]
        self.conv1 = conv2d_same(3, 64, 7, stride=2, bias=True)
        channels = 64
        for block in blocks:
            setattr(self, block.name, make_layer(block, channels))
            channels = block.args[-1].depth
        self.post_bn = batch_norm(channels)
        if include_top:
            self.fc = Linear(channels, num_classes)

    def forward_features(self, x, training=False):
        check_input(x, self.arch, "conv1", 3)
        x = zero_padded_max_pool(self.conv1(x))
        for name in self._stage_names:
            for unit in getattr(self, name):
                x = unit(x, training)
        return tf.nn.relu(self.post_bn(x, training))

    def __call__(self, x, training=False):
        x = self.forward_features(x, training)
        if not self.include_top:
            return x
        return self.fc(global_avg_pool(x))


def resnet18_v2(**kwargs):
    return ResNetV2("resnet18_v2", resnet_v2_blocks(BasicV2, [2, 2, 2, 2]), **kwargs)


def resnet34_v2(**kwargs):
    return ResNetV2("resnet34_v2", resnet_v2_blocks(BasicV2, [3, 4, 6, 3]), **kwargs)


def resnet50_v2(**kwargs):
    return ResNetV2("resnet50_v2", resnet_v2_blocks(BottleneckV2, [3, 4, 6, 3]), **kwargs)


def resnet101_v2(**kwargs):
    return ResNetV2("resnet101_v2", resnet_v2_blocks(BottleneckV2, [3, 4, 23, 3]), **kwargs)


def resnet152_v2(**kwargs):
    return ResNetV2("resnet152_v2", resnet_v2_blocks(BottleneckV2, [3, 8, 36, 3]), **kwargs)
