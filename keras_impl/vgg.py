"""VGG 11/13/16/19, with and without BatchNorm, in torchvision's layout (layer names are keys).

A configuration lists conv widths and "M" for a 2x2 max pool. Each conv is 3x3 pad 1, then
BatchNorm (the _bn variants), then ReLU; features.N counts every one of these layers, as
torchvision does. "avgpool" pools adaptively to 7x7; Dense layers sit at classifier.0/3/6.
Flatten is NHWC-native: classifier.0's kernel is permuted in transfer (catalogue: flatten_linear).

The `_fc2048` variants are seed 004's: no average pool, and Dropout first in the classifier,
so the Dense layers sit at classifier.1/4/6, 25088-2048-2048-num_classes (torch_impl/vgg.py).
`vgg11_d2l` (seed 003): one input channel, layers grouped by d2l's vgg_block
(features.<block>.<index>), no average pool, torchvision's classifier, 10 classes.
"""
import keras
from keras import layers

from .alexnet import classifier
from .layers import AdaptiveAvgPool2D, batch_norm, conv2d, max_pool, relu

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def features(x, config, use_batch_norm, grouped=False):
    """Layers named features.<index> (torchvision's), or `grouped`: features.<block>.<index>
    per block that ends in a pool (d2l's vgg_block)."""
    block, index = 0, 0

    def name():
        return f"features.{block}.{index}" if grouped else f"features.{index}"

    for width in config:
        if width == "M":
            x = max_pool(x, 2, 2, name=name())
            block, index = (block + 1, 0) if grouped else (block, index + 1)
            continue
        x = conv2d(x, width, 3, padding=1, name=name())
        index += 1
        if use_batch_norm:
            x = batch_norm(x, name=name())
            index += 1
        x = relu(x, name=name())
        index += 1
    return x


def vgg(name, config, *, batch_norm=False, num_classes=1000, dropout=0.5, input_shape=None, hidden=4096,
        avgpool=True, dropout_first=False, in_channels=3, grouped=False):
    inputs = keras.Input(shape=input_shape or (None, None, in_channels), name="input")
    x = features(inputs, config, batch_norm, grouped)
    if avgpool:
        x = AdaptiveAvgPool2D(7, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)  # (H, W, C) order
    x = classifier(x, num_classes, dropout=dropout, hidden=hidden, dropout_first=dropout_first)
    return keras.Model(inputs, x, name=name)


def vgg11(**kwargs):
    return vgg("vgg11", CONFIGS[11], **kwargs)


def vgg13(**kwargs):
    return vgg("vgg13", CONFIGS[13], **kwargs)


def vgg16(**kwargs):
    return vgg("vgg16", CONFIGS[16], **kwargs)


def vgg19(**kwargs):
    return vgg("vgg19", CONFIGS[19], **kwargs)


def vgg11_bn(**kwargs):
    return vgg("vgg11_bn", CONFIGS[11], batch_norm=True, **kwargs)


def vgg13_bn(**kwargs):
    return vgg("vgg13_bn", CONFIGS[13], batch_norm=True, **kwargs)


def vgg16_bn(**kwargs):
    return vgg("vgg16_bn", CONFIGS[16], batch_norm=True, **kwargs)


def vgg19_bn(**kwargs):
    return vgg("vgg19_bn", CONFIGS[19], batch_norm=True, **kwargs)


def _fc2048(name, depth, num_classes=5, **kwargs):
    return vgg(name, CONFIGS[depth], num_classes=num_classes, hidden=2048, avgpool=False, dropout_first=True, **kwargs)


def vgg11_fc2048(**kwargs):
    return _fc2048("vgg11_fc2048", 11, **kwargs)


def vgg13_fc2048(**kwargs):
    return _fc2048("vgg13_fc2048", 13, **kwargs)


def vgg16_fc2048(**kwargs):
    return _fc2048("vgg16_fc2048", 16, **kwargs)


def vgg19_fc2048(**kwargs):
    return _fc2048("vgg19_fc2048", 19, **kwargs)


def vgg11_d2l(*, num_classes=10, **kwargs):
    return vgg("vgg11_d2l", CONFIGS[11], num_classes=num_classes, avgpool=False, in_channels=1, grouped=True,
               **kwargs)
