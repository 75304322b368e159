"""Network in Network, d2l style (attribute paths are the torch module paths).

Paths, defined in torch_impl/nin.py: NiN blocks (lists: convs at .0/.2/.4, ReLUs between) at
features.0/2/4 and classifier.1; 3x3 stride-2 max pools at features.1/3/5; dropout at
classifier.0; then global average pooling. Any input >= 67x67 works.
"""
import tensorflow as tf

from .alexnet import max_pool_3x3_s2, run_layers
from .layers import Conv2d, Dropout, check_input, global_avg_pool, relu


def nin_block(in_channels, out_channels, kernel_size, stride=1, padding=0):
    return [
        Conv2d(in_channels, out_channels, kernel_size, stride, padding), relu,
        Conv2d(out_channels, out_channels, 1), relu,
        Conv2d(out_channels, out_channels, 1), relu,
    ]


class NiN(tf.Module):
    def __init__(self, *, in_channels=3, num_classes=1000, dropout=0.5):
        super().__init__(name="nin")
        self.arch, self.in_channels = "nin", in_channels
        self.features = [
            nin_block(in_channels, 96, 11, stride=4), max_pool_3x3_s2,
            nin_block(96, 256, 5, padding=2), max_pool_3x3_s2,
            nin_block(256, 384, 3, padding=1), max_pool_3x3_s2,
        ]
        self.classifier = [Dropout(dropout), nin_block(384, num_classes, 3, padding=1)]

    def __call__(self, x, training=False):
        check_input(x, self.arch, "features.0.0", self.in_channels)
        x = run_layers(self.features, x, training)
        return global_avg_pool(run_layers(self.classifier, x, training))


def nin(**kwargs):
    return NiN(**kwargs)
