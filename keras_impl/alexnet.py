"""AlexNet in torchvision's layout (layer names are the weight keys).

Convs at features.0/3/6/8/10, adaptive average pooling to 6x6 ("avgpool"), Dense layers at
classifier.1/4/6. Flatten is NHWC-native: classifier.1's kernel is permuted from torch's
(C, H, W) feature order in transfer (catalogue: flatten_linear), never in the graph.

`alexnet_half`: seed 004's AlexNet, half the channels, no average pool, 2048-wide classifier
(torch_impl/alexnet.py).
"""
import keras
from keras import layers

from .layers import AdaptiveAvgPool2D, Linear, conv2d, max_pool, relu


WIDTHS = (64, 192, 384, 256, 256)  # torchvision's
HALF_WIDTHS = (48, 128, 192, 192, 128)  # seed 004's


def alexnet(*, num_classes=1000, dropout=0.5, input_shape=None, widths=WIDTHS, hidden=4096, avgpool=True,
            arch="alexnet"):
    c1, c2, c3, c4, c5 = widths
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = relu(conv2d(inputs, c1, 11, stride=4, padding=2, name="features.0"), name="features.1")
    x = max_pool(x, 3, 2, name="features.2")
    x = relu(conv2d(x, c2, 5, padding=2, name="features.3"), name="features.4")
    x = max_pool(x, 3, 2, name="features.5")
    x = relu(conv2d(x, c3, 3, padding=1, name="features.6"), name="features.7")
    x = relu(conv2d(x, c4, 3, padding=1, name="features.8"), name="features.9")
    x = relu(conv2d(x, c5, 3, padding=1, name="features.10"), name="features.11")
    x = max_pool(x, 3, 2, name="features.12")
    if avgpool:
        x = AdaptiveAvgPool2D(6, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)  # (H, W, C) order
    x = layers.Dropout(dropout, name="classifier.0")(x)
    x = relu(Linear(hidden, name="classifier.1")(x), name="classifier.2")
    x = layers.Dropout(dropout, name="classifier.3")(x)
    x = relu(Linear(hidden, name="classifier.4")(x), name="classifier.5")
    x = Linear(num_classes, name="classifier.6")(x)
    return keras.Model(inputs, x, name=arch)


def alexnet_half(*, num_classes=5, **kwargs):
    return alexnet(num_classes=num_classes, widths=HALF_WIDTHS, hidden=2048, avgpool=False, arch="alexnet_half",
                   **kwargs)
