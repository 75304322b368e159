"""AlexNet in torchvision's layout (the one-GPU variant of "One weird trick", no LRN), and the
tutorials' own AlexNets.

Module paths are torchvision's: convs at features.0/3/6/8/10, avgpool, Linears at
classifier.1/4/6 (dropout at classifier.0/3). classifier.1 follows a spatial flatten of
256 x 6 x 6 features, which Keras and TF flatten in (H, W, C) order (catalogue: flatten_linear).

The tutorials' AlexNets differ from it in data only (`Layout`, the same in all three packages):
`alexnet_half` is seed 004's for its flower set: half the channels (48-128-192-192-128), no
average pool (the 128 x 6 x 6 flatten needs a 224..227 input), a 2048-wide classifier, 5
classes. `alexnet_d2l` is seed 003's (d2l) for Fashion-MNIST resized to 224: one input
channel, conv1 padded by 1, 96-256-384-384-256, no average pool (a 256 x 5 x 5 flatten:
224..227 px) and (Linear, ReLU, Dropout) twice, so its Linears sit at classifier.0/3/6, 10 classes.
"""
from typing import NamedTuple

import torch
from torch import nn

from ._common import Dropout, check_input


class Layout(NamedTuple):
    widths: tuple = (64, 192, 384, 256, 256)
    in_channels: int = 3
    conv1_padding: int = 2
    avgpool: bool = True  # adaptive average pool to 6x6 before the flatten
    flat_map: int = 6  # the flatten reads a flat_map x flat_map map
    hidden: int = 4096
    dropout_first: bool = True  # (Dropout, Linear, ReLU) twice; else (Linear, ReLU, Dropout) twice


TORCHVISION = Layout()
SEED004_HALF = Layout(widths=(48, 128, 192, 192, 128), avgpool=False, hidden=2048)
D2L = Layout(widths=(96, 256, 384, 384, 256), in_channels=1, conv1_padding=1, avgpool=False, flat_map=5,
             dropout_first=False)


def make_classifier(features, num_classes, *, dropout, hidden, dropout_first):
    """(Dropout, Linear, ReLU) twice, then Linear: torchvision's AlexNet and seed 004's AlexNet
    and VGGs (Linears at classifier.1/4/6); or, not `dropout_first`, (Linear, ReLU, Dropout)
    twice, then Linear: torchvision's VGG and d2l's (classifier.0/3/6). Shared with vgg.py."""
    def stage(width):
        linear = [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        return [Dropout(dropout), *linear] if dropout_first else [*linear, Dropout(dropout)]
    return nn.Sequential(*stage(features), *stage(hidden), nn.Linear(hidden, num_classes))


class AlexNet(nn.Module):
    def __init__(self, *, num_classes=1000, dropout=0.5, layout=TORCHVISION, arch="alexnet"):
        super().__init__()
        self.arch, self.in_channels = arch, layout.in_channels
        c1, c2, c3, c4, c5 = layout.widths
        self.features = nn.Sequential(
            nn.Conv2d(layout.in_channels, c1, 11, stride=4, padding=layout.conv1_padding), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6) if layout.avgpool else None
        self.classifier = make_classifier(c5 * layout.flat_map ** 2, num_classes, dropout=dropout,
                                          hidden=layout.hidden, dropout_first=layout.dropout_first)

    def forward(self, x):
        check_input(x, self.arch, "features.0", self.in_channels)
        x = self.features(x)
        if self.avgpool is not None:
            x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def alexnet(**kwargs):
    return AlexNet(**kwargs)


def alexnet_half(*, num_classes=5, **kwargs):
    return AlexNet(num_classes=num_classes, layout=SEED004_HALF, arch="alexnet_half", **kwargs)


def alexnet_d2l(*, num_classes=10, **kwargs):
    return AlexNet(num_classes=num_classes, layout=D2L, arch="alexnet_d2l", **kwargs)
