"""DenseNet-BC 121/161/169/201 (torchvision layout: attribute paths are the weight keys).

`features` holds conv0, norm0, denseblock1, transition1, ..., denseblock4, norm5 (the
ReLUs and pools hold no weights); each dense layer is BN-ReLU-conv1x1(bn_size * growth)-
BN-ReLU-conv3x3(growth) and its output is concatenated to its input. The `*_keras`
builders reproduce keras.applications' DenseNets: BN epsilon 1.001e-5 and zero padding
before the stem max-pool (see docs/densenet.md).

`densenet_d2l`: seed 003's (d2l) small DenseNet (torch_impl/densenet.py): stem conv with bias,
four blocks of 4 BN-ReLU-conv3x3 units (growth 32), transitions halving the channels.
"""
from typing import NamedTuple

import tensorflow as tf

from .layers import BatchNorm2d, Conv2d, Linear, avg_pool2d, check_input, global_avg_pool, max_pool2d

POOL0_PADDINGS = ("neg_inf", "zero")
KERAS_APPLICATIONS = {"bn_eps": 1.001e-5, "pool0_padding": "zero"}


class Config(NamedTuple):
    growth_rate: int
    blocks: tuple[int, int, int, int]
    init_features: int
    bn_size: int = 4


class DenseLayer(tf.Module):
    def __init__(self, in_channels, growth_rate, bn_size, eps):
        super().__init__()
        self.norm1 = BatchNorm2d(in_channels, eps=eps)
        self.conv1 = Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = BatchNorm2d(bn_size * growth_rate, eps=eps)
        self.conv2 = Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def __call__(self, x, training=False):
        y = self.conv1(tf.nn.relu(self.norm1(x, training)))
        y = self.conv2(tf.nn.relu(self.norm2(y, training)))
        return tf.concat([x, y], axis=-1)


class DenseBlock(tf.Module):
    """Attributes denselayer1 ... denselayerN, as torchvision names them."""

    def __init__(self, num_layers, in_channels, growth_rate, bn_size, eps):
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            setattr(self, f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, eps))

    def __call__(self, x, training=False):
        for i in range(self.num_layers):
            x = getattr(self, f"denselayer{i + 1}")(x, training)
        return x


class Transition(tf.Module):
    def __init__(self, in_channels, out_channels, eps):
        super().__init__()
        self.norm = BatchNorm2d(in_channels, eps=eps)
        self.conv = Conv2d(in_channels, out_channels, 1, bias=False)

    def __call__(self, x, training=False):
        return avg_pool2d(self.conv(tf.nn.relu(self.norm(x, training))), 2, 2)


def stem_pool(x, padding):
    """Max-pool 3x3 s2 with one row/column of padding: -inf (torch) or zeros (keras.applications)."""
    if padding == "neg_inf":
        return max_pool2d(x, 3, 2, padding=1)
    return tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")


class Features(tf.Module):
    """conv0, norm0, denseblock1, transition1, ..., denseblock4, norm5."""

    def __init__(self, config, eps, pool0_padding):
        super().__init__()
        self.pool0_padding, self.num_blocks = pool0_padding, len(config.blocks)
        channels = config.init_features
        self.conv0 = Conv2d(3, channels, 7, 2, padding=3, bias=False)
        self.norm0 = BatchNorm2d(channels, eps=eps)
        for i, num_layers in enumerate(config.blocks):
            setattr(self, f"denseblock{i + 1}",
                    DenseBlock(num_layers, channels, config.growth_rate, config.bn_size, eps))
            channels += num_layers * config.growth_rate
            if i < len(config.blocks) - 1:
                setattr(self, f"transition{i + 1}", Transition(channels, channels // 2, eps))
                channels //= 2
        self.norm5 = BatchNorm2d(channels, eps=eps)
        self.out_channels = channels

    def __call__(self, x, training=False):
        x = tf.nn.relu(self.norm0(self.conv0(x), training))
        x = stem_pool(x, self.pool0_padding)
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"denseblock{i}")(x, training)
            if i < self.num_blocks:
                x = getattr(self, f"transition{i}")(x, training)
        return self.norm5(x, training)


class DenseNet(tf.Module):
    def __init__(self, name, config, *, num_classes=1000, include_top=True, bn_eps=1e-5, pool0_padding="neg_inf"):
        super().__init__(name=name)
        if pool0_padding not in POOL0_PADDINGS:
            raise ValueError(f"{name}: pool0_padding must be one of {POOL0_PADDINGS}; got {pool0_padding!r}")
        self.arch, self.include_top = name, include_top
        self.features = Features(config, bn_eps, pool0_padding)
        if include_top:
            self.classifier = Linear(self.features.out_channels, num_classes)

    def forward_features(self, x, training=False):
        """The feature map after norm5 and the final ReLU."""
        check_input(x, self.arch, "features.conv0", 3)
        return tf.nn.relu(self.features(x, training))

    def __call__(self, x, training=False):
        x = self.forward_features(x, training)
        if not self.include_top:
            return x
        return self.classifier(global_avg_pool(x))


DENSENET121 = Config(32, (6, 12, 24, 16), 64)
DENSENET161 = Config(48, (6, 12, 36, 24), 96)
DENSENET169 = Config(32, (6, 12, 32, 32), 64)
DENSENET201 = Config(32, (6, 12, 48, 32), 64)


def densenet121(**kwargs):
    return DenseNet("densenet121", DENSENET121, **kwargs)


def densenet161(**kwargs):
    return DenseNet("densenet161", DENSENET161, **kwargs)


def densenet169(**kwargs):
    return DenseNet("densenet169", DENSENET169, **kwargs)


def densenet201(**kwargs):
    return DenseNet("densenet201", DENSENET201, **kwargs)


def densenet121_keras(**kwargs):
    return DenseNet("densenet121_keras", DENSENET121, **{**KERAS_APPLICATIONS, **kwargs})


def densenet169_keras(**kwargs):
    return DenseNet("densenet169_keras", DENSENET169, **{**KERAS_APPLICATIONS, **kwargs})


def densenet201_keras(**kwargs):
    return DenseNet("densenet201_keras", DENSENET201, **{**KERAS_APPLICATIONS, **kwargs})


class D2LUnit(tf.Module):
    """d2l's conv_block: BN -> ReLU -> 3x3 conv (with bias) to `growth` channels."""

    def __init__(self, in_channels, growth):
        super().__init__()
        self.bn, self.conv = BatchNorm2d(in_channels), Conv2d(in_channels, growth, 3, padding=1)

    def __call__(self, x, training=False):
        return self.conv(tf.nn.relu(self.bn(x, training)))


class D2LTransition(tf.Module):
    """d2l's transition_block: BN -> ReLU -> 1x1 conv (with bias) -> 2x2 average pool."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.bn, self.conv = BatchNorm2d(in_channels), Conv2d(in_channels, out_channels, 1)

    def __call__(self, x, training=False):
        return avg_pool2d(self.conv(tf.nn.relu(self.bn(x, training))), 2, 2)


class DenseNetD2L(tf.Module):
    def __init__(self, *, in_channels=1, num_classes=10, growth=32, units=(4, 4, 4, 4)):
        super().__init__(name="densenet_d2l")
        self.arch, self.in_channels = "densenet_d2l", in_channels
        self.conv1, self.bn1 = Conv2d(in_channels, 64, 7, 2, padding=3), BatchNorm2d(64)
        channels = 64
        for k, count in enumerate(units, start=1):
            setattr(self, f"dense{k}", [D2LUnit(channels + i * growth, growth) for i in range(count)])
            channels += count * growth
            if k < len(units):
                setattr(self, f"transition{k}", D2LTransition(channels, channels // 2))
                channels //= 2
        self.units, self.bn, self.fc = len(units), BatchNorm2d(channels), Linear(channels, num_classes)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = max_pool2d(tf.nn.relu(self.bn1(self.conv1(x), training)), 3, 2, padding=1)
        for k in range(1, self.units + 1):
            for unit in getattr(self, f"dense{k}"):
                x = tf.concat([x, unit(x, training)], axis=-1)
            if k < self.units:
                x = getattr(self, f"transition{k}")(x, training)
        return self.fc(global_avg_pool(tf.nn.relu(self.bn(x, training))))


def densenet_d2l(**kwargs):
    return DenseNetD2L(**kwargs)
