"""AlexNet in torchvision's layout (layer names are the weight keys), and the tutorials' own.

Convs at features.0/3/6/8/10, adaptive average pooling to 6x6 ("avgpool"), Dense layers at
classifier.1/4/6. Flatten is NHWC-native: classifier.1's kernel is permuted from torch's
(C, H, W) feature order in transfer (catalogue: flatten_linear), never in the graph.

`alexnet_half` (seed 004) and `alexnet_d2l` (seed 003) differ in data only: `Layout`, as in
torch_impl/alexnet.py, which says how.
"""
from typing import NamedTuple

import keras
from keras import layers

from .layers import AdaptiveAvgPool2D, Dropout, Linear, conv2d, max_pool, relu


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


def classifier(x, num_classes, *, dropout, hidden, dropout_first):
    """(Dropout, Linear, ReLU) twice, then Linear: torchvision's AlexNet and seed 004's AlexNet
    and VGGs (Linears at classifier.1/4/6); or, not `dropout_first`, (Linear, ReLU, Dropout)
    twice, then Linear: torchvision's VGG and d2l's (classifier.0/3/6). Shared with vgg.py."""
    index = 0
    for _ in range(2):
        if dropout_first:
            x = Dropout(dropout, name=f"classifier.{index}")(x)
            index += 1
        x = relu(Linear(hidden, name=f"classifier.{index}")(x), name=f"classifier.{index + 1}")
        index += 2
        if not dropout_first:
            x = Dropout(dropout, name=f"classifier.{index}")(x)
            index += 1
    return Linear(num_classes, name=f"classifier.{index}")(x)


def alexnet(*, num_classes=1000, dropout=0.5, input_shape=None, layout=TORCHVISION, arch="alexnet"):
    c1, c2, c3, c4, c5 = layout.widths
    inputs = keras.Input(shape=input_shape or (None, None, layout.in_channels), name="input")
    x = relu(conv2d(inputs, c1, 11, stride=4, padding=layout.conv1_padding, name="features.0"), name="features.1")
    x = max_pool(x, 3, 2, name="features.2")
    x = relu(conv2d(x, c2, 5, padding=2, name="features.3"), name="features.4")
    x = max_pool(x, 3, 2, name="features.5")
    x = relu(conv2d(x, c3, 3, padding=1, name="features.6"), name="features.7")
    x = relu(conv2d(x, c4, 3, padding=1, name="features.8"), name="features.9")
    x = relu(conv2d(x, c5, 3, padding=1, name="features.10"), name="features.11")
    x = max_pool(x, 3, 2, name="features.12")
    if layout.avgpool:
        x = AdaptiveAvgPool2D(6, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)  # (H, W, C) order
    x = classifier(x, num_classes, dropout=dropout, hidden=layout.hidden, dropout_first=layout.dropout_first)
    return keras.Model(inputs, x, name=arch)


def alexnet_half(*, num_classes=5, **kwargs):
    return alexnet(num_classes=num_classes, layout=SEED004_HALF, arch="alexnet_half", **kwargs)


def alexnet_d2l(*, num_classes=10, **kwargs):
    return alexnet(num_classes=num_classes, layout=D2L, arch="alexnet_d2l", **kwargs)
