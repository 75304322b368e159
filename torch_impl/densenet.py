"""DenseNet-BC 121/161/169/201 (torchvision layout: module paths are the weight keys).

`features` holds conv0, norm0, relu0, pool0, denseblock1, transition1, ..., denseblock4,
norm5; each dense layer is BN-ReLU-conv1x1(bn_size * growth)-BN-ReLU-conv3x3(growth) and
its output is concatenated to its input. The `*_keras` builders reproduce
keras.applications' DenseNets: BN epsilon 1.001e-5 and zero padding before the stem
max-pool (see docs/densenet.md).

`densenet_d2l` is seed 003's (d2l) small DenseNet for one input channel and 10 classes: a stem
conv (with bias) -> bn1 -> ReLU -> 3x3/2 max pool (padded by 1), four dense blocks of 4 units
BN-ReLU-conv3x3(growth 32, with bias), transitions BN-ReLU-conv1x1 (with bias)-avgpool 2
halving the channels (64 -> 192 -> 96 -> 224 -> 112 -> 240 -> 120 -> 248), then bn, ReLU,
global average pool and fc. Paths: conv1, bn1, dense<k>.<unit>.{bn,conv},
transition<k>.{bn,conv}, bn, fc.
"""
from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ._common import check_input

POOL0_PADDINGS = ("neg_inf", "zero")
KERAS_APPLICATIONS = {"bn_eps": 1.001e-5, "pool0_padding": "zero"}


class Config(NamedTuple):
    growth_rate: int
    blocks: tuple[int, int, int, int]
    init_features: int
    bn_size: int = 4


class DenseLayer(nn.Module):
    def __init__(self, in_channels, growth_rate, bn_size, eps):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels, eps=eps)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate, eps=eps)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(self.relu1(self.norm1(x)))
        y = self.conv2(self.relu2(self.norm2(y)))
        return torch.cat([x, y], 1)


def dense_block(num_layers, in_channels, growth_rate, bn_size, eps):
    layers = OrderedDict(
        (f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, eps))
        for i in range(num_layers))
    return nn.Sequential(layers)


def transition(in_channels, out_channels, eps):
    return nn.Sequential(OrderedDict([
        ("norm", nn.BatchNorm2d(in_channels, eps=eps)),
        ("relu", nn.ReLU(inplace=True)),
        ("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
        ("pool", nn.AvgPool2d(2, 2)),
    ]))


def stem_pool(padding):
    """Max-pool 3x3 s2 with one row/column of padding: -inf (torch) or zeros (keras.applications)."""
    if padding == "neg_inf":
        return nn.MaxPool2d(3, 2, padding=1)
    return nn.Sequential(nn.ZeroPad2d(1), nn.MaxPool2d(3, 2))


class DenseNet(nn.Module):
    def __init__(self, name, config, *, num_classes=1000, include_top=True, bn_eps=1e-5, pool0_padding="neg_inf"):
        super().__init__()
        if pool0_padding not in POOL0_PADDINGS:
            raise ValueError(f"{name}: pool0_padding must be one of {POOL0_PADDINGS}; got {pool0_padding!r}")
        self.arch, self.include_top = name, include_top
        channels = config.init_features
        stages = [("conv0", nn.Conv2d(3, channels, 7, 2, padding=3, bias=False)),
                  ("norm0", nn.BatchNorm2d(channels, eps=bn_eps)),
                  ("relu0", nn.ReLU(inplace=True)),
                  ("pool0", stem_pool(pool0_padding))]
        for i, num_layers in enumerate(config.blocks):
            stages.append((f"denseblock{i + 1}",
                           dense_block(num_layers, channels, config.growth_rate, config.bn_size, bn_eps)))
            channels += num_layers * config.growth_rate
            if i < len(config.blocks) - 1:
                stages.append((f"transition{i + 1}", transition(channels, channels // 2, bn_eps)))
                channels //= 2
        stages.append(("norm5", nn.BatchNorm2d(channels, eps=bn_eps)))
        self.features = nn.Sequential(OrderedDict(stages))
        self.num_features = channels
        if include_top:
            self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        """The feature map after norm5 and the final ReLU."""
        check_input(x, self.arch, "features.conv0", 3)
        return F.relu(self.features(x))

    def forward(self, x):
        x = self.forward_features(x)
        if not self.include_top:
            return x
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


DENSENET121 = Config(32, (6, 12, 24, 16), 64)
DENSENET161 = Config(48, (6, 12, 36, 24), 96)
DENSENET169 = Config(32, (6, 12, 32, 32), 64)
DENSENET201 = Config(32, (6, 12, 48, 32), 64)


def densenet121(**kwargs):
    return DenseNet("densenet121", DENSENET121, **kwargs)


def densenet161(**kwargs):
    return DenseNet("densenet161", DENSENET161, **kwargs)


def densenet169(**kwargs):
    return DenseNet("densenet169", DENSENET169, **kwargs)


def densenet201(**kwargs):
    return DenseNet("densenet201", DENSENET201, **kwargs)


def densenet121_keras(**kwargs):
    return DenseNet("densenet121_keras", DENSENET121, **{**KERAS_APPLICATIONS, **kwargs})


def densenet169_keras(**kwargs):
    return DenseNet("densenet169_keras", DENSENET169, **{**KERAS_APPLICATIONS, **kwargs})


def densenet201_keras(**kwargs):
    return DenseNet("densenet201_keras", DENSENET201, **{**KERAS_APPLICATIONS, **kwargs})


class D2LUnit(nn.Module):
    """d2l's conv_block: BN -> ReLU -> 3x3 conv (with bias) to `growth` channels."""

    def __init__(self, in_channels, growth):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, growth, 3, padding=1)

    def forward(self, x):
        return self.conv(F.relu(self.bn(x)))


class D2LTransition(nn.Module):
    """d2l's transition_block: BN -> ReLU -> 1x1 conv (with bias) -> 2x2 average pool."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, 2)


class DenseNetD2L(nn.Module):
    def __init__(self, *, in_channels=1, num_classes=10, growth=32, units=(4, 4, 4, 4)):
        super().__init__()
        self.arch, self.in_channels = "densenet_d2l", in_channels
        self.conv1, self.bn1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64)
        channels = 64
        for k, count in enumerate(units, start=1):
            setattr(self, f"dense{k}", nn.ModuleList(D2LUnit(channels + i * growth, growth) for i in range(count)))
            channels += count * growth
            if k < len(units):
                setattr(self, f"transition{k}", D2LTransition(channels, channels // 2))
                channels //= 2
        self.units, self.bn, self.fc = len(units), nn.BatchNorm2d(channels), nn.Linear(channels, num_classes)

    def forward(self, x):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, padding=1)
        for k in range(1, self.units + 1):
            for unit in getattr(self, f"dense{k}"):
                x = torch.cat([x, unit(x)], 1)
            if k < self.units:
                x = getattr(self, f"transition{k}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1), 1))


def densenet_d2l(**kwargs):
    return DenseNetD2L(**kwargs)
