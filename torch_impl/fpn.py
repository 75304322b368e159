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

fpn_shared_head: seed 000's FPN. The trunk is a torchvision-layout ResNet-50 at the top level
(conv1, bn1, layer1..layer4: the tutorial keeps it outside its module, so its checkpoint is the
trunk's keys plus the FPN's), lateral 1x1 convs C2toM2 .. C5toM5, ONE 3x3 conv MtoP applied to
every level, and a top-down path through F.upsample_bilinear, which is bilinear with
align_corners=True (the text's comment says nearest; the code is what runs). Outputs p2..p5.
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


def resize_bilinear_corners(x, size):
    """F.upsample_bilinear(x, size): bilinear with align_corners=True (corner pixels map to corner pixels)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class SharedHeadFPN(nn.Module):
    def __init__(self, *, out_channels=256):
        super().__init__()
        self.arch = "fpn_shared_head"
        trunk = resnet50(include_top=False)
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.MtoP = nn.Conv2d(out_channels, out_channels, 3, 1, 1)  # one conv, shared by the four levels
        self.C2toM2 = nn.Conv2d(256, out_channels, 1)
        self.C3toM3 = nn.Conv2d(512, out_channels, 1)
        self.C4toM4 = nn.Conv2d(1024, out_channels, 1)
        self.C5toM5 = nn.Conv2d(2048, out_channels, 1)

    def forward(self, x):
        c2, c3, c4, c5 = resnet_stage_features(self, x).values()
        m5 = self.C5toM5(c5)
        m4 = self._upsample_add(m5, self.C4toM4(c4))
        m3 = self._upsample_add(m4, self.C3toM3(c3))
        m2 = self._upsample_add(m3, self.C2toM2(c2))
        return OrderedDict(zip(OUTPUT_NAMES, (self.MtoP(m) for m in (m2, m3, m4, m5))))

    @staticmethod
    def _upsample_add(top, lateral):
        return resize_bilinear_corners(top, lateral.shape[-2:]) + lateral


def fpn_shared_head(**kwargs):
    return SharedHeadFPN(**kwargs)


def resnet18_fpn(**kwargs):
    return ResNetFPN("resnet18_fpn", resnet18, **kwargs)


def resnet34_fpn(**kwargs):
    return ResNetFPN("resnet34_fpn", resnet34, **kwargs)


def resnet50_fpn(**kwargs):
    return ResNetFPN("resnet50_fpn", resnet50, **kwargs)


def resnet101_fpn(**kwargs):
    return ResNetFPN("resnet101_fpn", resnet101, **kwargs)
