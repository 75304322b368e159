"""ResNet v1, ResNeXt and Wide ResNet (torchvision layout: attribute paths are the weight keys).

Stride sits on the 3x3 conv of the bottleneck ("v1.5"), as in torchvision.

`resnet18_d2l`: seed 003's (d2l) ResNet-18 with its `Residual` (convs with bias, a 1x1 conv3
without BatchNorm on a changed shortcut), one input channel, 10 classes (torch_impl/resnet.py).

`resnet50_blocks`: seed 000's ResNet-50 with its own names (torch_impl/resnet.py): conv.conv.{0,1},
block1..block4 of bottleneck.{0,2,4} units with a downsample where the channels change, no ReLU
after the stem, and AvgPool2d(4), which on a 7x7 map averages the top-left 4x4 window only.
"""
from typing import NamedTuple

import tensorflow as tf

from .layers import BatchNorm2d, Conv2d, Linear, avg_pool2d, check_input, global_avg_pool, max_pool2d, relu


class Stage(NamedTuple):
    planes: int
    blocks: int
    stride: int


def conv3x3(in_ch, out_ch, stride=1, groups=1, dilation=1):
    return Conv2d(in_ch, out_ch, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)


def conv1x1(in_ch, out_ch, stride=1):
    return Conv2d(in_ch, out_ch, 1, stride, bias=False)


class BasicBlock(tf.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        if groups != 1 or base_width != 64 or dilation != 1:
            raise ValueError("BasicBlock supports only groups=1, base_width=64 and dilation=1")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = downsample

    def __call__(self, x, training=False):
        shortcut = x if self.downsample is None else _run_downsample(self.downsample, x, training)
        y = tf.nn.relu(self.bn1(self.conv1(x), training))
        y = self.bn2(self.conv2(y), training)
        return tf.nn.relu(y + shortcut)


class Bottleneck(tf.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def __call__(self, x, training=False):
        shortcut = x if self.downsample is None else _run_downsample(self.downsample, x, training)
        y = tf.nn.relu(self.bn1(self.conv1(x), training))
        y = tf.nn.relu(self.bn2(self.conv2(y), training))
        y = self.bn3(self.conv3(y), training)
        return tf.nn.relu(y + shortcut)


def _run_downsample(downsample, x, training):
    conv, bn = downsample
    return bn(conv(x), training)


class ResNet(tf.Module):
    def __init__(self, name, block, depths, *, num_classes=1000, include_top=True, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, zero_init_residual=False):
        super().__init__(name=name)
        self.arch, self.include_top = name, include_top
        self.groups, self.base_width = groups, width_per_group
        self.inplanes, self.dilation = 64, 1
        dilate = replace_stride_with_dilation or (False, False, False)
        if len(dilate) != 3:
            raise ValueError(f"{name}: replace_stride_with_dilation needs 3 booleans; got {dilate!r}")
        stages = [Stage(64 * 2 ** i, n, 1 if i == 0 else 2) for i, n in enumerate(depths)]

        self.conv1 = Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.layer1 = self._make_layer(block, stages[0])
        self.layer2 = self._make_layer(block, stages[1], dilate[0])
        self.layer3 = self._make_layer(block, stages[2], dilate[1])
        self.layer4 = self._make_layer(block, stages[3], dilate[2])
        if include_top:
            self.fc = Linear(512 * block.expansion, num_classes)
        if zero_init_residual:
            self._zero_last_norms()

    def _zero_last_norms(self):
        """zero_init_residual: the last BatchNorm of every residual branch starts with scale 0,
        so each block starts as its shortcut."""
        for unit in (u for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for u in stage):
            last = unit.bn3 if isinstance(unit, Bottleneck) else unit.bn2
            last.weight.assign(tf.zeros_like(last.weight))

    def _make_layer(self, block, stage, dilate=False):
        stride, previous_dilation = stage.stride, self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        downsample = None
        if stride != 1 or self.inplanes != stage.planes * block.expansion:
            downsample = [conv1x1(self.inplanes, stage.planes * block.expansion, stride),
                          BatchNorm2d(stage.planes * block.expansion)]
        units = [block(self.inplanes, stage.planes, stride, downsample, self.groups, self.base_width,
                       previous_dilation)]
        self.inplanes = stage.planes * block.expansion
        units += [block(self.inplanes, stage.planes, groups=self.groups, base_width=self.base_width,
                        dilation=self.dilation) for _ in range(1, stage.blocks)]
        return units

    def forward_features(self, x, training=False):
        check_input(x, self.arch, "conv1", 3)
        x = tf.nn.relu(self.bn1(self.conv1(x), training))
        x = max_pool2d(x, 3, 2, padding=1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for unit in stage:
                x = unit(x, training)
        return x

    def __call__(self, x, training=False):
        x = self.forward_features(x, training)
        if not self.include_top:
            return x
        return self.fc(global_avg_pool(x))


def resnet18(**kwargs):
    return ResNet("resnet18", BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs):
    return ResNet("resnet34", BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs):
    return ResNet("resnet50", Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs):
    return ResNet("resnet101", Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs):
    return ResNet("resnet152", Bottleneck, [3, 8, 36, 3], **kwargs)


def resnext50_32x4d(**kwargs):
    return ResNet("resnext50_32x4d", Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(**kwargs):
    return ResNet("resnext101_32x8d", Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)


def resnext101_64x4d(**kwargs):
    return ResNet("resnext101_64x4d", Bottleneck, [3, 4, 23, 3], groups=64, width_per_group=4, **kwargs)


def wide_resnet50_2(**kwargs):
    return ResNet("wide_resnet50_2", Bottleneck, [3, 4, 6, 3], width_per_group=128, **kwargs)


def wide_resnet101_2(**kwargs):
    return ResNet("wide_resnet101_2", Bottleneck, [3, 4, 23, 3], width_per_group=128, **kwargs)


class Residual(tf.Module):
    """d2l's residual unit: convs with bias, a 1x1 conv3 (no BatchNorm) on a changed shortcut."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = Conv2d(in_channels, channels, 3, stride, padding=1)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, padding=1)
        self.bn2 = BatchNorm2d(channels)
        self.conv3 = Conv2d(in_channels, channels, 1, stride) if stride != 1 or in_channels != channels else None

    def __call__(self, x, training=False):
        y = self.bn2(self.conv2(tf.nn.relu(self.bn1(self.conv1(x), training))), training)
        return tf.nn.relu(y + (x if self.conv3 is None else self.conv3(x)))


class ResNetD2L(tf.Module):
    def __init__(self, *, in_channels=1, num_classes=10):
        super().__init__(name="resnet18_d2l")
        self.arch, self.in_channels = "resnet18_d2l", in_channels
        self.conv1 = Conv2d(in_channels, 64, 7, 2, padding=3)
        self.bn1 = BatchNorm2d(64)
        self.layer1 = [Residual(64, 64), Residual(64, 64)]
        self.layer2 = [Residual(64, 128, 2), Residual(128, 128)]
        self.layer3 = [Residual(128, 256, 2), Residual(256, 256)]
        self.layer4 = [Residual(256, 512, 2), Residual(512, 512)]
        self.fc = Linear(512, num_classes)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = max_pool2d(tf.nn.relu(self.bn1(self.conv1(x), training)), 3, 2, padding=1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for unit in stage:
                x = unit(x, training)
        return self.fc(global_avg_pool(x))


def resnet18_d2l(**kwargs):
    return ResNetD2L(**kwargs)


class ConvBN(tf.Module):
    """seed 000's BasicConv2d for its ResNet: conv (no bias) + BatchNorm in one list (`conv.0`, `conv.1`)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = [Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
                     BatchNorm2d(out_channels)]

    def __call__(self, x, training=False):
        conv, bn = self.conv
        return bn(conv(x), training)


class Seed000Bottleneck(tf.Module):
    """seed 000's bottleneck unit: bottleneck.{0,2,4} (1x1, 3x3 carrying the stride, 1x1) with
    ReLUs between; a `downsample` (strided 1x1 conv + BN) where the channels change."""

    def __init__(self, in_channels, mid_channels, out_channels, stride=1):
        super().__init__()
        self.bottleneck = [ConvBN(in_channels, mid_channels, 1), relu,
                           ConvBN(mid_channels, mid_channels, 3, stride, padding=1), relu,
                           ConvBN(mid_channels, out_channels, 1)]
        self.downsample = ConvBN(in_channels, out_channels, 1, stride) if in_channels != out_channels else None

    def __call__(self, x, training=False):
        y = x
        for unit in self.bottleneck:
            y = unit(y, training) if isinstance(unit, ConvBN) else unit(y)
        return tf.nn.relu(y + (x if self.downsample is None else self.downsample(x, training)))


class BlockStage(NamedTuple):
    mid_channels: int
    out_channels: int
    units: int
    stride: int


SEED000_STAGES = (BlockStage(64, 256, 3, 1), BlockStage(128, 512, 4, 2), BlockStage(256, 1024, 6, 2),
                  BlockStage(512, 2048, 3, 2))


class ResNet50Blocks(tf.Module):
    def __init__(self, *, num_classes=1000):
        super().__init__(name="resnet50_blocks")
        self.arch = "resnet50_blocks"
        self.conv = ConvBN(3, 64, 7, stride=2, padding=3)
        in_channels = 64
        for i, stage in enumerate(SEED000_STAGES, start=1):
            units = [Seed000Bottleneck(in_channels if u == 0 else stage.out_channels, stage.mid_channels,
                                       stage.out_channels, stage.stride if u == 0 else 1) for u in range(stage.units)]
            setattr(self, f"block{i}", units)
            in_channels = stage.out_channels
        self.classifier = Linear(2048, num_classes)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "conv.conv.0", 3)
        x = max_pool2d(self.conv(x, training), 3, 2, padding=1)
        for unit in self.block1 + self.block2 + self.block3 + self.block4:
            x = unit(x, training)
        x = avg_pool2d(x, 4)  # 1x1 from 97..224 px; a larger map flattens wider than the classifier takes
        # a static width (no run-time Shape): tf2onnx then folds its layout transpose into this Reshape
        return self.classifier(tf.reshape(x, [-1, x.shape[1] * x.shape[2] * x.shape[3]]))


def resnet50_blocks(**kwargs):
    return ResNet50Blocks(**kwargs)
