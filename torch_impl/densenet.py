"""DenseNet-BC 121/161/169/201 (torchvision layout: module paths are the weight keys).

`features` holds conv0, norm0, relu0, pool0, denseblock1, transition1, ..., denseblock4,
norm5; each dense layer is BN-ReLU-conv1x1(bn_size * growth)-BN-ReLU-conv3x3(growth) and
its output is concatenated to its input. The `*_keras` builders reproduce
keras.applications' DenseNets: BN epsilon 1.001e-5 and zero padding before the stem
max-pool (see docs/densenet.md).
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
