"""AlexNet in torchvision's layout (attribute paths are the weight keys).

`features` and `classifier` are lists indexed exactly like torchvision's nn.Sequential: convs
at features.0/3/6/8/10, Linears at classifier.1/4/6; the other entries are weightless ops.
Flatten is NHWC-native: classifier.1's weight is permuted from torch's (C, H, W) feature
order in transfer (catalogue: flatten_linear), never in the graph.

`alexnet_half` (seed 004) and `alexnet_d2l` (seed 003) differ in data only: `Layout`, as in
torch_impl/alexnet.py, which says how.

`run_layers` and `make_classifier` live here and are shared with vgg.py and nin.py.
"""
from typing import NamedTuple

import tensorflow as tf

from .layers import BatchNorm2d, Conv2d, Dropout, Linear, adaptive_avg_pool2d, check_input, max_pool2d, relu


def run_layers(layers, x, training=False):
    """Apply a torch-indexed layer list like nn.Sequential; BatchNorm and Dropout see `training`."""
    for layer in layers:
        if isinstance(layer, (list, tuple)):
            x = run_layers(layer, x, training)
        elif isinstance(layer, (BatchNorm2d, Dropout)):
            x = layer(x, training)
        else:
            x = layer(x)
    return x


def flatten(x):
    """Flatten NHWC in its own (H, W, C) order."""
    return tf.reshape(x, [tf.shape(x)[0], -1])


def max_pool_3x3_s2(x):
    return max_pool2d(x, 3, 2)


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
        linear = [Linear(width, hidden), relu]
        return [Dropout(dropout), *linear] if dropout_first else [*linear, Dropout(dropout)]
    return [*stage(features), *stage(hidden), Linear(hidden, num_classes)]


class AlexNet(tf.Module):
    def __init__(self, *, num_classes=1000, dropout=0.5, layout=TORCHVISION, arch="alexnet"):
        super().__init__(name=arch)
        self.arch, self.in_channels, self.avgpool = arch, layout.in_channels, layout.avgpool
        c1, c2, c3, c4, c5 = layout.widths
        self.features = [
            Conv2d(layout.in_channels, c1, 11, stride=4, padding=layout.conv1_padding), relu, max_pool_3x3_s2,
            Conv2d(c1, c2, 5, padding=2), relu, max_pool_3x3_s2,
            Conv2d(c2, c3, 3, padding=1), relu,
            Conv2d(c3, c4, 3, padding=1), relu,
            Conv2d(c4, c5, 3, padding=1), relu, max_pool_3x3_s2,
        ]
        self.classifier = make_classifier(c5 * layout.flat_map ** 2, num_classes, dropout=dropout,
                                          hidden=layout.hidden, dropout_first=layout.dropout_first)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "features.0", self.in_channels)
        x = run_layers(self.features, x, training)
        if self.avgpool:
            x = adaptive_avg_pool2d(x, 6)
        return run_layers(self.classifier, flatten(x), training)


def alexnet(**kwargs):
    return AlexNet(**kwargs)


def alexnet_half(*, num_classes=5, **kwargs):
    return AlexNet(num_classes=num_classes, layout=SEED004_HALF, arch="alexnet_half", **kwargs)


def alexnet_d2l(*, num_classes=10, **kwargs):
    return AlexNet(num_classes=num_classes, layout=D2L, arch="alexnet_d2l", **kwargs)
