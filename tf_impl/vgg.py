"""VGG 11/13/16/19, with and without BatchNorm, in torchvision's layout (attribute paths are keys).

A configuration lists conv widths and "M" for a 2x2 max pool. Each conv is 3x3 pad 1, then
BatchNorm2d (the _bn variants), then ReLU; `features` is a list indexed like torchvision's
nn.Sequential. Adaptive average pooling to 7x7, then Linears at classifier.0/3/6; classifier.0's
weight is permuted in transfer because flatten is NHWC-native (catalogue: flatten_linear).
"""
import tensorflow as tf

from .alexnet import Dropout, flatten, run_layers
from .layers import BatchNorm2d, Conv2d, Linear, adaptive_avg_pool2d, check_input, max_pool2d, relu

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def max_pool_2x2(x):
    return max_pool2d(x, 2, 2)


def make_features(config, batch_norm):
    layers, channels = [], 3
    for width in config:
        if width == "M":
            layers.append(max_pool_2x2)
            continue
        layers.append(Conv2d(channels, width, 3, padding=1))
        if batch_norm:
            layers.append(BatchNorm2d(width))
        layers.append(relu)
        channels = width
    return layers


class VGG(tf.Module):
    def __init__(self, name, config, *, batch_norm=False, num_classes=1000, dropout=0.5):
        super().__init__(name=name)
        self.arch = name
        self.features = make_features(config, batch_norm)
        self.classifier = [
            Linear(512 * 7 * 7, 4096), relu, Dropout(dropout),
            Linear(4096, 4096), relu, Dropout(dropout),
            Linear(4096, num_classes),
        ]

    def __call__(self, x, training=False):
        check_input(x, self.arch, "features.0", 3)
        x = adaptive_avg_pool2d(run_layers(self.features, x, training), 7)
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
