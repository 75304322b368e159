"""GoogLeNet (torchvision layout) and the paper's Inception v1 (Szegedy et al., 2014).

Attribute paths are the torch module paths (see torch_impl/googlenet.py and
docs/inception.md). Every max-pool uses ceil_mode=True, which needs a static H, W.

googlenet_d2l: seed 003's (d2l) GoogLeNet (torch_impl/googlenet.py): convs with bias, d2l's
branch names (p1_1 ... p4_2), max pools 3x3/2 padded by 1 without ceil_mode, one input channel.

googlenet_nobn: seed 004's GoogLeNet (torch_impl/googlenet.py): inception_v1 without LRN,
maxpool4 3x3/2, aux heads pooling with AvgPool2d(5, stride=3) and dropping out before fc1 too.

inception_v1_lrn64: seed 000's Inception v1 at 128 px (torch_impl/googlenet.py): block1 ..
block4 as layer lists, convs with bias + ReLU at `conv.0`, branch_1x1 ... branch_pool, LRN over
64 and 192 channels with torch's even window (local_response_norm), a classifier on the
(H, W, C) flatten of the 2x2 map (the catalogue permutes it).

With auxiliary heads, training mode returns GoogLeNetOutputs(logits, aux_logits2,
aux_logits1) (torchvision's order); inference returns the logits only.
"""
from functools import partial
from typing import NamedTuple, Optional

import tensorflow as tf

from .alexnet import flatten, run_layers
from .layers import (BatchNorm2d, Conv2d, Dropout, Linear, adaptive_avg_pool2d, avg_pool2d, check_input, max_pool2d,
                     relu)


class GoogLeNetOutputs(NamedTuple):
    logits: tf.Tensor
    aux_logits2: Optional[tf.Tensor]
    aux_logits1: Optional[tf.Tensor]


class InceptionSpec(NamedTuple):
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


BLOCKS = {
    "inception3a": InceptionSpec(64, 96, 128, 16, 32, 32),
    "inception3b": InceptionSpec(128, 128, 192, 32, 96, 64),
    "inception4a": InceptionSpec(192, 96, 208, 16, 48, 64),
    "inception4b": InceptionSpec(160, 112, 224, 24, 64, 64),
    "inception4c": InceptionSpec(128, 128, 256, 24, 64, 64),
    "inception4d": InceptionSpec(112, 144, 288, 32, 64, 64),
    "inception4e": InceptionSpec(256, 160, 320, 32, 128, 128),
    "inception5a": InceptionSpec(256, 160, 320, 32, 128, 128),
    "inception5b": InceptionSpec(384, 192, 384, 48, 128, 128),
}
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)  # the paper's Caffe model
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def in_channels_of(name: str) -> int:
    """The input width of Inception block `name`: the output of the block before it (conv3's 192 first)."""
    names = list(BLOCKS)
    return BLOCKS[names[names.index(name) - 1]].out_channels if names.index(name) else 192


def transform_imagenet_input(x):
    """Re-normalise an ImageNet-normalised input to the [-1, 1] range the original weights expect."""
    scale = tf.constant([s / 0.5 for s in IMAGENET_STD], x.dtype)
    shift = tf.constant([(m - 0.5) / 0.5 for m in IMAGENET_MEAN], x.dtype)
    return x * scale + shift


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """torch.nn.LocalResponseNorm over the channel (last) axis.

    y_c = x_c / (k + alpha / size * sum(x_j^2 for j in c - size//2 .. c + (size-1)//2)) ** beta.
    tf.nn.local_response_normalization does not divide alpha by size and only has a
    symmetric window (depth_radius), so even sizes cannot be expressed with it.
    """
    channels = x.shape[-1]
    squares = tf.pad(tf.square(x), [[0, 0], [0, 0], [0, 0], [size // 2, (size - 1) // 2]])
    window_sum = squares[..., 0:channels]
    for offset in range(1, size):
        window_sum = window_sum + squares[..., offset:offset + channels]
    # x / base**beta as x * exp(-beta * log(base)): tf2onnx's layout optimizer cannot move
    # its NHWC/NCHW transposes through Pow or Div, and would leave six in inception_v1's ONNX.
    return x * tf.exp(-beta * tf.math.log(k + (alpha / size) * window_sum))


def global_average(x):
    """Global average pooling as a full-window average pool: tf2onnx then needs no layout
    transpose (after googlenet's last concat, tf.reduce_mean over H, W keeps one)."""
    return tf.squeeze(adaptive_avg_pool2d(x, 1), [1, 2])


class MaxPool2d(tf.Module):
    """Weightless; a list entry so that paths match torch's Sequential (branch4.0, branch4.1)."""

    def __init__(self, kernel_size, stride, padding=0, ceil_mode=False):
        super().__init__()
        self.args = (kernel_size, stride, padding, ceil_mode)

    def __call__(self, x, training=False):
        return max_pool2d(x, *self.args)


class BasicConv2d(tf.Module):
    """conv (no bias) + BatchNorm (eps 0.001) + ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = BatchNorm2d(out_channels, eps=0.001)

    def __call__(self, x, training=False):
        return tf.nn.relu(self.bn(self.conv(x), training))


class ConvReLU(tf.Module):
    """conv (with bias) + ReLU: the paper's unit, named like BasicConv2d's conv."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding)

    def __call__(self, x, training=False):
        return tf.nn.relu(self.conv(x))


def sequential(units, x, training):
    for unit in units:
        x = unit(x, training)
    return x


class Inception(tf.Module):
    def __init__(self, in_channels, spec: InceptionSpec, conv_block, branch3_kernel=3):
        super().__init__()
        self.branch1 = conv_block(in_channels, spec.ch1x1, 1)
        self.branch2 = [conv_block(in_channels, spec.ch3x3red, 1),
                        conv_block(spec.ch3x3red, spec.ch3x3, 3, padding=1)]
        self.branch3 = [conv_block(in_channels, spec.ch5x5red, 1),
                        conv_block(spec.ch5x5red, spec.ch5x5, branch3_kernel, padding=branch3_kernel // 2)]
        self.branch4 = [MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                        conv_block(in_channels, spec.pool_proj, 1)]

    def __call__(self, x, training=False):
        branches = [self.branch1(x, training)] + [sequential(b, x, training)
                                                  for b in (self.branch2, self.branch3, self.branch4)]
        return tf.concat(branches, axis=-1)


class InceptionAux(tf.Module):
    """Auxiliary classifier: 4x4 adaptive average pool, 1x1 conv to 128, fc 2048 -> 1024 -> classes.
    seed 004's (`seed004=True`): AvgPool2d(5, stride=3) instead, and dropout before fc1 too."""

    def __init__(self, in_channels, num_classes, conv_block, dropout=0.7, seed004=False):
        super().__init__()
        self.conv = conv_block(in_channels, 128, 1)
        self.fc1 = Linear(128 * 4 * 4, 1024)  # fed in (H, W, C) order: the catalogue permutes it
        self.fc2 = Linear(1024, num_classes)
        self.dropout, self.seed004 = Dropout(dropout), seed004

    def __call__(self, x, training=False):
        x = avg_pool2d(x, 5, 3) if self.seed004 else adaptive_avg_pool2d(x, (4, 4))
        x = tf.reshape(self.conv(x, training), [tf.shape(x)[0], -1])
        if self.seed004:
            x = self.dropout(x, training)
        x = tf.nn.relu(self.fc1(x))
        return self.fc2(self.dropout(x, training))


class GoogLeNet(tf.Module):
    def __init__(self, name, conv_block, *, branch3_kernel=3, lrn=False, num_classes=1000, aux_logits=False,
                 transform_input=False, dropout=0.2, dropout_aux=0.7, seed004=False):
        super().__init__(name=name)
        self.arch, self.aux_logits, self.transform_input = name, aux_logits, transform_input
        self.lrn, self.dropout = lrn, Dropout(dropout)
        self.conv1 = conv_block(3, 64, 7, stride=2, padding=3)
        self.conv2 = conv_block(64, 64, 1)
        self.conv3 = conv_block(64, 192, 3, padding=1)

        block = lambda name, in_ch: Inception(in_ch, BLOCKS[name], conv_block, branch3_kernel)  # noqa: E731
        self.inception3a = block("inception3a", 192)
        self.inception3b = block("inception3b", 256)
        self.inception4a = block("inception4a", 480)
        self.inception4b = block("inception4b", 512)
        self.inception4c = block("inception4c", 512)
        self.inception4d = block("inception4d", 512)
        self.inception4e = block("inception4e", 528)
        self.inception5a = block("inception5a", 832)
        self.inception5b = block("inception5b", 832)

        self.aux1 = InceptionAux(512, num_classes, conv_block, dropout_aux, seed004) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, conv_block, dropout_aux, seed004) if aux_logits else None
        self.maxpool4_kernel = 3 if seed004 else 2
        self.fc = Linear(1024, num_classes)

    def _lrn(self, x):
        return local_response_norm(x, **LRN) if self.lrn else x

    def forward_stem(self, x, training=False):
        check_input(x, self.arch, "conv1", 3)
        x = self.conv1(transform_imagenet_input(x) if self.transform_input else x, training)
        x = self._lrn(max_pool2d(x, 3, 2, ceil_mode=True))
        x = self._lrn(self.conv3(self.conv2(x, training), training))
        return max_pool2d(x, 3, 2, ceil_mode=True)

    def __call__(self, x, training=False):
        with_aux = self.aux_logits and training
        x = self.forward_stem(x, training)
        x = self.inception3b(self.inception3a(x, training), training)
        x = self.inception4a(max_pool2d(x, 3, 2, ceil_mode=True), training)
        aux1 = self.aux1(x, training) if with_aux else None
        for block in (self.inception4b, self.inception4c, self.inception4d):
            x = block(x, training)
        aux2 = self.aux2(x, training) if with_aux else None
        x = max_pool2d(self.inception4e(x, training), self.maxpool4_kernel, 2, ceil_mode=True)
        x = self.inception5b(self.inception5a(x, training), training)
        logits = self.fc(self.dropout(global_average(x), training))
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


def googlenet(*, num_classes=1000, aux_logits=False, transform_input=False, dropout=0.2, dropout_aux=0.7):
    return GoogLeNet("googlenet", BasicConv2d, num_classes=num_classes, aux_logits=aux_logits,
                     transform_input=transform_input, dropout=dropout, dropout_aux=dropout_aux)


def inception_v1(*, num_classes=1000, aux_logits=True, dropout=0.4, dropout_aux=0.7):
    return GoogLeNet("inception_v1", ConvReLU, branch3_kernel=5, lrn=True, num_classes=num_classes,
                     aux_logits=aux_logits, dropout=dropout, dropout_aux=dropout_aux)


def googlenet_nobn(*, num_classes=5, aux_logits=True, dropout=0.4, dropout_aux=0.5):
    return GoogLeNet("googlenet_nobn", ConvReLU, branch3_kernel=5, num_classes=num_classes, aux_logits=aux_logits,
                     dropout=dropout, dropout_aux=dropout_aux, seed004=True)


class D2LInception(tf.Module):
    """d2l's Inception: four branches of convs with bias + ReLU, named as d2l names them."""

    def __init__(self, in_channels, spec: InceptionSpec):
        super().__init__()
        self.p1_1 = Conv2d(in_channels, spec.ch1x1, 1)
        self.p2_1 = Conv2d(in_channels, spec.ch3x3red, 1)
        self.p2_2 = Conv2d(spec.ch3x3red, spec.ch3x3, 3, padding=1)
        self.p3_1 = Conv2d(in_channels, spec.ch5x5red, 1)
        self.p3_2 = Conv2d(spec.ch5x5red, spec.ch5x5, 5, padding=2)
        self.p4_2 = Conv2d(in_channels, spec.pool_proj, 1)

    def __call__(self, x, training=False):
        p1 = tf.nn.relu(self.p1_1(x))
        p2 = tf.nn.relu(self.p2_2(tf.nn.relu(self.p2_1(x))))
        p3 = tf.nn.relu(self.p3_2(tf.nn.relu(self.p3_1(x))))
        p4 = tf.nn.relu(self.p4_2(max_pool2d(x, 3, 1, padding=1)))
        return tf.concat([p1, p2, p3, p4], axis=-1)


def d2l_pool(x):
    """d2l's max pool (and seed 000's): 3x3, stride 2, padded by 1, floor mode."""
    return max_pool2d(x, 3, 2, padding=1)


class GoogLeNetD2L(tf.Module):
    def __init__(self, *, in_channels=1, num_classes=10):
        super().__init__(name="googlenet_d2l")
        self.arch, self.in_channels = "googlenet_d2l", in_channels
        self.conv1 = Conv2d(in_channels, 64, 7, 2, padding=3)
        self.conv2 = Conv2d(64, 64, 1)
        self.conv3 = Conv2d(64, 192, 3, padding=1)
        for name, spec in BLOCKS.items():
            setattr(self, name, D2LInception(in_channels_of(name), spec))
        self.fc = Linear(1024, num_classes)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = d2l_pool(tf.nn.relu(self.conv1(x)))
        x = d2l_pool(tf.nn.relu(self.conv3(tf.nn.relu(self.conv2(x)))))
        x = d2l_pool(self.inception3b(self.inception3a(x)))
        for block in (self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e):
            x = block(x)
        x = self.inception5b(self.inception5a(d2l_pool(x)))
        return self.fc(global_average(x))


def googlenet_d2l(**kwargs):
    return GoogLeNetD2L(**kwargs)


class Seed000Conv(tf.Module):
    """seed 000's BasicConv2d: conv (with bias) + ReLU in one list (`conv.0`, `conv.1`)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = [Conv2d(in_channels, out_channels, kernel_size, stride, padding), relu]

    def __call__(self, x):
        return run_layers(self.conv, x)


class Seed000Inception(tf.Module):
    """seed 000's Inception: branch_1x1, branch_3x3, branch_5x5 (5x5) and branch_pool."""

    def __init__(self, in_channels, spec: InceptionSpec):
        super().__init__()
        self.branch_1x1 = Seed000Conv(in_channels, spec.ch1x1, 1)
        self.branch_3x3 = [Seed000Conv(in_channels, spec.ch3x3red, 1),
                           Seed000Conv(spec.ch3x3red, spec.ch3x3, 3, padding=1)]
        self.branch_5x5 = [Seed000Conv(in_channels, spec.ch5x5red, 1),
                           Seed000Conv(spec.ch5x5red, spec.ch5x5, 5, padding=2)]
        self.branch_pool = [partial(max_pool2d, kernel_size=3, stride=1, padding=1),
                            Seed000Conv(in_channels, spec.pool_proj, 1)]

    def __call__(self, x):
        branches = [self.branch_1x1(x)] + [run_layers(b, x) for b in (self.branch_3x3, self.branch_5x5, self.branch_pool)]
        return tf.concat(branches, axis=-1)


class InceptionV1LRN64(tf.Module):
    def __init__(self, *, num_classes=1000):
        super().__init__(name="inception_v1_lrn64")
        self.arch = "inception_v1_lrn64"
        block = lambda name: Seed000Inception(in_channels_of(name), BLOCKS[name])  # noqa: E731
        self.block1 = [Seed000Conv(3, 64, 7, stride=2, padding=3), d2l_pool, partial(local_response_norm, size=64),
                       Seed000Conv(64, 64, 1), Seed000Conv(64, 192, 3, padding=1),
                       partial(local_response_norm, size=192), d2l_pool]
        self.block2 = [block("inception3a"), block("inception3b"), d2l_pool, block("inception4a")]
        self.block3 = [block("inception4b"), block("inception4c"), block("inception4d")]
        self.block4 = [d2l_pool, block("inception4e"), block("inception5a"), block("inception5b"),
                       partial(avg_pool2d, kernel_size=3, stride=1)]
        self.classifier = Linear(4096, num_classes)  # fed in (H, W, C) order: the catalogue permutes it

    def __call__(self, x, training=False):
        check_input(x, self.arch, "block1.0.conv.0", 3)
        x = run_layers([self.block1, self.block2, self.block3, self.block4], x)
        return self.classifier(flatten(x))


def inception_v1_lrn64(**kwargs):
    return InceptionV1LRN64(**kwargs)
