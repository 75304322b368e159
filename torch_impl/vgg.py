"""VGG 11/13/16/19, with and without BatchNorm, in torchvision's layout.

A configuration lists conv widths and "M" for a 2x2 max pool. Each conv is Conv2d 3x3 pad 1,
then BatchNorm2d (the _bn variants), then ReLU; the features.N indices count every one of
these modules, as torchvision's do. avgpool is AdaptiveAvgPool2d(7); classifier.0/3/6 are
the Linears, and classifier.0 follows a spatial flatten of 512 x 7 x 7 features
(catalogue: flatten_linear).

The `_fc2048` variants are seed 004's VGGs for its flower set: the same features, no average
pool (the 512 x 7 x 7 flatten needs a 224..239 input) and its classifier, Dropout first:
classifier.1/4/6 are Linears 25088-2048-2048-num_classes (5 classes by default).

`vgg11_d2l` is seed 003's (d2l): VGG-11's convs for one input channel, grouped in d2l's
vgg_blocks (features.<block>.<index>: features.2.0 and features.2.2 are block 3's convs, its
pool features.2.4), no average pool (224..239 px) and torchvision's classifier, 10 classes.
"""
import torch
from torch import nn

from ._common import check_input
from .alexnet import make_classifier

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def make_features(config, batch_norm, in_channels=3, grouped=False):
    """One flat nn.Sequential (torchvision's), or `grouped`: one nn.Sequential per block that
    ends in a pool (d2l's vgg_block), so the paths read features.<block>.<index>."""
    blocks, block, channels = [], [], in_channels
    for width in config:
        if width == "M":
            block.append(nn.MaxPool2d(2, 2))
            if grouped:
                blocks.append(nn.Sequential(*block))
                block = []
            continue
        block.append(nn.Conv2d(channels, width, 3, padding=1))
        if batch_norm:
            block.append(nn.BatchNorm2d(width))
        block.append(nn.ReLU(inplace=True))
        channels = width
    return nn.Sequential(*blocks) if grouped else nn.Sequential(*block)


class VGG(nn.Module):
    def __init__(self, name, config, *, batch_norm=False, num_classes=1000, dropout=0.5, hidden=4096,
                 avgpool=True, dropout_first=False, in_channels=3, grouped=False):
        super().__init__()
        self.arch, self.in_channels = name, in_channels
        self.features = make_features(config, batch_norm, in_channels, grouped)
        self.avgpool = nn.AdaptiveAvgPool2d(7) if avgpool else None
        self.classifier = make_classifier(512 * 7 * 7, num_classes, dropout=dropout, hidden=hidden,
                                          dropout_first=dropout_first)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        check_input(x, self.arch, "features.0", self.in_channels)
        x = self.features(x)
        if self.avgpool is not None:
            x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def vgg11(**kwargs):
    return VGG("vgg11", CONFIGS[11], **kwargs)


def vgg13(**kwargs):
    return VGG("vgg13", CONFIGS[13], **kwargs)


def vgg16(**kwargs):
    return VGG("vgg16", CONFIGS[16], **kwargs)


def vgg19(**kwargs):
    return VGG("vgg19", CONFIGS[19], **kwargs)


def vgg11_bn(**kwargs):
    return VGG("vgg11_bn", CONFIGS[11], batch_norm=True, **kwargs)


def vgg13_bn(**kwargs):
    return VGG("vgg13_bn", CONFIGS[13], batch_norm=True, **kwargs)


def vgg16_bn(**kwargs):
    return VGG("vgg16_bn", CONFIGS[16], batch_norm=True, **kwargs)


def vgg19_bn(**kwargs):
    return VGG("vgg19_bn", CONFIGS[19], batch_norm=True, **kwargs)


def _fc2048(name, depth, num_classes=5, **kwargs):
    return VGG(name, CONFIGS[depth], num_classes=num_classes, hidden=2048, avgpool=False, dropout_first=True, **kwargs)


def vgg11_fc2048(**kwargs):
    return _fc2048("vgg11_fc2048", 11, **kwargs)


def vgg13_fc2048(**kwargs):
    return _fc2048("vgg13_fc2048", 13, **kwargs)


def vgg16_fc2048(**kwargs):
    return _fc2048("vgg16_fc2048", 16, **kwargs)


def vgg19_fc2048(**kwargs):
    return _fc2048("vgg19_fc2048", 19, **kwargs)


def vgg11_d2l(*, num_classes=10, **kwargs):
    return VGG("vgg11_d2l", CONFIGS[11], num_classes=num_classes, avgpool=False, in_channels=1, grouped=True,
               **kwargs)
