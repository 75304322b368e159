"""ResNet + Feature Pyramid Network, in the layout of torchvision's `resnet_fpn_backbone`.

Weight keys:
  body.*                      the ResNet trunk without avgpool/fc (conv1 ... layer4), BatchNorm2d
  fpn.inner_blocks.{i}.0      1x1 lateral conv of stage i (layer{i+1}), with bias
  fpn.layer_blocks.{i}.0      3x3 output conv of level i, padding 1, with bias
(the `.0`: torchvision wraps each conv in a Conv2dNormActivation Sequential.)

Outputs, finest first: p2, p3, p4, p5 and pool = max_pool2d(p5, kernel 1, stride 2);
torchvision names them "0", "1", "2", "3", "pool". The top-down path upsamples with
F.interpolate(mode="nearest", size=lateral size): src = min(floor(dst * (in / out)), in - 1)
with the scale in float32, which keras_impl/tf_impl reproduce exactly.
"""
from collections import OrderedDict

import torch.nn.functional as F
from torch import nn

from .features import resnet_stage_features
from .resnet import resnet18, resnet34, resnet50, resnet101

OUTPUT_NAMES = ("p2", "p3", "p4", "p5", "pool")


def resize_nearest(x, size):
    return F.interpolate(x, size=tuple(size), mode="nearest")


class FeaturePyramid(nn.Module):
    def __init__(self, in_channels_list, out_channels=256):
        super().__init__()
        self.inner_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, out_channels, 1)) for c in in_channels_list)
        self.layer_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1))
                                          for _ in in_channels_list)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features):
        """features: stage outputs, finest first -> pyramid levels, finest first, plus the pooled level."""
        top = self.inner_blocks[-1](features[-1])
        levels = [self.layer_blocks[-1](top)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[i](features[i])
            top = lateral + resize_nearest(top, lateral.shape[-2:])
            levels.insert(0, self.layer_blocks[i](top))
        levels.append(F.max_pool2d(levels[-1], 1, 2))
        return levels


class ResNetFPN(nn.Module):
    def __init__(self, name, trunk_builder, *, out_channels=256, **trunk_kwargs):
        super().__init__()
        self.arch = name
        self.body = trunk_builder(include_top=False, **trunk_kwargs)
        c2 = self.body.inplanes // 8  # layer4 has 8x the channels of layer1
        self.fpn = FeaturePyramid([c2, c2 * 2, c2 * 4, c2 * 8], out_channels)

    def forward(self, x):
        features = resnet_stage_features(self.body, x)
        return OrderedDict(zip(OUTPUT_NAMES, self.fpn(list(features.values()))))


def resnet18_fpn(**kwargs):
    return ResNetFPN("resnet18_fpn", resnet18, **kwargs)


def resnet34_fpn(**kwargs):
    return ResNetFPN("resnet34_fpn", resnet34, **kwargs)


def resnet50_fpn(**kwargs):
    return ResNetFPN("resnet50_fpn", resnet50, **kwargs)


def resnet101_fpn(**kwargs):
    return ResNetFPN("resnet101_fpn", resnet101, **kwargs)
