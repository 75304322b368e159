"""keras.applications' ResNet50/101/152: the original Caffe-style ResNet v1.

Unlike torchvision's "v1.5" (tf_impl/resnet.py): stride on the *first* 1x1 conv of a
bottleneck, a bias on every conv, BN epsilon 1.001e-5. Attribute paths are the torch
module paths of torch_impl/resnet_keras.py (torchvision's paths plus conv biases).
"""
import tensorflow as tf

from .layers import Linear, check_input, global_avg_pool
from .resnet_v2 import Block, Unit, batch_norm, conv2d_same, make_layer, zero_padded_max_pool


def resnet_keras_blocks(units_per_stage):
    """Stride on the *first* unit of a stage (v1), 2 everywhere except the first stage."""
    strides = (1, 2, 2, 2)
    blocks = []
    for i, n in enumerate(units_per_stage):
        width = 64 * 2 ** i
        units = [Unit(4 * width, width, strides[i])] + [Unit(4 * width, width, 1)] * (n - 1)
        blocks.append(Block(f"layer{i + 1}", BottleneckV1, units))
    return blocks


class BottleneckV1(tf.Module):
    def __init__(self, in_ch, depth, depth_bottleneck, stride):
        super().__init__()
        self.conv1 = conv2d_same(in_ch, depth_bottleneck, 1, stride, bias=True)
        self.bn1 = batch_norm(depth_bottleneck)
        self.conv2 = conv2d_same(depth_bottleneck, depth_bottleneck, 3, bias=True)
        self.bn2 = batch_norm(depth_bottleneck)
        self.conv3 = conv2d_same(depth_bottleneck, depth, 1, bias=True)
        self.bn3 = batch_norm(depth)
        self.downsample = None
        if stride != 1 or in_ch != depth:
            self.downsample = [conv2d_same(in_ch, depth, 1, stride, bias=True), batch_norm(depth)]

    def __call__(self, x, training=False):
        shortcut = x if self.downsample is None else self._project(x, training)
        y = tf.nn.relu(self.bn1(self.conv1(x), training))
        y = tf.nn.relu(self.bn2(self.conv2(y), training))
        y = self.bn3(self.conv3(y), training)
        return tf.nn.relu(shortcut + y)

    def _project(self, x, training):
        conv, bn = self.downsample
        return bn(conv(x), training)


class ResNetKeras(tf.Module):
    def __init__(self, name, blocks, *, num_classes=1000, include_top=True):
        super().__init__(name=name)
        self.arch, self.include_top = name, include_top
        self._stage_names = [block.name for block in blocks]
        self.conv1 = conv2d_same(3, 64, 7, stride=2, bias=True)
        self.bn1 = batch_norm(64)
        channels = 64
        for block in blocks:
            setattr(self, block.name, make_layer(block, channels))
            channels = block.args[-1].depth
        if include_top:
            self.fc = Linear(channels, num_classes)

    def forward_features(self, x, training=False):
        check_input(x, self.arch, "conv1", 3)
        x = zero_padded_max_pool(tf.nn.relu(self.bn1(self.conv1(x), training)))
        for name in self._stage_names:
            for unit in getattr(self, name):
                x = unit(x, training)
        return x

    def __call__(self, x, training=False):
        x = self.forward_features(x, training)
        if not self.include_top:
            return x
        return self.fc(global_avg_pool(x))


def resnet50_keras(**kwargs):
    return ResNetKeras("resnet50_keras", resnet_keras_blocks([3, 4, 6, 3]), **kwargs)


def resnet101_keras(**kwargs):
    return ResNetKeras("resnet101_keras", resnet_keras_blocks([3, 4, 23, 3]), **kwargs)


def resnet152_keras(**kwargs):
    return ResNetKeras("resnet152_keras", resnet_keras_blocks([3, 8, 36, 3]), **kwargs)
