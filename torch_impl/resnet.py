"""ResNet v1, ResNeXt and Wide ResNet (torchvision layout: module paths are the weight keys).

Stride sits on the 3x3 conv of the bottleneck ("v1.5"), as in torchvision.

`resnet18_d2l` is seed 003's (d2l) ResNet-18 for one input channel and 10 classes: d2l's
`Residual` (conv1 -> bn1 -> ReLU -> conv2 -> bn2, every conv with a bias, and where the shape
changes a strided 1x1 `conv3` on the shortcut, without BatchNorm), paths conv1, bn1 (the stem,
its conv with a bias), layer1..layer4.<unit>.{conv1,bn1,conv2,bn2,conv3}, fc.

`resnet50_blocks` is seed 000's ResNet-50 with its own names: `conv.conv.{0,1}` (conv + BN, and
no ReLU after the stem, as written), block1..block4 of `Seed000Bottleneck` units
(`bottleneck.{0,2,4}.conv.{0,1}`, ReLUs at 1 and 3, stride on the 3x3; `downsample.conv.{0,1}`
where the channels change), then `nn.AvgPool2d(4)`: on the 7x7 map of a 224 input it averages
the top-left 4x4 window only (97..224 px give a 1x1 output), and `classifier`.
"""
from typing import NamedTuple

import torch
from torch import nn

from ._common import check_input


class Stage(NamedTuple):
    planes: int
    blocks: int
    stride: int


def conv3x3(in_ch, out_ch, stride=1, groups=1, dilation=1):
    return nn.Conv2d(in_ch, out_ch, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)


def conv1x1(in_ch, out_ch, stride=1):
    return nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        if groups != 1 or base_width != 64 or dilation != 1:
            raise ValueError("BasicBlock supports only groups=1, base_width=64 and dilation=1")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(nn.Module):
    def __init__(self, name, block, depths, *, num_classes=1000, include_top=True, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, zero_init_residual=False):
        super().__init__()
        self.arch, self.include_top = name, include_top
        self.groups, self.base_width = groups, width_per_group
        self.inplanes, self.dilation = 64, 1
        dilate = replace_stride_with_dilation or (False, False, False)
        if len(dilate) != 3:
            raise ValueError(f"{name}: replace_stride_with_dilation needs 3 booleans; got {dilate!r}")
        stages = [Stage(64 * 2 ** i, n, 1 if i == 0 else 2) for i, n in enumerate(depths)]

        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.layer1 = self._make_layer(block, stages[0])
        self.layer2 = self._make_layer(block, stages[1], dilate[0])
        self.layer3 = self._make_layer(block, stages[2], dilate[1])
        self.layer4 = self._make_layer(block, stages[3], dilate[2])
        if include_top:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block, stage, dilate=False):
        stride, previous_dilation = stage.stride, self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        downsample = None
        if stride != 1 or self.inplanes != stage.planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, stage.planes * block.expansion, stride),
                                       nn.BatchNorm2d(stage.planes * block.expansion))
        units = [block(self.inplanes, stage.planes, stride, downsample, self.groups, self.base_width,
                       previous_dilation)]
        self.inplanes = stage.planes * block.expansion
        units += [block(self.inplanes, stage.planes, groups=self.groups, base_width=self.base_width,
                        dilation=self.dilation) for _ in range(1, stage.blocks)]
        return nn.Sequential(*units)

    def _init_weights(self, zero_init_residual):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last_bn = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
                if last_bn is not None:
                    nn.init.zeros_(last_bn.weight)

    def forward_features(self, x):
        check_input(x, self.arch, "conv1", 3)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        x = self.forward_features(x)
        if not self.include_top:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))


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


class Residual(nn.Module):
    """d2l's residual unit: convs with bias, a 1x1 conv3 (no BatchNorm) on a changed shortcut."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(in_channels, channels, 1, stride) if stride != 1 or in_channels != channels else None

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.conv3 is None else self.conv3(x)))


class ResNetD2L(nn.Module):
    def __init__(self, *, in_channels=1, num_classes=10):
        super().__init__()
        self.arch, self.in_channels = "resnet18_d2l", in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.layer1 = nn.Sequential(Residual(64, 64), Residual(64, 64))
        self.layer2 = nn.Sequential(Residual(64, 128, 2), Residual(128, 128))
        self.layer3 = nn.Sequential(Residual(128, 256, 2), Residual(256, 256))
        self.layer4 = nn.Sequential(Residual(256, 512, 2), Residual(512, 512))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18_d2l(**kwargs):
    return ResNetD2L(**kwargs)


class ConvBN(nn.Module):
    """seed 000's BasicConv2d for its ResNet: conv (no bias) + BatchNorm in one Sequential (`conv.0`, `conv.1`)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
                                  nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return self.conv(x)


class Seed000Bottleneck(nn.Module):
    """seed 000's bottleneck unit: bottleneck.{0,2,4} (1x1, 3x3 carrying the stride, 1x1) with
    ReLUs between; a `downsample` (strided 1x1 conv + BN) where the channels change."""

    def __init__(self, in_channels, mid_channels, out_channels, stride=1):
        super().__init__()
        self.bottleneck = nn.Sequential(ConvBN(in_channels, mid_channels, 1), nn.ReLU(),
                                        ConvBN(mid_channels, mid_channels, 3, stride, padding=1), nn.ReLU(),
                                        ConvBN(mid_channels, out_channels, 1))
        self.downsample = ConvBN(in_channels, out_channels, 1, stride) if in_channels != out_channels else None

    def forward(self, x):
        return torch.relu(self.bottleneck(x) + (x if self.downsample is None else self.downsample(x)))


class BlockStage(NamedTuple):
    mid_channels: int
    out_channels: int
    units: int
    stride: int


SEED000_STAGES = (BlockStage(64, 256, 3, 1), BlockStage(128, 512, 4, 2), BlockStage(256, 1024, 6, 2),
                  BlockStage(512, 2048, 3, 2))


class ResNet50Blocks(nn.Module):
    def __init__(self, *, num_classes=1000):
        super().__init__()
        self.arch = "resnet50_blocks"
        self.conv = ConvBN(3, 64, 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for i, stage in enumerate(SEED000_STAGES, start=1):
            units = [Seed000Bottleneck(in_channels if u == 0 else stage.out_channels, stage.mid_channels,
                                       stage.out_channels, stage.stride if u == 0 else 1) for u in range(stage.units)]
            setattr(self, f"block{i}", nn.Sequential(*units))
            in_channels = stage.out_channels
        self.avgpool = nn.AvgPool2d(4)
        self.classifier = nn.Linear(2048, num_classes)

    def forward(self, x):
        check_input(x, self.arch, "conv.conv.0", 3)
        x = self.maxpool(self.conv(x))
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


def resnet50_blocks(**kwargs):
    return ResNet50Blocks(**kwargs)
