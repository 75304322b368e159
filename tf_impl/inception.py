"""Inception v3 (torchvision layout: attribute paths are the weight keys) and its keras.applications twin.

See torch_impl/inception.py. The 3x3/1 average pools of the pool branches count the zero
padding (inception_v3) or exclude it (inception_v3_keras); AuxLogits (on Mixed_6e) runs
in training mode only, which then returns InceptionOutputs(logits, aux_logits).
"""
from typing import NamedTuple, Optional

import tensorflow as tf

from .googlenet import BasicConv2d, sequential, transform_imagenet_input
from .layers import Dropout, Linear, avg_pool2d, check_input, global_avg_pool, max_pool2d


class InceptionOutputs(NamedTuple):
    logits: tf.Tensor
    aux_logits: Optional[tf.Tensor]


def avg_pool_3x3(x, count_include_pad):
    """The 3x3/1 average pool (padding 1) in front of a block's branch_pool conv."""
    return avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=count_include_pad)


class InceptionA(tf.Module):
    def __init__(self, in_channels, pool_features, count_include_pad=True):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.count_include_pad = count_include_pad
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def __call__(self, x, training=False):
        branch5x5 = sequential([self.branch5x5_1, self.branch5x5_2], x, training)
        branch3x3dbl = sequential([self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3], x, training)
        branch_pool = self.branch_pool(avg_pool_3x3(x, self.count_include_pad), training)
        return tf.concat([self.branch1x1(x, training), branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(tf.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def __call__(self, x, training=False):
        branch3x3dbl = sequential([self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3], x, training)
        return tf.concat([self.branch3x3(x, training), branch3x3dbl, max_pool2d(x, 3, 2)], axis=-1)


class InceptionC(tf.Module):
    def __init__(self, in_channels, channels_7x7, count_include_pad=True):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.count_include_pad = count_include_pad
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def __call__(self, x, training=False):
        branch7x7 = sequential([self.branch7x7_1, self.branch7x7_2, self.branch7x7_3], x, training)
        branch7x7dbl = sequential([self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                                   self.branch7x7dbl_4, self.branch7x7dbl_5], x, training)
        branch_pool = self.branch_pool(avg_pool_3x3(x, self.count_include_pad), training)
        return tf.concat([self.branch1x1(x, training), branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(tf.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def __call__(self, x, training=False):
        branch3x3 = sequential([self.branch3x3_1, self.branch3x3_2], x, training)
        branch7x7x3 = sequential([self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                                  self.branch7x7x3_4], x, training)
        return tf.concat([branch3x3, branch7x7x3, max_pool2d(x, 3, 2)], axis=-1)


class InceptionE(tf.Module):
    def __init__(self, in_channels, count_include_pad=True):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.count_include_pad = count_include_pad
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def __call__(self, x, training=False):
        branch3x3 = self.branch3x3_1(x, training)
        branch3x3 = tf.concat([self.branch3x3_2a(branch3x3, training), self.branch3x3_2b(branch3x3, training)], -1)
        branch3x3dbl = sequential([self.branch3x3dbl_1, self.branch3x3dbl_2], x, training)
        branch3x3dbl = tf.concat([self.branch3x3dbl_3a(branch3x3dbl, training),
                                  self.branch3x3dbl_3b(branch3x3dbl, training)], -1)
        branch_pool = self.branch_pool(avg_pool_3x3(x, self.count_include_pad), training)
        return tf.concat([self.branch1x1(x, training), branch3x3, branch3x3dbl, branch_pool], axis=-1)


class InceptionAux(tf.Module):
    """5x5/3 average pool, 1x1 conv to 128, 5x5 conv to 768, global average, fc; needs a 17x17 input."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = Linear(768, num_classes)

    def __call__(self, x, training=False):
        x = sequential([self.conv0, self.conv1], avg_pool2d(x, 5, 3), training)
        return self.fc(global_avg_pool(x))


class Inception3(tf.Module):
    def __init__(self, name, *, num_classes=1000, aux_logits=True, transform_input=False, dropout=0.5,
                 count_include_pad=True):
        super().__init__(name=name)
        self.arch, self.aux_logits, self.transform_input = name, aux_logits, transform_input
        self.dropout = Dropout(dropout)
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32, count_include_pad)
        self.Mixed_5c = InceptionA(256, 64, count_include_pad)
        self.Mixed_5d = InceptionA(288, 64, count_include_pad)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, count_include_pad)
        self.Mixed_6c = InceptionC(768, 160, count_include_pad)
        self.Mixed_6d = InceptionC(768, 160, count_include_pad)
        self.Mixed_6e = InceptionC(768, 192, count_include_pad)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, count_include_pad)
        self.Mixed_7c = InceptionE(2048, count_include_pad)
        self.fc = Linear(2048, num_classes)

    def forward_stem(self, x, training=False):
        check_input(x, self.arch, "Conv2d_1a_3x3", 3)
        x = sequential([self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3],
                       transform_imagenet_input(x) if self.transform_input else x, training)
        x = sequential([self.Conv2d_3b_1x1, self.Conv2d_4a_3x3], max_pool2d(x, 3, 2), training)
        return max_pool2d(x, 3, 2)

    def __call__(self, x, training=False):
        with_aux = self.aux_logits and training
        x = sequential([self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e],
                       self.forward_stem(x, training), training)
        aux = self.AuxLogits(x, training) if with_aux else None
        x = sequential([self.Mixed_7a, self.Mixed_7b, self.Mixed_7c], x, training)
        logits = self.fc(self.dropout(global_avg_pool(x), training))
        return InceptionOutputs(logits, aux) if with_aux else logits


def inception_v3(*, num_classes=1000, aux_logits=True, transform_input=False, dropout=0.5):
    return Inception3("inception_v3", num_classes=num_classes, aux_logits=aux_logits,
                      transform_input=transform_input, dropout=dropout)


def inception_v3_keras(*, num_classes=1000, transform_input=False, dropout=0.5):
    """keras.applications.InceptionV3: no auxiliary head, average pools exclude the padding."""
    return Inception3("inception_v3_keras", num_classes=num_classes, aux_logits=False,
                      transform_input=transform_input, dropout=dropout, count_include_pad=False)
