"""Dilated convolutions: a hybrid-dilated-convolution (HDC) net and a dilated ResNet-50 trunk.

Layer names (= canonical keys, defined in torch_impl/dilated.py):
  conv1, bn1                   3x3 stem conv, stride 2, padding 1
  blocks.{b}.conv{k}, .bn{k}   k = 1..3, 3x3 conv, dilation = padding = rates[k-1] (1, 2, 3);
                               block output = x + (conv-BN-ReLU x3)(x)
  head                         1x1 conv to num_classes, with bias
resnet50_dilated: resnet50 trunk with replace_stride_with_dilation=(False, True, True), no fc.
"""
import keras
from keras import layers

from .layers import batch_norm, conv2d, relu
from .resnet import bottleneck, resnet

HDC_RATES = (1, 2, 3)


def hdc_block(x, channels, *, name, rates=HDC_RATES):
    y = x
    for k, rate in enumerate(rates, 1):
        y = conv2d(y, channels, 3, padding=rate, dilation=rate, bias=False, name=f"{name}.conv{k}")
        y = relu(batch_norm(y, name=f"{name}.bn{k}"))
    return layers.Add(name=f"{name}.add")([x, y])


def hdc_net_model(name="hdc_net", *, width=64, num_blocks=2, num_classes=21, in_channels=3, rates=HDC_RATES,
                  input_shape=None):
    inputs = keras.Input(shape=input_shape or (None, None, in_channels), name="input")
    x = conv2d(inputs, width, 3, stride=2, padding=1, bias=False, name="conv1")
    x = relu(batch_norm(x, name="bn1"))
    for b in range(num_blocks):
        x = hdc_block(x, width, name=f"blocks.{b}", rates=rates)
    return keras.Model(inputs, conv2d(x, num_classes, 1, name="head"), name=name)


def hdc_net(**kwargs):
    return hdc_net_model("hdc_net", **kwargs)


def resnet50_dilated(**kwargs):
    kwargs.setdefault("replace_stride_with_dilation", (False, True, True))
    return resnet("resnet50_dilated", bottleneck, [3, 4, 6, 3], include_top=False, **kwargs)
