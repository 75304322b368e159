"""AlexNet in torchvision's layout (attribute paths are the weight keys).

`features` and `classifier` are lists indexed exactly like torchvision's nn.Sequential: convs
at features.0/3/6/8/10, Linears at classifier.1/4/6; the other entries are weightless ops.
Flatten is NHWC-native: classifier.1's weight is permuted from torch's (C, H, W) feature
order in transfer (catalogue: flatten_linear), never in the graph.

`alexnet_half`: seed 004's AlexNet, half the channels, no average pool, 2048-wide classifier
(torch_impl/alexnet.py).

`Dropout` and `run_layers` live here and are shared with vgg.py and nin.py.
"""
import tensorflow as tf

from .layers import BatchNorm2d, Conv2d, Linear, adaptive_avg_pool2d, check_input, max_pool2d, relu


class Dropout:
    """torch.nn.Dropout: active only when training."""

    def __init__(self, rate=0.5):
        self.rate = rate

    def __call__(self, x, training=False):
        return tf.nn.dropout(x, rate=self.rate) if training and self.rate > 0 else x


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


WIDTHS = (64, 192, 384, 256, 256)  # torchvision's
HALF_WIDTHS = (48, 128, 192, 192, 128)  # seed 004's


class AlexNet(tf.Module):
    def __init__(self, *, num_classes=1000, dropout=0.5, widths=WIDTHS, hidden=4096, avgpool=True, arch="alexnet"):
        super().__init__(name=arch)
        self.arch, self.avgpool = arch, avgpool
        c1, c2, c3, c4, c5 = widths
        self.features = [
            Conv2d(3, c1, 11, stride=4, padding=2), relu, max_pool_3x3_s2,
            Conv2d(c1, c2, 5, padding=2), relu, max_pool_3x3_s2,
            Conv2d(c2, c3, 3, padding=1), relu,
            Conv2d(c3, c4, 3, padding=1), relu,
            Conv2d(c4, c5, 3, padding=1), relu, max_pool_3x3_s2,
        ]
        self.classifier = [
            Dropout(dropout), Linear(c5 * 6 * 6, hidden), relu,
            Dropout(dropout), Linear(hidden, hidden), relu,
            Linear(hidden, num_classes),
        ]

    def __call__(self, x, training=False):
        check_input(x, self.arch, "features.0", 3)
        x = run_layers(self.features, x, training)
        if self.avgpool:
            x = adaptive_avg_pool2d(x, 6)
        return run_layers(self.classifier, flatten(x), training)


def alexnet(**kwargs):
    return AlexNet(**kwargs)


def alexnet_half(*, num_classes=5, **kwargs):
    return AlexNet(num_classes=num_classes, widths=HALF_WIDTHS, hidden=2048, avgpool=False, arch="alexnet_half",
                   **kwargs)
