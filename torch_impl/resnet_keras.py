"""keras.applications' ResNet50/101/152: the original Caffe-style ResNet v1.

It differs from torchvision's ResNet ("v1.5", torch_impl/resnet.py) in three ways, all
needed for keras.applications' weights to load and compute the same function:
the stride sits on the *first* 1x1 conv of a bottleneck, every conv has a bias, and BN
epsilon is 1.001e-5. Module paths are torchvision's, plus the conv biases:

    conv1, bn1                   7x7/2 stem conv (with bias) and its BN
    layer{1..4}.{i}.conv1, .bn1  1x1 (stride here)
    layer{1..4}.{i}.conv2, .bn2  3x3
    layer{1..4}.{i}.conv3, .bn3  1x1
    layer{1..4}.{i}.downsample.0, .downsample.1
                                 projection conv (with bias) and BN, first unit of a stage
    fc                           classifier

The stem pool is keras' zero-pad + VALID max-pool; after a ReLU it equals torch's
MaxPool2d(3, 2, padding=1), but it is written as the reference writes it.
"""
import torch
from torch import nn
from torch.nn import functional as F

from ._common import check_input
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


class BottleneckV1(nn.Module):
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
            self.downsample = nn.Sequential(conv2d_same(in_ch, depth, 1, stride, bias=True), batch_norm(depth))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(shortcut + y)


class ResNetKeras(nn.Module):
    def __init__(self, name, blocks, *, num_classes=1000, include_top=True):
        super().__init__()
        self.arch, self.include_top = name, include_top
        self._stage_names = [block.name for block in blocks]
        self.conv1 = conv2d_same(3, 64, 7, stride=2, bias=True)
        self.bn1 = batch_norm(64)
        channels = 64
        for block in blocks:
            self.add_module(block.name, make_layer(block, channels))
            channels = block.args[-1].depth
        if include_top:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        check_input(x, self.arch, "conv1", 3)
        x = zero_padded_max_pool(F.relu(self.bn1(self.conv1(x))))
        for name in self._stage_names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x):
        x = self.forward_features(x)
        if not self.include_top:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50_keras(**kwargs):
    return ResNetKeras("resnet50_keras", resnet_keras_blocks([3, 4, 6, 3]), **kwargs)


def resnet101_keras(**kwargs):
    return ResNetKeras("resnet101_keras", resnet_keras_blocks([3, 4, 23, 3]), **kwargs)


def resnet152_keras(**kwargs):
    return ResNetKeras("resnet152_keras", resnet_keras_blocks([3, 8, 36, 3]), **kwargs)
