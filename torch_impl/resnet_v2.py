"""Pre-activation ResNet v2 (He et al., "Identity Mappings in Deep Residual Networks").

Layout of TF-slim's resnet_v2 and keras.applications' ResNet50V2, so that model's
weights load: BN-ReLU pre-activation in every unit, stride on the *last* unit of a
stage, projection shortcut from the pre-activated input, strided identity shortcut as a
1x1 max-pool, BN-ReLU after the last stage. BN epsilon 1.001e-5; a conv that is not
followed by a BN carries a bias.

Module paths (the canonical weight keys; torchvision has no ResNet v2, so they are
defined here once and never renamed):

    conv1                       7x7/2 conv with bias, no BN or ReLU after it
    layer{1..4}.{i}.preact      BN of the unit's pre-activation (BN-ReLU)
    layer{1..4}.{i}.downsample  1x1 projection conv with bias (only where depth changes)
    layer{1..4}.{i}.conv1, .bn1, .conv2, .bn2, .conv3
                                bottleneck: 1x1, 3x3 (stride here), 1x1 with bias
    layer{1..4}.{i}.conv1, .bn1, .conv2
                                basic unit: 3x3 (stride here), 3x3 with bias
    post_bn                     BN before the final ReLU and global pooling
    fc                          classifier

The stem pads with *zeros* before its 3x3/2 max-pool, as keras.applications does; its
input can be negative (no ReLU before it), so torch's -inf-padded MaxPool2d(padding=1)
would compute something else.
"""
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ._common import check_input

BN_EPS = 1.001e-5  # keras.applications' epsilon; its weights were trained with it


class Unit(NamedTuple):
    depth: int  # output channels
    depth_bottleneck: int  # channels inside the unit
    stride: int


class Block(NamedTuple):
    name: str  # module path of the stage
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
    return nn.Sequential(*units)


def batch_norm(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def conv2d_same(in_ch, out_ch, kernel_size, stride=1, bias=False):
    """A conv with symmetric (k - 1) // 2 zero padding: TF-slim's conv2d_same for odd kernels."""
    if kernel_size % 2 == 0:
        raise ValueError(f"conv2d_same pads symmetrically and needs an odd kernel; got {kernel_size}")
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=bias)


def zero_padded_max_pool(x, kernel_size=3, stride=2, padding=1):
    """keras.applications' stem pool: ZeroPadding2D, then a VALID max-pool (not MaxPool2d(padding=1))."""
    return F.max_pool2d(F.pad(x, (padding,) * 4), kernel_size, stride)


def subsample(x, stride):
    """The strided identity shortcut: a 1x1 max-pool, i.e. every stride-th pixel."""
    return x if stride == 1 else F.max_pool2d(x, 1, stride)


class BottleneckV2(nn.Module):
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

    def forward(self, x):
        preact = F.relu(self.preact(x))
        shortcut = subsample(x, self.stride) if self.downsample is None else self.downsample(preact)
        y = F.relu(self.bn1(self.conv1(preact)))
        y = F.relu(self.bn2(self.conv2(y)))
        return shortcut + self.conv3(y)


class BasicV2(nn.Module):
    expansion = 1

    def __init__(self, in_ch, depth, depth_bottleneck, stride):
        super().__init__()
        self.stride = stride
        self.preact = batch_norm(in_ch)
        self.downsample = conv2d_same(in_ch, depth, 1, stride, bias=True) if in_ch != depth else None
        self.conv1 = conv2d_same(in_ch, depth_bottleneck, 3, stride)
        self.bn1 = batch_norm(depth_bottleneck)
        self.conv2 = conv2d_same(depth_bottleneck, depth, 3, bias=True)

    def forward(self, x):
        preact = F.relu(self.preact(x))
        shortcut = subsample(x, self.stride) if self.downsample is None else self.downsample(preact)
        y = F.relu(self.bn1(self.conv1(preact)))
        return shortcut + self.conv2(y)


class ResNetV2(nn.Module):
    def __init__(self, name, blocks, *, num_classes=1000, include_top=True):
        super().__init__()
        self.arch, self.include_top = name, include_top
        self._stage_names = [block.name for block in blocks]
        self.conv1 = conv2d_same(3, 64, 7, stride=2, bias=True)
        channels = 64
        for block in blocks:
            self.add_module(block.name, make_layer(block, channels))
            channels = block.args[-1].depth
        self.post_bn = batch_norm(channels)
        if include_top:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x):
        check_input(x, self.arch, "conv1", 3)
        x = zero_padded_max_pool(self.conv1(x))
        for name in self._stage_names:
            x = getattr(self, name)(x)
        return F.relu(self.post_bn(x))

    def forward(self, x):
        x = self.forward_features(x)
        if not self.include_top:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))


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
