"""Pre-activation ResNet v2 (He et al., "Identity Mappings in Deep Residual Networks").

Layout of TF-slim's resnet_v2 and keras.applications' ResNet50V2: BN-ReLU
pre-activation in every unit, stride on the *last* unit of a stage, projection shortcut
from the pre-activated input, strided identity shortcut as a 1x1 max-pool, BN-ReLU
after the last stage. BN epsilon 1.001e-5; a conv not followed by a BN has a bias.

Weighted layers are named by the torch module paths of torch_impl/resnet_v2.py
(conv1, layerS.i.preact, layerS.i.downsample, layerS.i.conv1 ... conv3, post_bn, fc).
The stem pads with zeros before its max-pool, exactly as keras.applications does.
"""
from typing import Callable, NamedTuple

import keras
from keras import layers

from .layers import Linear, batch_norm, conv2d, global_avg_pool, relu

BN_EPS = 1.001e-5  # keras.applications' epsilon; its weights were trained with it


class Unit(NamedTuple):
    depth: int  # output channels
    depth_bottleneck: int  # channels inside the unit
    stride: int


class Block(NamedTuple):
    name: str  # layer-name prefix of the stage (the torch module path)
    unit_fn: Callable
    args: list  # one Unit per residual unit


def stage_units(width, units, stride, expansion):
    """TF-slim's stage spec: every unit at stride 1 except the last."""
    depth = width * expansion
    return [Unit(depth, width, 1)] * (units - 1) + [Unit(depth, width, stride)]


def resnet_v2_blocks(unit_fn, units_per_stage):
    strides = (2, 2, 2, 1)
    return [Block(f"layer{i + 1}", unit_fn, stage_units(64 * 2 ** i, n, strides[i], unit_fn.expansion))
            for i, n in enumerate(units_per_stage)]


def bn(x, name):
    return batch_norm(x, name=name, eps=BN_EPS)


def conv2d_same(x, filters, kernel_size, *, name, stride=1, bias=False):
    """A conv with symmetric (k - 1) // 2 zero padding: TF-slim's conv2d_same for odd kernels."""
    if kernel_size % 2 == 0:
        raise ValueError(f"conv2d_same pads symmetrically and needs an odd kernel; got {kernel_size}")
    return conv2d(x, filters, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=bias, name=name)


def zero_padded_max_pool(x, kernel_size=3, stride=2, padding=1, *, name):
    """keras.applications' stem pool: ZeroPadding2D, then a VALID max-pool (not -inf padding)."""
    x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return layers.MaxPooling2D(kernel_size, stride, padding="valid", name=name)(x)


def subsample(x, stride, *, name):
    """The strided identity shortcut: a 1x1 max-pool, i.e. every stride-th pixel."""
    return x if stride == 1 else layers.MaxPooling2D(1, stride, name=f"{name}.subsample")(x)


def _shortcut(x, preact, depth, stride, name):
    if x.shape[-1] == depth:
        return subsample(x, stride, name=name)
    return conv2d_same(preact, depth, 1, stride=stride, bias=True, name=f"{name}.downsample")


def bottleneck_v2(x, depth, depth_bottleneck, stride, *, name):
    preact = relu(bn(x, f"{name}.preact"))
    shortcut = _shortcut(x, preact, depth, stride, name)
    y = relu(bn(conv2d_same(preact, depth_bottleneck, 1, name=f"{name}.conv1"), f"{name}.bn1"))
    y = relu(bn(conv2d_same(y, depth_bottleneck, 3, stride=stride, name=f"{name}.conv2"), f"{name}.bn2"))
    y = conv2d_same(y, depth, 1, bias=True, name=f"{name}.conv3")
    return layers.Add(name=f"{name}.add")([shortcut, y])


def basic_v2(x, depth, depth_bottleneck, stride, *, name):
    preact = relu(bn(x, f"{name}.preact"))
    shortcut = _shortcut(x, preact, depth, stride, name)
    y = relu(bn(conv2d_same(preact, depth_bottleneck, 3, stride=stride, name=f"{name}.conv1"), f"{name}.bn1"))
    y = conv2d_same(y, depth, 3, bias=True, name=f"{name}.conv2")
    return layers.Add(name=f"{name}.add")([shortcut, y])


bottleneck_v2.expansion = 4
basic_v2.expansion = 1


def make_layer(x, block):
    """One stage: a unit per spec in block.args, named `<stage>.<index>` like torch's Sequential."""
    for i, unit in enumerate(block.args):
        x = block.unit_fn(x, *unit, name=f"{block.name}.{i}")
    return x


def resnet_v2(name, blocks, *, num_classes=1000, include_top=True, input_shape=None):
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = conv2d_same(inputs, 64, 7, stride=2, bias=True, name="conv1")
    x = zero_padded_max_pool(x, name="maxpool")
    for block in blocks:
        x = make_layer(x, block)
    x = relu(bn(x, "post_bn"), name="post_relu")
    if include_top:
        x = global_avg_pool(x, name="avgpool")
        x = Linear(num_classes, name="fc")(x)
    return keras.Model(inputs, x, name=name)


def resnet18_v2(**kwargs):
    return resnet_v2("resnet18_v2", resnet_v2_blocks(basic_v2, [2, 2, 2, 2]), **kwargs)


def resnet34_v2(**kwargs):
    return resnet_v2("resnet34_v2", resnet_v2_blocks(basic_v2, [3, 4, 6, 3]), **kwargs)


def resnet50_v2(**kwargs):
    return resnet_v2("resnet50_v2", resnet_v2_blocks(bottleneck_v2, [3, 4, 6, 3]), **kwargs)


def resnet101_v2(**kwargs):
    return resnet_v2("resnet101_v2", resnet_v2_blocks(bottleneck_v2, [3, 4, 23, 3]), **kwargs)


def resnet152_v2(**kwargs):
    return resnet_v2("resnet152_v2", resnet_v2_blocks(bottleneck_v2, [3, 8, 36, 3]), **kwargs)
