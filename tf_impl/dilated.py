"""Dilated convolutions: a hybrid-dilated-convolution (HDC) net and a dilated ResNet-50 trunk.

Attribute paths (= canonical keys, defined in torch_impl/dilated.py):
  conv1, bn1                   3x3 stem conv, stride 2, padding 1
  blocks.{b}.conv{k}, .bn{k}   k = 1..3, 3x3 conv, dilation = padding = rates[k-1] (1, 2, 3);
                               block output = x + (conv-BN-ReLU x3)(x)
  head                         1x1 conv to num_classes, with bias
resnet50_dilated: resnet50 trunk with replace_stride_with_dilation=(False, True, True), no fc.
"""
import tensorflow as tf

from .layers import BatchNorm2d, Conv2d, check_input
from .resnet import Bottleneck, ResNet

HDC_RATES = (1, 2, 3)


class HDCBlock(tf.Module):
    def __init__(self, channels, rates=HDC_RATES):
        super().__init__()
        self.rates = tuple(rates)
        for k, rate in enumerate(self.rates, 1):
            setattr(self, f"conv{k}", Conv2d(channels, channels, 3, padding=rate, dilation=rate, bias=False))
            setattr(self, f"bn{k}", BatchNorm2d(channels))

    def __call__(self, x, training=False):
        y = x
        for k in range(1, len(self.rates) + 1):
            y = tf.nn.relu(getattr(self, f"bn{k}")(getattr(self, f"conv{k}")(y), training))
        return x + y


class HDCNet(tf.Module):
    def __init__(self, name="hdc_net", *, width=64, num_blocks=2, num_classes=21, in_channels=3,
                 rates=HDC_RATES):
        super().__init__(name=name)
        self.arch, self.in_channels = name, in_channels
        self.conv1 = Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.blocks = [HDCBlock(width, rates) for _ in range(num_blocks)]
        self.head = Conv2d(width, num_classes, 1)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = tf.nn.relu(self.bn1(self.conv1(x), training))
        for block in self.blocks:
            x = block(x, training)
        return self.head(x)


def hdc_net(**kwargs):
    return HDCNet("hdc_net", **kwargs)


def resnet50_dilated(**kwargs):
    kwargs.setdefault("replace_stride_with_dilation", (False, True, True))
    return ResNet("resnet50_dilated", Bottleneck, [3, 4, 6, 3], include_top=False, **kwargs)
