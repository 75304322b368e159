"""VGG 11/13/16/19, with and without BatchNorm, in torchvision's layout (attribute paths are keys).

A configuration lists conv widths and "M" for a 2x2 max pool. Each conv is 3x3 pad 1, then
BatchNorm2d (the _bn variants), then ReLU; `features` is a list indexed like torchvision's
nn.Sequential. Adaptive average pooling to 7x7, then Linears at classifier.0/3/6; classifier.0's
weight is permuted in transfer because flatten is NHWC-native (catalogue: flatten_linear).

The `_fc2048` variants are seed 004's: no average pool, and Dropout first in the classifier,
so the Linears sit at classifier.1/4/6, 25088-2048-2048-num_classes (torch_impl/vgg.py).
`vgg11_d2l` (seed 003): one input channel, layers grouped by d2l's vgg_block
(features.<block>.<index>), no average pool, torchvision's classifier, 10 classes.
"""
import tensorflow as tf

from .alexnet import flatten, make_classifier, run_layers
from .layers import BatchNorm2d, Conv2d, adaptive_avg_pool2d, check_input, max_pool2d, relu

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def max_pool_2x2(x):
    return max_pool2d(x, 2, 2)


def make_features(config, batch_norm, in_channels=3, grouped=False):
    """One flat list (torchvision's indices), or `grouped`: one list per block that ends in a
    pool (d2l's vgg_block), so the paths read features.<block>.<index>."""
    blocks, block, channels = [], [], in_channels
    for width in config:
        if width == "M":
            block.append(max_pool_2x2)
            if grouped:
                blocks.append(block)
                block = []
            continue
        block.append(Conv2d(channels, width, 3, padding=1))
        if batch_norm:
            block.append(BatchNorm2d(width))
        block.append(relu)
        channels = width
    return blocks if grouped else block


class VGG(tf.Module):
    def __init__(self, name, config, *, batch_norm=False, num_classes=1000, dropout=0.5, hidden=4096, avgpool=True,
                 dropout_first=False, in_channels=3, grouped=False):
        super().__init__(name=name)
        self.arch, self.avgpool, self.in_channels = name, avgpool, in_channels
        self.features = make_features(config, batch_norm, in_channels, grouped)
        self.classifier = make_classifier(512 * 7 * 7, num_classes, dropout=dropout, hidden=hidden,
                                          dropout_first=dropout_first)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "features.0", self.in_channels)
        x = run_layers(self.features, x, training)
        if self.avgpool:
            x = adaptive_avg_pool2d(x, 7)
        return run_layers(self.classifier, flatten(x), training)


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
