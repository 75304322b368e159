"""DenseNet-BC 121/161/169/201 (torchvision layout: layer names are the weight keys).

`features` holds conv0, norm0, relu0, pool0, denseblock1, transition1, ..., denseblock4,
norm5; each dense layer is BN-ReLU-conv1x1(bn_size * growth)-BN-ReLU-conv3x3(growth) and
its output is concatenated to its input. The `*_keras` builders reproduce
keras.applications' DenseNets: BN epsilon 1.001e-5 and zero padding before the stem
max-pool (see docs/densenet.md).

`densenet_d2l`: seed 003's (d2l) small DenseNet (torch_impl/densenet.py): stem conv with bias,
four blocks of 4 BN-ReLU-conv3x3 units (growth 32), transitions halving the channels.
"""
from typing import NamedTuple

import keras
from keras import layers

from .layers import Linear, batch_norm, conv2d, global_avg_pool, max_pool, relu

POOL0_PADDINGS = ("neg_inf", "zero")
KERAS_APPLICATIONS = {"bn_eps": 1.001e-5, "pool0_padding": "zero"}


class Config(NamedTuple):
    growth_rate: int
    blocks: tuple[int, int, int, int]
    init_features: int
    bn_size: int = 4


def dense_layer(x, growth_rate, bn_size, eps, *, name):
    y = relu(batch_norm(x, eps=eps, name=f"{name}.norm1"), name=f"{name}.relu1")
    y = conv2d(y, bn_size * growth_rate, 1, bias=False, name=f"{name}.conv1")
    y = relu(batch_norm(y, eps=eps, name=f"{name}.norm2"), name=f"{name}.relu2")
    y = conv2d(y, growth_rate, 3, padding=1, bias=False, name=f"{name}.conv2")
    return layers.Concatenate(axis=-1, name=f"{name}.concat")([x, y])


def dense_block(x, num_layers, growth_rate, bn_size, eps, *, name):
    for i in range(num_layers):
        x = dense_layer(x, growth_rate, bn_size, eps, name=f"{name}.denselayer{i + 1}")
    return x


def transition(x, out_channels, eps, *, name):
    x = relu(batch_norm(x, eps=eps, name=f"{name}.norm"), name=f"{name}.relu")
    x = conv2d(x, out_channels, 1, bias=False, name=f"{name}.conv")
    return layers.AveragePooling2D(2, 2, padding="valid", name=f"{name}.pool")(x)


def stem_pool(x, padding, *, name):
    """Max-pool 3x3 s2 with one row/column of padding: -inf (torch) or zeros (keras.applications)."""
    if padding == "neg_inf":
        return max_pool(x, 3, 2, padding=1, name=name)
    x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return layers.MaxPooling2D(3, 2, padding="valid", name=name)(x)


def densenet(name, config, *, num_classes=1000, include_top=True, bn_eps=1e-5, pool0_padding="neg_inf",
             input_shape=None):
    if pool0_padding not in POOL0_PADDINGS:
        raise ValueError(f"{name}: pool0_padding must be one of {POOL0_PADDINGS}; got {pool0_padding!r}")
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    channels = config.init_features
    x = conv2d(inputs, channels, 7, stride=2, padding=3, bias=False, name="features.conv0")
    x = relu(batch_norm(x, eps=bn_eps, name="features.norm0"), name="features.relu0")
    x = stem_pool(x, pool0_padding, name="features.pool0")
    for i, num_layers in enumerate(config.blocks):
        x = dense_block(x, num_layers, config.growth_rate, config.bn_size, bn_eps, name=f"features.denseblock{i + 1}")
        channels += num_layers * config.growth_rate
        if i < len(config.blocks) - 1:
            channels //= 2
            x = transition(x, channels, bn_eps, name=f"features.transition{i + 1}")
    x = relu(batch_norm(x, eps=bn_eps, name="features.norm5"), name="relu")
    if include_top:
        x = global_avg_pool(x, name="avgpool")
        x = Linear(num_classes, name="classifier")(x)
    return keras.Model(inputs, x, name=name)


DENSENET121 = Config(32, (6, 12, 24, 16), 64)
DENSENET161 = Config(48, (6, 12, 36, 24), 96)
DENSENET169 = Config(32, (6, 12, 32, 32), 64)
DENSENET201 = Config(32, (6, 12, 48, 32), 64)


def densenet121(**kwargs):
    return densenet("densenet121", DENSENET121, **kwargs)


def densenet161(**kwargs):
    return densenet("densenet161", DENSENET161, **kwargs)


def densenet169(**kwargs):
    return densenet("densenet169", DENSENET169, **kwargs)


def densenet201(**kwargs):
    return densenet("densenet201", DENSENET201, **kwargs)


def densenet121_keras(**kwargs):
    return densenet("densenet121_keras", DENSENET121, **{**KERAS_APPLICATIONS, **kwargs})


def densenet169_keras(**kwargs):
    return densenet("densenet169_keras", DENSENET169, **{**KERAS_APPLICATIONS, **kwargs})


def densenet201_keras(**kwargs):
    return densenet("densenet201_keras", DENSENET201, **{**KERAS_APPLICATIONS, **kwargs})


def densenet_d2l(*, in_channels=None, num_classes=10, input_shape=None, growth=32, units=(4, 4, 4, 4)):
    inputs = keras.Input(shape=input_shape or (None, None, in_channels or 1), name="input")
    x = relu(batch_norm(conv2d(inputs, 64, 7, stride=2, padding=3, name="conv1"), name="bn1"))
    x = max_pool(x, 3, 2, padding=1, name="pool1")
    for k, count in enumerate(units, start=1):
        for i in range(count):
            y = conv2d(relu(batch_norm(x, name=f"dense{k}.{i}.bn")), growth, 3, padding=1, name=f"dense{k}.{i}.conv")
            x = layers.Concatenate(axis=-1, name=f"dense{k}.{i}.concat")([x, y])
        if k < len(units):
            x = conv2d(relu(batch_norm(x, name=f"transition{k}.bn")), x.shape[-1] // 2, 1, name=f"transition{k}.conv")
            x = layers.AveragePooling2D(2, 2, name=f"transition{k}.pool")(x)
    x = global_avg_pool(relu(batch_norm(x, name="bn")), name="avgpool")
    return keras.Model(inputs, Linear(num_classes, name="fc")(x), name="densenet_d2l")
