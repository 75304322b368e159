"""Network in Network (Lin et al. 2013) as d2l-style tutorials teach it, for 3x224x224 input.

A NiN block is a conv and two 1x1 convs, each followed by ReLU. torchvision has no NiN, so
the module paths (the weight keys) are defined here, once:

    features.0    NiN block: .0 Conv2d(in_channels, 96, 11, stride 4), .2 and .4 Conv2d 1x1
    features.1    MaxPool2d(3, 2)
    features.2    NiN block: .0 Conv2d(96, 256, 5, padding 2), .2 and .4 Conv2d 1x1
    features.3    MaxPool2d(3, 2)
    features.4    NiN block: .0 Conv2d(256, 384, 3, padding 1), .2 and .4 Conv2d 1x1
    features.5    MaxPool2d(3, 2)
    classifier.0  Dropout(0.5)
    classifier.1  NiN block: .0 Conv2d(384, num_classes, 3, padding 1), .2 and .4 Conv2d 1x1
    classifier.2  AdaptiveAvgPool2d(1)
    classifier.3  Flatten

(.1, .3, .5 inside a block are its ReLUs.) d2l's `nn.Sequential` index k maps to
`features.k` for k < 6 and `classifier.(k - 6)` otherwise. Global average pooling makes the
network accept any input of at least 67x67.
"""
from torch import nn

from ._common import Dropout, check_input


def nin_block(in_channels, out_channels, kernel_size, stride=1, padding=0):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1), nn.ReLU(inplace=True),
    )


class NiN(nn.Module):
    def __init__(self, *, in_channels=3, num_classes=1000, dropout=0.5):
        super().__init__()
        self.arch, self.in_channels = "nin", in_channels
        self.features = nn.Sequential(
            nin_block(in_channels, 96, 11, stride=4), nn.MaxPool2d(3, 2),
            nin_block(96, 256, 5, padding=2), nn.MaxPool2d(3, 2),
            nin_block(256, 384, 3, padding=1), nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            Dropout(dropout), nin_block(384, num_classes, 3, padding=1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x):
        check_input(x, self.arch, "features.0.0", self.in_channels)
        return self.classifier(self.features(x))


def nin(**kwargs):
    return NiN(**kwargs)
