"""Dilated convolutions: a hybrid-dilated-convolution (HDC) net and a dilated ResNet-50 trunk.

HDC (Wang et al., 2018, "Understanding Convolution for Semantic Segmentation"): consecutive
3x3 convs with dilation rates 1, 2, 3 (no common factor), so the stacked receptive field
has no holes ("gridding"). Module paths (canonical keys):
  conv1, bn1                        3x3 stem conv, stride 2, padding 1
  blocks.{b}.conv{k}, .bn{k}        k = 1..3, 3x3 conv, dilation = padding = rates[k-1];
                                    block output = x + (conv-BN-ReLU x3)(x)
  head                              1x1 conv to num_classes, with bias
Output: logits at stride 2, (N, num_classes, ceil(H/2), ceil(W/2)).

resnet50_dilated: resnet50 trunk with replace_stride_with_dilation=(False, True, True)
(output stride 8, DeepLab style), no avgpool/fc; keys are resnet50's without fc.
"""
import torch.nn.functional as F
from torch import nn

from ._common import check_input
from .resnet import ResNet, Bottleneck

HDC_RATES = (1, 2, 3)


class HDCBlock(nn.Module):
    def __init__(self, channels, rates=HDC_RATES):
        super().__init__()
        self.rates = tuple(rates)
        for k, rate in enumerate(self.rates, 1):
            setattr(self, f"conv{k}", nn.Conv2d(channels, channels, 3, padding=rate, dilation=rate, bias=False))
            setattr(self, f"bn{k}", nn.BatchNorm2d(channels))

    def forward(self, x):
        y = x
        for k in range(1, len(self.rates) + 1):
            y = F.relu(getattr(self, f"bn{k}")(getattr(self, f"conv{k}")(y)))
        return x + y


class HDCNet(nn.Module):
    def __init__(self, name="hdc_net", *, width=64, num_blocks=2, num_classes=21, in_channels=3,
                 rates=HDC_RATES):
        super().__init__()
        self.arch, self.in_channels = name, in_channels
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.blocks = nn.Sequential(*(HDCBlock(width, rates) for _ in range(num_blocks)))
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = F.relu(self.bn1(self.conv1(x)))
        return self.head(self.blocks(x))


def hdc_net(**kwargs):
    return HDCNet("hdc_net", **kwargs)


def resnet50_dilated(**kwargs):
    kwargs.setdefault("replace_stride_with_dilation", (False, True, True))
    return ResNet("resnet50_dilated", Bottleneck, [3, 4, 6, 3], include_top=False, **kwargs)
