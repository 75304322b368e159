"""ResNet v1, ResNeXt and Wide ResNet (torchvision layout: layer names are the weight keys).

Stride sits on the 3x3 conv of the bottleneck ("v1.5"), as in torchvision.

`resnet18_d2l`: seed 003's (d2l) ResNet-18 with its `Residual` (convs with bias, a 1x1 conv3
without BatchNorm on a changed shortcut), one input channel, 10 classes (torch_impl/resnet.py).

`resnet50_blocks`: seed 000's ResNet-50 with its own names (torch_impl/resnet.py): conv.conv.{0,1},
block1..block4 of bottleneck.{0,2,4} units with a downsample where the channels change, no ReLU
after the stem, and AvgPool2d(4), which on a 7x7 map averages the top-left 4x4 window only.
"""
from typing import NamedTuple

import keras
from keras import layers

from .layers import Linear, batch_norm, check_input, conv2d, global_avg_pool, max_pool, relu


class Stage(NamedTuple):
    planes: int
    blocks: int
    stride: int


def basic_block(x, planes, stride, *, name, downsample, groups=1, base_width=64, dilation=1):
    if groups != 1 or base_width != 64 or dilation != 1:
        raise ValueError("BasicBlock supports only groups=1, base_width=64 and dilation=1")
    shortcut = _downsample(x, planes, stride, name) if downsample else x
    y = relu(batch_norm(conv2d(x, planes, 3, stride=stride, padding=1, bias=False, name=f"{name}.conv1"),
                        name=f"{name}.bn1"))
    y = batch_norm(conv2d(y, planes, 3, padding=1, bias=False, name=f"{name}.conv2"), name=f"{name}.bn2")
    return relu(layers.Add(name=f"{name}.add")([y, shortcut]))


def bottleneck(x, planes, stride, *, name, downsample, groups=1, base_width=64, dilation=1):
    width = int(planes * base_width / 64) * groups
    shortcut = _downsample(x, planes * 4, stride, name) if downsample else x
    y = relu(batch_norm(conv2d(x, width, 1, bias=False, name=f"{name}.conv1"), name=f"{name}.bn1"))
    y = conv2d(y, width, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups, bias=False,
               name=f"{name}.conv2")
    y = relu(batch_norm(y, name=f"{name}.bn2"))
    y = batch_norm(conv2d(y, planes * 4, 1, bias=False, name=f"{name}.conv3"), name=f"{name}.bn3")
    return relu(layers.Add(name=f"{name}.add")([y, shortcut]))


def _downsample(x, channels, stride, name):
    x = conv2d(x, channels, 1, stride=stride, bias=False, name=f"{name}.downsample.0")
    return batch_norm(x, name=f"{name}.downsample.1")


def make_layer(x, block, stage, *, name, inplanes, dilation, dilate, groups, base_width):
    """One stage of units; returns (output, output channels, dilation after this stage)."""
    expansion = 4 if block is bottleneck else 1
    stride, previous_dilation = stage.stride, dilation
    if dilate:
        dilation, stride = dilation * stride, 1
    downsample = stride != 1 or inplanes != stage.planes * expansion
    x = block(x, stage.planes, stride, name=f"{name}.0", downsample=downsample, groups=groups,
              base_width=base_width, dilation=previous_dilation)
    for i in range(1, stage.blocks):
        x = block(x, stage.planes, 1, name=f"{name}.{i}", downsample=False, groups=groups,
                  base_width=base_width, dilation=dilation)
    return x, stage.planes * expansion, dilation


def resnet(name, block, depths, *, num_classes=1000, include_top=True, groups=1, width_per_group=64,
           replace_stride_with_dilation=None, zero_init_residual=False, input_shape=None):
    dilate = replace_stride_with_dilation or (False, False, False)
    if len(dilate) != 3:
        raise ValueError(f"{name}: replace_stride_with_dilation needs 3 booleans; got {dilate!r}")
    stages = [Stage(64 * 2 ** i, n, 1 if i == 0 else 2) for i, n in enumerate(depths)]

    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = check_input(inputs, name, "conv1", 3)
    x = relu(batch_norm(conv2d(x, 64, 7, stride=2, padding=3, bias=False, name="conv1"), name="bn1"))
    x = max_pool(x, 3, 2, padding=1, name="maxpool")
    channels, dilation = 64, 1
    for i, stage in enumerate(stages):
        x, channels, dilation = make_layer(x, block, stage, name=f"layer{i + 1}", inplanes=channels,
                                           dilation=dilation, dilate=i > 0 and dilate[i - 1],
                                           groups=groups, base_width=width_per_group)
    if include_top:
        x = global_avg_pool(x, name="avgpool")
        x = Linear(num_classes, name="fc")(x)
    model = keras.Model(inputs, x, name=name)
    if zero_init_residual:
        zero_last_norms(model, "bn3" if block is bottleneck else "bn2")
    return model


def zero_last_norms(model, last):
    """zero_init_residual: the last BatchNorm of every residual branch starts with scale 0, so
    each block starts as its shortcut."""
    for layer in model.layers:
        if layer.name.startswith("layer") and layer.name.endswith(f".{last}"):
            layer.gamma.assign(keras.ops.zeros_like(layer.gamma))


def resnet18(**kwargs):
    return resnet("resnet18", basic_block, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs):
    return resnet("resnet34", basic_block, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs):
    return resnet("resnet50", bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs):
    return resnet("resnet101", bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs):
    return resnet("resnet152", bottleneck, [3, 8, 36, 3], **kwargs)


def resnext50_32x4d(**kwargs):
    return resnet("resnext50_32x4d", bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(**kwargs):
    return resnet("resnext101_32x8d", bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)


def resnext101_64x4d(**kwargs):
    return resnet("resnext101_64x4d", bottleneck, [3, 4, 23, 3], groups=64, width_per_group=4, **kwargs)


def wide_resnet50_2(**kwargs):
    return resnet("wide_resnet50_2", bottleneck, [3, 4, 6, 3], width_per_group=128, **kwargs)


def wide_resnet101_2(**kwargs):
    return resnet("wide_resnet101_2", bottleneck, [3, 4, 23, 3], width_per_group=128, **kwargs)


def residual(x, channels, stride, *, name):
    """d2l's residual unit: convs with bias, a 1x1 conv3 (no BatchNorm) on a changed shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != channels:
        shortcut = conv2d(x, channels, 1, stride=stride, name=f"{name}.conv3")
    y = relu(batch_norm(conv2d(x, channels, 3, stride=stride, padding=1, name=f"{name}.conv1"), name=f"{name}.bn1"))
    y = batch_norm(conv2d(y, channels, 3, padding=1, name=f"{name}.conv2"), name=f"{name}.bn2")
    return relu(layers.Add(name=f"{name}.add")([y, shortcut]))


def resnet18_d2l(*, in_channels=None, num_classes=10, input_shape=None):
    inputs = keras.Input(shape=input_shape or (None, None, in_channels or 1), name="input")
    x = relu(batch_norm(conv2d(inputs, 64, 7, stride=2, padding=3, name="conv1"), name="bn1"))
    x = max_pool(x, 3, 2, padding=1, name="maxpool")
    for i, (channels, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
        x = residual(x, channels, stride, name=f"layer{i + 1}.0")
        x = residual(x, channels, 1, name=f"layer{i + 1}.1")
    x = Linear(num_classes, name="fc")(global_avg_pool(x, name="avgpool"))
    return keras.Model(inputs, x, name="resnet18_d2l")


def conv_bn(x, filters, kernel_size, *, name, stride=1, padding=0):
    """seed 000's BasicConv2d for its ResNet: conv (no bias) + BatchNorm at `{name}.conv.0`, `{name}.conv.1`."""
    x = conv2d(x, filters, kernel_size, stride=stride, padding=padding, bias=False, name=f"{name}.conv.0")
    return batch_norm(x, name=f"{name}.conv.1")


def seed000_bottleneck(x, mid_channels, out_channels, stride, *, name):
    """seed 000's bottleneck unit: bottleneck.{0,2,4} (1x1, 3x3 carrying the stride, 1x1) with
    ReLUs between; a `downsample` (strided 1x1 conv + BN) where the channels change."""
    shortcut = x
    if x.shape[-1] != out_channels:
        shortcut = conv_bn(x, out_channels, 1, stride=stride, name=f"{name}.downsample")
    y = relu(conv_bn(x, mid_channels, 1, name=f"{name}.bottleneck.0"))
    y = relu(conv_bn(y, mid_channels, 3, stride=stride, padding=1, name=f"{name}.bottleneck.2"))
    y = conv_bn(y, out_channels, 1, name=f"{name}.bottleneck.4")
    return relu(layers.Add(name=f"{name}.add")([y, shortcut]))


class BlockStage(NamedTuple):
    mid_channels: int
    out_channels: int
    units: int
    stride: int


SEED000_STAGES = (BlockStage(64, 256, 3, 1), BlockStage(128, 512, 4, 2), BlockStage(256, 1024, 6, 2),
                  BlockStage(512, 2048, 3, 2))


def resnet50_blocks(*, num_classes=1000, input_shape=(224, 224, 3)):
    inputs = keras.Input(shape=input_shape, name="input")
    x = max_pool(conv_bn(inputs, 64, 7, stride=2, padding=3, name="conv"), 3, 2, padding=1, name="maxpool")
    for i, stage in enumerate(SEED000_STAGES, start=1):
        for u in range(stage.units):
            x = seed000_bottleneck(x, stage.mid_channels, stage.out_channels, stage.stride if u == 0 else 1,
                                   name=f"block{i}.{u}")
    x = layers.Flatten(name="flatten")(layers.AveragePooling2D(4, 4, name="avgpool")(x))
    return keras.Model(inputs, Linear(num_classes, name="classifier")(x), name="resnet50_blocks")
