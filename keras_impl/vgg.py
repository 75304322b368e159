"""VGG 11/13/16/19, with and without BatchNorm, in torchvision's layout (layer names are keys).

A configuration lists conv widths and "M" for a 2x2 max pool. Each conv is 3x3 pad 1, then
BatchNorm (the _bn variants), then ReLU; features.N counts every one of these layers, as
torchvision does. "avgpool" pools adaptively to 7x7; Dense layers sit at classifier.0/3/6.
Flatten is NHWC-native: classifier.0's kernel is permuted in transfer (catalogue: flatten_linear).
"""
import keras
from keras import layers

from .layers import AdaptiveAvgPool2D, Linear, batch_norm, conv2d, max_pool, relu

CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def features(x, config, use_batch_norm):
    index = 0
    for width in config:
        if width == "M":
            x = max_pool(x, 2, 2, name=f"features.{index}")
            index += 1
            continue
        x = conv2d(x, width, 3, padding=1, name=f"features.{index}")
        index += 1
        if use_batch_norm:
            x = batch_norm(x, name=f"features.{index}")
            index += 1
        x = relu(x, name=f"features.{index}")
        index += 1
    return x


def vgg(name, config, *, batch_norm=False, num_classes=1000, dropout=0.5, input_shape=None):
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = features(inputs, config, batch_norm)
    x = AdaptiveAvgPool2D(7, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)  # (H, W, C) order
    x = relu(Linear(4096, name="classifier.0")(x), name="classifier.1")
    x = layers.Dropout(dropout, name="classifier.2")(x)
    x = relu(Linear(4096, name="classifier.3")(x), name="classifier.4")
    x = layers.Dropout(dropout, name="classifier.5")(x)
    x = Linear(num_classes, name="classifier.6")(x)
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
