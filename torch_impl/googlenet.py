"""GoogLeNet (torchvision layout) and the paper's Inception v1 (Szegedy et al., 2014).

googlenet: module paths are torchvision's weight keys. BasicConv2d is conv (no bias) +
BatchNorm (eps 0.001) + ReLU, every max-pool uses ceil_mode=True, and branch3 of each
Inception block is a 3x3 conv (torchvision's layout; the paper says 5x5).

inception_v1: the paper's network. It reuses googlenet's module paths (docs/inception.md):
    conv1.conv, conv2.conv, conv3.conv      conv with bias, then ReLU (no BatchNorm anywhere)
    lrn1, lrn2                              LocalResponseNorm(5, 1e-4, 0.75, 1) after maxpool1 / conv3
    inceptionXY.branch1.conv                1x1
    inceptionXY.branch2.{0,1}.conv          1x1 reduce, 3x3
    inceptionXY.branch3.{0,1}.conv          1x1 reduce, 5x5 (padding 2)
    inceptionXY.branch4.1.conv              1x1 after the 3x3/1 max-pool branch4.0
    aux1, aux2: .conv.conv, .fc1, .fc2      auxiliary heads on inception4a / inception4d
    fc                                      1024 -> classes, after global average pooling

googlenet_nobn: seed 004's GoogLeNet for its flower set, inception_v1's paths without LRN:
conv with bias + ReLU, 5x5 third branch, maxpool4 3x3/2 (torchvision's is 2x2/2), and aux
heads that pool with AvgPool2d(5, stride=3) (on a 14x14 map: windows at 0/3/6/9, 5 wide; an
adaptive 4x4 pool's start at 0/3/7/10) and drop out before fc1 and before fc2 (p 0.5).

googlenet_d2l: seed 003's (d2l) GoogLeNet for one input channel and 10 classes: convs with
bias + ReLU, d2l's Inception with its own branch names (p1_1; p2_1, p2_2; p3_1, p3_2 5x5; p4_2
after the max pool), every max pool 3x3/2 padded by 1 *without* ceil_mode (where torchvision's
use ceil_mode and no padding), no LRN, no aux heads, no dropout. Paths: conv1, conv2, conv3,
inception3a..inception5b, fc, as googlenet's, with the branches inside named as d2l names them.

inception_v1_lrn64: seed 000's Inception v1 at 128 px, its own paths: block1 .. block4 (nn.Sequential),
convs with bias + ReLU wrapped as `conv.0` (`block1.0.conv.0`), branches branch_1x1,
branch_3x3.{0,1}, branch_5x5.{0,1} (5x5), branch_pool.1 after the 3x3/1 max pool, every other
max pool 3x3/2 padded by 1 (floor mode), nn.LocalResponseNorm(64) and (192) (window sizes, not
the paper's 5: an even window sums size/2 channels before and size/2 - 1 after, and alpha is
divided by the size), AvgPool2d(3, stride=1) on the 4x4 map, then a CHW flatten into
classifier = Linear(4096, classes). The evaluation form: the text leaves out its aux heads.

With auxiliary heads, training mode returns GoogLeNetOutputs(logits, aux_logits2,
aux_logits1) (torchvision's order, and seed 004's); eval mode returns the logits only.
"""
from typing import NamedTuple, Optional

import torch
from torch import nn

from ._common import Dropout, check_input


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits2: Optional[torch.Tensor]
    aux_logits1: Optional[torch.Tensor]


class InceptionSpec(NamedTuple):
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


BLOCKS = {
    "inception3a": InceptionSpec(64, 96, 128, 16, 32, 32),
    "inception3b": InceptionSpec(128, 128, 192, 32, 96, 64),
    "inception4a": InceptionSpec(192, 96, 208, 16, 48, 64),
    "inception4b": InceptionSpec(160, 112, 224, 24, 64, 64),
    "inception4c": InceptionSpec(128, 128, 256, 24, 64, 64),
    "inception4d": InceptionSpec(112, 144, 288, 32, 64, 64),
    "inception4e": InceptionSpec(256, 160, 320, 32, 128, 128),
    "inception5a": InceptionSpec(256, 160, 320, 32, 128, 128),
    "inception5b": InceptionSpec(384, 192, 384, 48, 128, 128),
}
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)  # the paper's Caffe model
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def transform_imagenet_input(x: torch.Tensor) -> torch.Tensor:
    """Re-normalise an ImageNet-normalised input to the [-1, 1] range the original weights expect."""
    scale = torch.tensor([s / 0.5 for s in IMAGENET_STD], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    shift = torch.tensor([(m - 0.5) / 0.5 for m in IMAGENET_MEAN], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * scale + shift


def in_channels_of(name: str) -> int:
    """The input width of Inception block `name`: the output of the block before it (conv3's 192 first)."""
    names = list(BLOCKS)
    return BLOCKS[names[names.index(name) - 1]].out_channels if names.index(name) else 192


def init_weights(model: nn.Module) -> None:
    """He normal (fan in) for conv and fc, zero biases; BatchNorm starts as the identity."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicConv2d(nn.Module):
    """conv (no bias) + BatchNorm (eps 0.001) + ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class ConvReLU(nn.Module):
    """conv (with bias) + ReLU: the paper's unit, named like BasicConv2d's conv."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x):
        return torch.relu(self.conv(x))


class Inception(nn.Module):
    def __init__(self, in_channels, spec: InceptionSpec, conv_block, branch3_kernel=3):
        super().__init__()
        self.branch1 = conv_block(in_channels, spec.ch1x1, 1)
        self.branch2 = nn.Sequential(conv_block(in_channels, spec.ch3x3red, 1),
                                     conv_block(spec.ch3x3red, spec.ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(conv_block(in_channels, spec.ch5x5red, 1),
                                     conv_block(spec.ch5x5red, spec.ch5x5, branch3_kernel,
                                                padding=branch3_kernel // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     conv_block(in_channels, spec.pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 adaptive average pool, 1x1 conv to 128, fc 2048 -> 1024 -> classes.
    seed 004's (`seed004=True`): AvgPool2d(5, stride=3) instead, and dropout before fc1 too."""

    def __init__(self, in_channels, num_classes, conv_block, dropout=0.7, seed004=False):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3) if seed004 else nn.AdaptiveAvgPool2d((4, 4))
        self.conv = conv_block(in_channels, 128, 1)
        self.dropout_fc1 = Dropout(dropout) if seed004 else nn.Identity()
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        x = torch.flatten(self.conv(self.pool(x)), 1)
        x = torch.relu(self.fc1(self.dropout_fc1(x)))
        return self.fc2(self.dropout(x))


class GoogLeNet(nn.Module):
    def __init__(self, name, conv_block, *, branch3_kernel=3, lrn=False, num_classes=1000, aux_logits=False,
                 transform_input=False, dropout=0.2, dropout_aux=0.7, seed004=False):
        super().__init__()
        self.arch, self.aux_logits, self.transform_input = name, aux_logits, transform_input
        self.conv1 = conv_block(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = nn.LocalResponseNorm(**LRN) if lrn else nn.Identity()
        self.conv2 = conv_block(64, 64, 1)
        self.conv3 = conv_block(64, 192, 3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(**LRN) if lrn else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        block = lambda name, in_ch: Inception(in_ch, BLOCKS[name], conv_block, branch3_kernel)  # noqa: E731
        self.inception3a = block("inception3a", 192)
        self.inception3b = block("inception3b", 256)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = block("inception4a", 480)
        self.inception4b = block("inception4b", 512)
        self.inception4c = block("inception4c", 512)
        self.inception4d = block("inception4d", 512)
        self.inception4e = block("inception4e", 528)
        self.maxpool4 = nn.MaxPool2d(3 if seed004 else 2, stride=2, ceil_mode=True)
        self.inception5a = block("inception5a", 832)
        self.inception5b = block("inception5b", 832)

        self.aux1 = InceptionAux(512, num_classes, conv_block, dropout_aux, seed004) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, conv_block, dropout_aux, seed004) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        init_weights(self)

    def forward_stem(self, x):
        check_input(x, self.arch, "conv1", 3)
        x = self.lrn1(self.maxpool1(self.conv1(transform_imagenet_input(x) if self.transform_input else x)))
        return self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))

    def forward(self, x):
        with_aux = self.aux_logits and self.training
        x = self.inception3b(self.inception3a(self.forward_stem(x)))
        x = self.inception4a(self.maxpool3(x))
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


def googlenet(*, num_classes=1000, aux_logits=False, transform_input=False, dropout=0.2, dropout_aux=0.7):
    return GoogLeNet("googlenet", BasicConv2d, num_classes=num_classes, aux_logits=aux_logits,
                     transform_input=transform_input, dropout=dropout, dropout_aux=dropout_aux)


def inception_v1(*, num_classes=1000, aux_logits=True, dropout=0.4, dropout_aux=0.7):
    return GoogLeNet("inception_v1", ConvReLU, branch3_kernel=5, lrn=True, num_classes=num_classes,
                     aux_logits=aux_logits, dropout=dropout, dropout_aux=dropout_aux)


def googlenet_nobn(*, num_classes=5, aux_logits=True, dropout=0.4, dropout_aux=0.5):
    return GoogLeNet("googlenet_nobn", ConvReLU, branch3_kernel=5, num_classes=num_classes, aux_logits=aux_logits,
                     dropout=dropout, dropout_aux=dropout_aux, seed004=True)


class D2LInception(nn.Module):
    """d2l's Inception: four branches of convs with bias + ReLU, named as d2l names them."""

    def __init__(self, in_channels, spec: InceptionSpec):
        super().__init__()
        self.p1_1 = nn.Conv2d(in_channels, spec.ch1x1, 1)
        self.p2_1 = nn.Conv2d(in_channels, spec.ch3x3red, 1)
        self.p2_2 = nn.Conv2d(spec.ch3x3red, spec.ch3x3, 3, padding=1)
        self.p3_1 = nn.Conv2d(in_channels, spec.ch5x5red, 1)
        self.p3_2 = nn.Conv2d(spec.ch5x5red, spec.ch5x5, 5, padding=2)
        self.p4_1 = nn.MaxPool2d(3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, spec.pool_proj, 1)

    def forward(self, x):
        p1 = torch.relu(self.p1_1(x))
        p2 = torch.relu(self.p2_2(torch.relu(self.p2_1(x))))
        p3 = torch.relu(self.p3_2(torch.relu(self.p3_1(x))))
        return torch.cat([p1, p2, p3, torch.relu(self.p4_2(self.p4_1(x)))], 1)


class GoogLeNetD2L(nn.Module):
    def __init__(self, *, in_channels=1, num_classes=10):
        super().__init__()
        self.arch, self.in_channels = "googlenet_d2l", in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3)
        self.conv2 = nn.Conv2d(64, 64, 1)
        self.conv3 = nn.Conv2d(64, 192, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)  # d2l's, after conv1, conv3, 3b and 4e
        for name, spec in BLOCKS.items():
            setattr(self, name, D2LInception(in_channels_of(name), spec))
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv3(torch.relu(self.conv2(x)))))
        x = self.pool(self.inception3b(self.inception3a(x)))
        for block in (self.inception4a, self.inception4b, self.inception4c, self.inception4d, self.inception4e):
            x = block(x)
        x = self.inception5b(self.inception5a(self.pool(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def googlenet_d2l(**kwargs):
    return GoogLeNetD2L(**kwargs)


class Seed000Conv(nn.Module):
    """seed 000's BasicConv2d: conv (with bias) + ReLU in one Sequential (`conv.0`, `conv.1`)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU())

    def forward(self, x):
        return self.conv(x)


class Seed000Inception(nn.Module):
    """seed 000's Inception: branch_1x1, branch_3x3, branch_5x5 (5x5) and branch_pool."""

    def __init__(self, in_channels, spec: InceptionSpec):
        super().__init__()
        self.branch_1x1 = Seed000Conv(in_channels, spec.ch1x1, 1)
        self.branch_3x3 = nn.Sequential(Seed000Conv(in_channels, spec.ch3x3red, 1),
                                        Seed000Conv(spec.ch3x3red, spec.ch3x3, 3, padding=1))
        self.branch_5x5 = nn.Sequential(Seed000Conv(in_channels, spec.ch5x5red, 1),
                                        Seed000Conv(spec.ch5x5red, spec.ch5x5, 5, padding=2))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                         Seed000Conv(in_channels, spec.pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch_1x1(x), self.branch_3x3(x), self.branch_5x5(x), self.branch_pool(x)], 1)


class InceptionV1LRN64(nn.Module):
    def __init__(self, *, num_classes=1000):
        super().__init__()
        self.arch = "inception_v1_lrn64"
        pool = lambda: nn.MaxPool2d(3, stride=2, padding=1)  # noqa: E731
        block = lambda name: Seed000Inception(in_channels_of(name), BLOCKS[name])  # noqa: E731
        self.block1 = nn.Sequential(Seed000Conv(3, 64, 7, stride=2, padding=3), pool(), nn.LocalResponseNorm(64),
                                    Seed000Conv(64, 64, 1), Seed000Conv(64, 192, 3, padding=1),
                                    nn.LocalResponseNorm(192), pool())
        self.block2 = nn.Sequential(block("inception3a"), block("inception3b"), pool(), block("inception4a"))
        self.block3 = nn.Sequential(block("inception4b"), block("inception4c"), block("inception4d"))
        self.block4 = nn.Sequential(pool(), block("inception4e"), block("inception5a"), block("inception5b"),
                                    nn.AvgPool2d(3, stride=1))
        self.classifier = nn.Linear(4096, num_classes)

    def forward(self, x):
        check_input(x, self.arch, "block1.0.conv.0", 3)
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.classifier(torch.flatten(x, 1))


def inception_v1_lrn64(**kwargs):
    return InceptionV1LRN64(**kwargs)
