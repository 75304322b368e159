"""Inception v3 (torchvision layout: module paths are the weight keys) and its keras.applications twin.

inception_v3: BasicConv2d (conv without bias + BatchNorm eps 0.001 + ReLU) throughout; the
3x3/1 average pools of the pool branches count the zero padding (count_include_pad=True,
torch's default); the AuxLogits head (on Mixed_6e) runs in training mode only, which then
returns InceptionOutputs(logits, aux_logits). Smallest input: 75x75 (299x299 for the
auxiliary head).

inception_v3_keras: the same layout without AuxLogits and with pools that exclude the
padding, which is exactly keras.applications.InceptionV3 (its BatchNorm has no scale: the
importer fills weight=1).
"""
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ._common import Dropout, check_input
from .googlenet import BasicConv2d, init_weights, transform_imagenet_input


class InceptionOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits: Optional[torch.Tensor]


def avg_pool_3x3(x, count_include_pad):
    """The 3x3/1 average pool (padding 1) in front of a block's branch_pool conv."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=count_include_pad)


class InceptionA(nn.Module):
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

    def forward(self, x):
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(avg_pool_3x3(x, self.count_include_pad))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
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

    def forward(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(avg_pool_3x3(x, self.count_include_pad))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
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

    def forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        branch_pool = self.branch_pool(avg_pool_3x3(x, self.count_include_pad))
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], 1)


class InceptionAux(nn.Module):
    """5x5/3 average pool, 1x1 conv to 128, 5x5 conv to 768, global average, fc; needs a 17x17 input."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class Inception3(nn.Module):
    def __init__(self, name, *, num_classes=1000, aux_logits=True, transform_input=False, dropout=0.5,
                 count_include_pad=True):
        super().__init__()
        self.arch, self.aux_logits, self.transform_input = name, aux_logits, transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
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
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        init_weights(self)

    def forward_stem(self, x):
        check_input(x, self.arch, "Conv2d_1a_3x3", 3)
        x = self.Conv2d_1a_3x3(transform_imagenet_input(x) if self.transform_input else x)
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(x)))
        return self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))

    def forward(self, x):
        with_aux = self.aux_logits and self.training
        x = self.forward_stem(x)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        aux = self.AuxLogits(x) if with_aux else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return InceptionOutputs(logits, aux) if with_aux else logits


def inception_v3(*, num_classes=1000, aux_logits=True, transform_input=False, dropout=0.5):
    return Inception3("inception_v3", num_classes=num_classes, aux_logits=aux_logits,
                      transform_input=transform_input, dropout=dropout)


def inception_v3_keras(*, num_classes=1000, transform_input=False, dropout=0.5):
    """keras.applications.InceptionV3: no auxiliary head, average pools exclude the padding."""
    return Inception3("inception_v3_keras", num_classes=num_classes, aux_logits=False,
                      transform_input=transform_input, dropout=dropout, count_include_pad=False)
