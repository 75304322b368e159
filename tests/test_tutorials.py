"""The tutorials' own networks (issues 32 and 35): each written here in plain torch from its seed's
text (../shared/seeds; not imported from the project), its state dict saved and loaded back
through parity.weights.from_tutorial into torch_impl, keras_impl and tf_impl, which must
compute what the tutorial's network computes, at the fp32 policy."""
import contextlib
import importlib
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import parity
from parity.errors import StateDictError
from parity.tolerance import threshold

from conftest import normalized_error

torch.manual_seed(0)


def d2l_lenet():
    """Seed 003: d2l's LeNet, one nn.Sequential, 1x28x28 Fashion-MNIST."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))


def d2l_nin():
    """Seed 003: d2l's NiN for 1-channel input and 10 classes."""
    def block(cin, cout, kernel, stride, padding):
        return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(),
                             nn.Conv2d(cout, cout, kernel_size=1), nn.ReLU(),
                             nn.Conv2d(cout, cout, kernel_size=1), nn.ReLU())
    return nn.Sequential(
        block(1, 96, 11, 4, 0), nn.MaxPool2d(3, stride=2),
        block(96, 256, 5, 1, 2), nn.MaxPool2d(3, stride=2),
        block(256, 384, 3, 1, 1), nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5), block(384, 10, 3, 1, 1), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


def d2l_alexnet():
    """Seed 003: d2l's AlexNet, one nn.Sequential, 1-channel Fashion-MNIST resized to 224."""
    return nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2), nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 10))


def d2l_vgg11():
    """Seed 003: d2l's vgg(conv_arch) for one input channel: vgg_blocks, Flatten, classifier."""
    def vgg_block(num_convs, cin, cout):
        layers = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU()]
            cin = cout
        return nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2, stride=2))
    blocks, cin = [], 1
    for num_convs, cout in ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)):
        blocks.append(vgg_block(num_convs, cin, cout))
        cin = cout
    return nn.Sequential(*blocks, nn.Flatten(),
                         nn.Linear(cin * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 10))


class D2lResidual(nn.Module):
    """Seed 003: d2l's Residual."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1, self.bn2 = nn.BatchNorm2d(num_channels), nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(X)))))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def d2l_resnet18():
    """Seed 003: d2l's ResNet-18 for one channel; BatchNorm statistics as training leaves them."""
    def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
        return [D2lResidual(input_channels, num_channels, use_1x1conv=True, strides=2) if i == 0 and not first_block
                else D2lResidual(num_channels, num_channels) for i in range(num_residuals)]
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    net = nn.Sequential(b1, nn.Sequential(*resnet_block(64, 64, 2, first_block=True)),
                        nn.Sequential(*resnet_block(64, 128, 2)), nn.Sequential(*resnet_block(128, 256, 2)),
                        nn.Sequential(*resnet_block(256, 512, 2)),
                        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10))
    generator = torch.Generator().manual_seed(5)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return net


class D2lInception(nn.Module):
    """Seed 003: d2l's Inception, c1..c4 the branches' output channels."""

    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)

    def forward(self, x):
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        return torch.cat((p1, p2, p3, F.relu(self.p4_2(self.p4_1(x)))), dim=1)


def d2l_googlenet():
    """Seed 003: d2l's GoogLeNet, b1..b5 and a Linear, one input channel."""
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(), nn.Conv2d(64, 192, kernel_size=3, padding=1),
                       nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = nn.Sequential(D2lInception(192, 64, (96, 128), (16, 32), 32), D2lInception(256, 128, (128, 192), (32, 96), 64),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = nn.Sequential(D2lInception(480, 192, (96, 208), (16, 48), 64), D2lInception(512, 160, (112, 224), (24, 64), 64),
                       D2lInception(512, 128, (128, 256), (24, 64), 64), D2lInception(512, 112, (144, 288), (32, 64), 64),
                       D2lInception(528, 256, (160, 320), (32, 128), 128),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = nn.Sequential(D2lInception(832, 256, (160, 320), (32, 128), 128),
                       D2lInception(832, 384, (192, 384), (48, 128), 128), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, 10))


def d2l_densenet():
    """Seed 003: d2l's DenseNet (DenseBlock, transition_block), one input channel."""
    def conv_block(input_channels, num_channels):
        return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                             nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1))

    class DenseBlock(nn.Module):
        def __init__(self, num_convs, input_channels, num_channels):
            super().__init__()
            self.net = nn.Sequential(*(conv_block(num_channels * i + input_channels, num_channels)
                                       for i in range(num_convs)))

        def forward(self, X):
            for blk in self.net:
                X = torch.cat((X, blk(X)), dim=1)
            return X

    def transition_block(input_channels, num_channels):
        return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                             nn.Conv2d(input_channels, num_channels, kernel_size=1), nn.AvgPool2d(kernel_size=2, stride=2))

    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    num_channels, growth_rate, blks = 64, 32, []
    for i, num_convs in enumerate([4, 4, 4, 4]):
        blks.append(DenseBlock(num_convs, num_channels, growth_rate))
        num_channels += num_convs * growth_rate
        if i != 3:
            blks.append(transition_block(num_channels, num_channels // 2))
            num_channels = num_channels // 2
    net = nn.Sequential(b1, *blks, nn.BatchNorm2d(num_channels), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)),
                        nn.Flatten(), nn.Linear(num_channels, 10))
    generator = torch.Generator().manual_seed(6)
    for module in net.modules():  # BatchNorm statistics as training leaves them
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return net


class Seed004LeNet(nn.Module):
    """Seed 004: the CIFAR-10 LeNet, named modules."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool1 = nn.Conv2d(3, 16, 5), nn.MaxPool2d(2, 2)
        self.conv2, self.pool2 = nn.Conv2d(16, 32, 5), nn.MaxPool2d(2, 2)
        self.fc1, self.fc2, self.fc3 = nn.Linear(32 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x))).view(-1, 32 * 5 * 5)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Seed004AlexNet(nn.Module):
    """Seed 004: AlexNet at half width for the flower set, no average pool, 2048-wide classifier."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 48, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(48, 128, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(128, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 128, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(128 * 6 * 6, 2048), nn.ReLU(inplace=True),
            nn.Dropout(p=0.5), nn.Linear(2048, 2048), nn.ReLU(inplace=True), nn.Linear(2048, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), start_dim=1))


SEED_004_VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class Seed004VGG(nn.Module):
    """Seed 004: VGG for the flower set, features by configuration, no average pool, Dropout-first
    classifier 25088-2048-2048-5."""

    def __init__(self, depth, num_classes=5):
        super().__init__()
        layers, channels = [], 3
        for v in SEED_004_VGG[depth]:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(512 * 7 * 7, 2048), nn.ReLU(True),
            nn.Dropout(p=0.5), nn.Linear(2048, 2048), nn.ReLU(True), nn.Linear(2048, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), start_dim=1))


class Seed004Conv(nn.Module):
    """Seed 004's BasicConv2d: conv (with bias) + ReLU."""

    def __init__(self, cin, cout, **kwargs):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(cin, cout, **kwargs), nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x))


class Seed004Inception(nn.Module):
    def __init__(self, cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = Seed004Conv(cin, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(Seed004Conv(cin, ch3x3red, kernel_size=1),
                                     Seed004Conv(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(Seed004Conv(cin, ch5x5red, kernel_size=1),
                                     Seed004Conv(ch5x5red, ch5x5, kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                                     Seed004Conv(cin, pool_proj, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class Seed004Aux(nn.Module):
    def __init__(self, cin, num_classes, p=0.5):  # p: the text's 0.5, a parameter here to compare train mode
        super().__init__()
        self.p = p
        self.averagePool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.conv = Seed004Conv(cin, 128, kernel_size=1)
        self.fc1, self.fc2 = nn.Linear(2048, 1024), nn.Linear(1024, num_classes)

    def forward(self, x):
        x = torch.flatten(self.conv(self.averagePool(x)), 1)
        x = F.relu(self.fc1(F.dropout(x, self.p, training=self.training)), inplace=True)
        return self.fc2(F.dropout(x, self.p, training=self.training))


class Seed004GoogLeNet(nn.Module):
    """Seed 004: GoogLeNet without BatchNorm, aux heads, 5 classes; training returns (x, aux2, aux1)."""

    def __init__(self, num_classes=5, p=0.4, p_aux=0.5):
        super().__init__()
        self.conv1 = Seed004Conv(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = Seed004Conv(64, 64, kernel_size=1)
        self.conv3 = Seed004Conv(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Seed004Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Seed004Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Seed004Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Seed004Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Seed004Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Seed004Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Seed004Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception5a = Seed004Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Seed004Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1, self.aux2 = Seed004Aux(512, num_classes, p_aux), Seed004Aux(528, num_classes, p_aux)
        self.avgpool, self.dropout = nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(p)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.inception4a(self.maxpool3(self.inception3b(self.inception3a(x))))
        aux1 = self.aux1(x) if self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.training else None
        x = self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (x, aux2, aux1) if self.training else x


class Seed000Conv(nn.Module):
    """Seed 000's BasicConv2d for Inception v1: conv (with bias) and ReLU in one Sequential."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding), nn.ReLU(True))

    def forward(self, x):
        return self.conv(x)


class Seed000Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.branch_1x1 = Seed000Conv(cin, c1, 1)
        self.branch_3x3 = nn.Sequential(Seed000Conv(cin, c3r, 1), Seed000Conv(c3r, c3, 3, padding=1))
        self.branch_5x5 = nn.Sequential(Seed000Conv(cin, c5r, 1), Seed000Conv(c5r, c5, 5, padding=2))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), Seed000Conv(cin, cp, 1))

    def forward(self, x):
        return torch.cat((self.branch_1x1(x), self.branch_3x3(x), self.branch_5x5(x), self.branch_pool(x)), dim=1)


class Seed000InceptionV1(nn.Module):
    """Seed 000: Inception v1 in four Sequential blocks, LocalResponseNorm(64) and (192), 128 px;
    the evaluation form (state="test": the text does not define its aux classifier)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.block1 = nn.Sequential(
            Seed000Conv(3, 64, 7, stride=2, padding=3), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.LocalResponseNorm(64), Seed000Conv(64, 64, 1), Seed000Conv(64, 192, 3, padding=1),
            nn.LocalResponseNorm(192), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.block2 = nn.Sequential(
            Seed000Inception(192, 64, 96, 128, 16, 32, 32), Seed000Inception(256, 128, 128, 192, 32, 96, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1), Seed000Inception(480, 192, 96, 208, 16, 48, 64))
        self.block3 = nn.Sequential(
            Seed000Inception(512, 160, 112, 224, 24, 64, 64), Seed000Inception(512, 128, 128, 256, 24, 64, 64),
            Seed000Inception(512, 112, 144, 288, 32, 64, 64))
        self.block4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1), Seed000Inception(528, 256, 160, 320, 32, 128, 128),
            Seed000Inception(832, 256, 160, 320, 32, 128, 128), Seed000Inception(832, 384, 192, 384, 48, 128, 128),
            nn.AvgPool2d(3, stride=1))
        self.classifier = nn.Linear(4096, num_classes)

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.classifier(x.view(x.size(0), -1))


class Seed000ConvBN(nn.Module):
    """Seed 000's BasicConv2d for ResNet-50: conv (no bias) and BatchNorm in one Sequential."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.conv(x)


class Seed000Bottleneck(nn.Module):
    def __init__(self, cin, mid, cout, stride=1):
        super().__init__()
        self.judge = cin == cout
        self.bottleneck = nn.Sequential(Seed000ConvBN(cin, mid, 1), nn.ReLU(True),
                                        Seed000ConvBN(mid, mid, 3, padding=1, stride=stride), nn.ReLU(True),
                                        Seed000ConvBN(mid, cout, 1))
        self.relu = nn.ReLU(True)
        if cin != cout:
            self.downsample = Seed000ConvBN(cin, cout, 1, stride=stride)

    def forward(self, x):
        out = self.bottleneck(x)
        out += x if self.judge else self.downsample(x)
        return self.relu(out)


class Seed000ResNet50(nn.Module):
    """Seed 000: ResNet-50 with its own names, no ReLU after the stem, AvgPool2d(4) at the end."""

    def __init__(self, class_num):
        super().__init__()
        self.conv = Seed000ConvBN(3, 64, 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.block1 = nn.Sequential(Seed000Bottleneck(64, 64, 256), *(Seed000Bottleneck(256, 64, 256) for _ in range(2)))
        self.block2 = nn.Sequential(Seed000Bottleneck(256, 128, 512, stride=2),
                                    *(Seed000Bottleneck(512, 128, 512) for _ in range(3)))
        self.block3 = nn.Sequential(Seed000Bottleneck(512, 256, 1024, stride=2),
                                    *(Seed000Bottleneck(1024, 256, 1024) for _ in range(5)))
        self.block4 = nn.Sequential(Seed000Bottleneck(1024, 512, 2048, stride=2),
                                    *(Seed000Bottleneck(2048, 512, 2048) for _ in range(2)))
        self.avgpool = nn.AvgPool2d(4)
        self.classifier = nn.Linear(2048, class_num)
        trained_statistics(self, seed=9)

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.block1(self.maxpool(self.conv(x))))))
        return self.classifier(self.avgpool(x).view(x.size(0), -1))


def trained_statistics(net, seed):
    """BatchNorm running statistics and gains as training leaves them (small gains where a
    residual branch closes keep a random deep ResNet's outputs in range)."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.uniform_(0.1, 0.5, generator=generator)


# catalogue name -> (the tutorial's network, input (C, H, W), builder options as the tutorial builds it)
TUTORIALS = {
    "lenet": (d2l_lenet, (1, 28, 28), {}),
    "nin": (d2l_nin, (1, 96, 96), {"in_channels": 1, "num_classes": 10}),
    "alexnet_d2l": (d2l_alexnet, (1, 224, 224), {}),
    "vgg11_d2l": (d2l_vgg11, (1, 224, 224), {}),
    "resnet18_d2l": (d2l_resnet18, (1, 96, 96), {}),
    "googlenet_d2l": (d2l_googlenet, (1, 96, 96), {}),
    "densenet_d2l": (d2l_densenet, (1, 96, 96), {}),
    "lenet_cifar": (Seed004LeNet, (3, 32, 32), {}),
    "alexnet_half": (Seed004AlexNet, (3, 224, 224), {}),
    **{f"vgg{d}_fc2048": (lambda d=d: Seed004VGG(d), (3, 224, 224), {}) for d in SEED_004_VGG},
    "googlenet_nobn": (Seed004GoogLeNet, (3, 224, 224), {}),
    "inception_v1_lrn64": (Seed000InceptionV1, (3, 128, 128), {}),
    "resnet50_blocks": (lambda: Seed000ResNet50(class_num=10), (3, 224, 224), {"num_classes": 10}),
}
# Same code as a default-run sibling with another depth: -m slow (as tests/test_references.py).
DEEPER = {"vgg13_fc2048", "vgg16_fc2048", "vgg19_fc2048"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEPER else n for n in TUTORIALS])
def test_a_tutorials_checkpoint_loads_into_every_framework(name, tmp_path):
    make, (channels, height, width), options = TUTORIALS[name]
    tutorial = make().eval()
    path = tmp_path / f"{name}.pth"
    torch.save(tutorial.state_dict(), path)  # as the tutorial saves it
    state = parity.weights.from_tutorial(name, torch.load(path, weights_only=True), **options)
    x = np.random.default_rng(0).standard_normal((2, channels, height, width)).astype(np.float32)
    errors = every_framework_error(name, tutorial, state, x, input_size=(channels, height, width), **options)
    assert errors["torch"] == 0.0  # the same torch ops on the same weights
    assert max(errors.values()) < threshold(), errors


def every_framework_error(name, tutorial, state, x, **options) -> dict:
    """{framework: normalized error} of catalogue model `name` holding `state`, against the
    tutorial's network, on NCHW `x`. `options`: builder options as the tutorial built it."""
    with torch.no_grad():
        expected = tutorial(torch.from_numpy(x)).numpy()
    errors = {}
    for framework in ("torch", "keras", "tf"):
        model = parity.build(name, framework=framework, **options)
        parity.load_state_dict(model, state)
        errors[framework] = normalized_error(parity.run(model, x)[0], expected)
    return errors


def test_another_networks_checkpoint_lists_every_bad_key_naming_the_model():
    with pytest.raises(StateDictError) as caught:
        parity.weights.from_tutorial("lenet_cifar", d2l_lenet().state_dict())
    message = str(caught.value)
    assert message.startswith("lenet_cifar") and "conv1.weight" in message and "0.weight" in message
    assert "missing keys (10)" in message and "unexpected keys (10)" in message


def test_a_checkpoint_with_other_class_counts_names_the_mis_shaped_keys():
    with pytest.raises(StateDictError, match=r"shape mismatch at classifier.6.weight: model has \(5, 2048\), "
                                             r"weights have \(7, 2048\)"):
        parity.weights.from_tutorial("alexnet_half", Seed004AlexNet(num_classes=7).state_dict())


def test_only_the_tutorials_networks_have_a_tutorial_rename():
    with pytest.raises(ValueError, match="resnet50: no source tutorial writes this network"):
        parity.weights.from_tutorial("resnet50", {})


# Over 64 MB of weights: their Keras and TF exports run in child processes (parity.export.workers), 27 s
# (alexnet_d2l) to 65 s each; natively checked in the default run below.
SLOW_CHECKS = ("alexnet_d2l", "vgg11_fc2048", "vgg11_d2l", "resnet50_blocks", *sorted(DEEPER))


@pytest.mark.parametrize("name", ["lenet_cifar", "alexnet_half", "resnet18_d2l", "googlenet_d2l",
                                  "densenet_d2l", "googlenet_nobn",
                                  *[pytest.param(n, marks=pytest.mark.slow) for n in SLOW_CHECKS]])
def test_check_passes_natively_and_through_onnx_at_the_smallest_size(name):
    from parity.catalogue import registry
    report = parity.check(name, size=registry.get(name).test_sizes[0])
    assert report.passed, [(r.target, r.normalized_error, r.error) for r in report.results]
    assert {r.target for r in report.results} >= {"keras", "tf", "onnx:torch", "onnx:keras", "onnx:tf"}


def test_the_catalogue_names_each_networks_tutorial():
    from parity.catalogue import registry
    assert registry.get("lenet_cifar").tutorial.startswith("seed 004")
    assert registry.get("alexnet_d2l").tutorial.startswith("seed 003 (d2l)")
    assert registry.get("vgg11_d2l").tutorial.startswith("seed 003 (d2l)")
    assert registry.get("resnet18_d2l").tutorial.startswith("seed 003 (d2l)")
    assert registry.get("googlenet_d2l").tutorial.startswith("seed 003 (d2l)")
    assert registry.get("densenet_d2l").tutorial.startswith("seed 003 (d2l)")
    assert registry.get("alexnet_half").tutorial.startswith("seed 004")
    assert registry.get("googlenet_nobn").tutorial.startswith("seed 004: GoogLeNet without BatchNorm")
    assert registry.get("vgg19_fc2048").tutorial == "seed 004: VGG-19, flower photos (5 classes)"
    assert {n for n in parity.list_models() if registry.get(n).tutorial} == {*TUTORIALS, "fpn_shared_head"}
    assert registry.get("resnet34").tutorial is None  # seed 004's ResNets are torchvision's (below)


@pytest.mark.parametrize("name", ["alexnet_d2l", "vgg11_fc2048", "vgg11_d2l"])
def test_the_big_ones_pass_check_natively_at_their_smallest_size(name):
    """The default run's check of SLOW_CHECKS' first three (their ONNX, and the deeper VGGs: -m slow)."""
    report = parity.check(name, size=224, onnx=False)
    assert report.passed, [(r.target, r.normalized_error, r.error) for r in report.results]


@contextlib.contextmanager
def planted_function(function, old, new):
    """conftest's `plant` for a module-level function (Keras builders are functions): its code
    with `old` replaced by `new`, for the block only."""
    source = inspect.getsource(function)
    assert old in source, f"{function.__qualname__} no longer contains {old!r}"
    namespace = {}
    exec(compile(source.replace(old, new), inspect.getfile(function), "exec"), function.__globals__, namespace)
    original, function.__code__ = function.__code__, namespace[function.__name__].__code__
    try:
        yield
    finally:
        function.__code__ = original


def aux_errors(tutorial, state, x) -> dict:
    """Each framework's training-mode (logits, aux2, aux1) against the tutorial's, dropout off
    (no BatchNorm: train mode is otherwise the eval computation): the only way to the aux heads."""
    from parity.adapters.base import to_nhwc
    with torch.no_grad():
        expected = [t.numpy() for t in tutorial.train()(torch.from_numpy(x))]
    errors = {}
    for framework in ("torch", "keras", "tf"):
        model = parity.build("googlenet_nobn", framework=framework, dropout=0.0, dropout_aux=0.0)
        parity.load_state_dict(model, state)
        if framework == "torch":
            with torch.no_grad():
                outputs = [t.numpy() for t in model.train()(torch.from_numpy(x))]
        else:
            outputs = [np.asarray(t) for t in model(to_nhwc(x), training=True)]
        errors[framework] = [normalized_error(y, e) for y, e in zip(outputs, expected)]
    return errors


@pytest.fixture(scope="module")
def seed004_googlenet():
    tutorial = Seed004GoogLeNet(p=0.0, p_aux=0.0)
    state = parity.weights.from_tutorial("googlenet_nobn", tutorial.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    return tutorial, state, x


def test_googlenet_nobn_aux_heads_pool_as_the_tutorial(seed004_googlenet):
    for framework, errors in aux_errors(*seed004_googlenet).items():
        print("googlenet_nobn", framework, "logits, aux2, aux1", errors)  # docs/tutorials.md (-s)
        assert max(errors) < threshold(), (framework, errors)


def test_an_adaptive_aux_pool_fails_the_aux_heads(seed004_googlenet, plant):
    """On the 14x14 map AvgPool2d(5, 3) and an adaptive 4x4 pool average other windows."""
    keras_googlenet, tf_googlenet, torch_googlenet = (importlib.import_module(f"{package}.googlenet")
                                                      for package in ("keras_impl", "tf_impl", "torch_impl"))
    plant(torch_googlenet.InceptionAux, "__init__", "nn.AvgPool2d(5, stride=3) if seed004 else ", "")
    plant(tf_googlenet.InceptionAux, "__call__", "avg_pool2d(x, 5, 3) if self.seed004 else ", "")
    with planted_function(keras_googlenet.inception_aux, "if seed004:\n        x = layers.Average",
                          "if False:\n        x = layers.Average"):
        errors = aux_errors(*seed004_googlenet)
    for framework, (logits, aux2, aux1) in errors.items():  # measured: aux2 1.8e-4, aux1 3.2e-3 (torch)
        assert logits < threshold() and min(aux2, aux1) > 10 * threshold(), (framework, errors[framework])


def test_convert_from_tutorial_writes_every_format_and_refuses_another_network(tmp_path, capsys):
    from parity.cli import main
    from parity.io import load_state
    source = tmp_path / "nin_fashion.pth"
    tutorial = d2l_nin().eval()
    torch.save(tutorial.state_dict(), source)
    canonical, keras_file = tmp_path / "nin.safetensors", tmp_path / "nin.weights.h5"
    options = ["--from-tutorial", "--in-channels", "1", "--num-classes", "10"]
    assert main(["convert", "nin", str(source), str(canonical), *options]) == 0
    assert load_state(canonical)["classifier.1.0.weight"].shape == (10, 384, 3, 3)
    assert main(["convert", "nin", str(source), str(keras_file), *options]) == 0
    model = parity.build("nin", framework="keras", in_channels=1, num_classes=10, input_size=(1, 96, 96))
    parity.adapters.adapter("keras").load_native(model, keras_file)
    x = np.random.default_rng(2).standard_normal((1, 1, 96, 96)).astype(np.float32)
    with torch.no_grad():
        expected = tutorial(torch.from_numpy(x)).numpy()
    assert normalized_error(parity.run(model, x)[0], expected) < threshold()
    capsys.readouterr()
    wrong = tmp_path / "lenet.safetensors"
    assert main(["convert", "lenet_cifar", str(source), str(wrong), "--from-tutorial"]) == 2
    printed = capsys.readouterr()
    assert "lenet_cifar (tutorial keys): the weights do not fit the model" in printed.out + printed.err
    assert not wrong.exists()


class Seed004BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2, self.downsample = nn.BatchNorm2d(cout), downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Seed004ResNet34(nn.Module):
    """Seed 004's ResNet with its BasicBlock, [3, 4, 6, 3], include_top."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.in_channel = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(512, num_classes)

    def _make_layer(self, channel, blocks, stride=1):
        downsample = None
        if stride != 1 or self.in_channel != channel:
            downsample = nn.Sequential(nn.Conv2d(self.in_channel, channel, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(channel))
        layers = [Seed004BasicBlock(self.in_channel, channel, stride, downsample)]
        self.in_channel = channel
        return nn.Sequential(*layers, *(Seed004BasicBlock(channel, channel) for _ in range(1, blocks)))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_seed_004s_resnet34_is_the_catalogues_key_for_key():
    tutorial = Seed004ResNet34().eval()
    trained_statistics(tutorial, seed=3)
    state = parity.weights.from_tutorial("resnet34", tutorial.state_dict(), num_classes=5)
    assert set(state) == {k for k in tutorial.state_dict() if not k.endswith("num_batches_tracked")}
    x = np.random.default_rng(4).standard_normal((2, 3, 64, 64)).astype(np.float32)
    errors = every_framework_error("resnet34", tutorial, state, x, num_classes=5)
    assert max(errors.values()) < threshold(), errors


def test_ceil_mode_pools_fail_d2l_googlenet(plant):
    """d2l pads its 3x3/2 max pools by 1 in floor mode; torchvision's GoogLeNet pools in ceil mode
    without padding. At 96 px both give 24/12/6/3 maps, over windows one pixel apart."""
    keras_googlenet, tf_googlenet, torch_googlenet = (importlib.import_module(f"{package}.googlenet")
                                                      for package in ("keras_impl", "tf_impl", "torch_impl"))
    torch.manual_seed(7)  # the figure below does not depend on what ran before
    tutorial = d2l_googlenet().eval()
    state = parity.weights.from_tutorial("googlenet_d2l", tutorial.state_dict())
    x = np.random.default_rng(7).standard_normal((2, 1, 96, 96)).astype(np.float32)
    with torch.no_grad():
        expected = tutorial(torch.from_numpy(x)).numpy()
    plant(torch_googlenet.GoogLeNetD2L, "__init__", "nn.MaxPool2d(3, stride=2, padding=1)",
          "nn.MaxPool2d(3, stride=2, ceil_mode=True)")
    plant(tf_googlenet.GoogLeNetD2L, "__call__", "d2l_pool(", "(lambda x: max_pool2d(x, 3, 2, ceil_mode=True))(")
    with planted_function(keras_googlenet.googlenet_d2l, "3, 2, padding=1, name=", "3, 2, ceil_mode=True, name="):
        for framework in ("torch", "keras", "tf"):
            model = parity.build("googlenet_d2l", framework=framework, input_size=(1, 96, 96),
                                 **({"input_shape": (96, 96, 1)} if framework == "keras" else {}))
            parity.load_state_dict(model, state)
            error = normalized_error(parity.run(model, x)[0], expected)
            print("googlenet_d2l with ceil-mode pools", framework, error)
            assert error > 10 * threshold(), (framework, error)  # measured: 1.8e-3 (6.8e-4 to 3.4e-3 over other draws)


def symmetric_lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """The trap: tf.nn.local_response_normalization's symmetric window (radius size // 2, so 65
    channels for 64), alpha divided by the size as torch does."""
    import tensorflow as tf
    return tf.nn.local_response_normalization(x, depth_radius=size // 2, bias=k, alpha=alpha / size, beta=beta)


@pytest.fixture(scope="module")
def seed000_inception():
    torch.manual_seed(8)
    tutorial = Seed000InceptionV1(num_classes=10).eval()
    state = parity.weights.from_tutorial("inception_v1_lrn64", tutorial.state_dict(), num_classes=10)
    return tutorial, state


def lrn64_errors(seed000_inception, x) -> dict:
    tutorial, state = seed000_inception
    with torch.no_grad():
        expected = tutorial(torch.from_numpy(x)).numpy()
    errors = {}
    for framework in ("keras", "tf"):
        model = parity.build("inception_v1_lrn64", framework=framework, num_classes=10)
        parity.load_state_dict(model, state)
        errors[framework] = normalized_error(parity.run(model, x)[0], expected)
    return errors


# An image as pixel values (0..255): LRN(64) then normalizes (alpha / 64 * sum ~ 1); on unit-scale
# inputs it is nearly the identity and a shifted window moves the output less than the fp32 policy.
PIXELS = np.random.default_rng(8).uniform(0, 255, (2, 3, 128, 128)).astype(np.float32)


def test_lrn64_keeps_torchs_even_window_on_pixel_inputs(seed000_inception):
    errors = lrn64_errors(seed000_inception, PIXELS)
    print("inception_v1_lrn64 on pixels, faithful", errors)  # docs/tutorials.md (-s)
    assert max(errors.values()) < threshold(), errors


def test_a_symmetric_lrn_window_fails_inception_v1_lrn64(seed000_inception, monkeypatch):
    keras_googlenet, tf_googlenet = (importlib.import_module(f"{p}.googlenet") for p in ("keras_impl", "tf_impl"))
    monkeypatch.setattr(tf_googlenet, "local_response_norm", symmetric_lrn)
    monkeypatch.setattr(keras_googlenet.LocalResponseNorm, "call",
                        lambda self, x: symmetric_lrn(x, self.size, self.alpha, self.beta, self.k))
    errors = lrn64_errors(seed000_inception, PIXELS)
    print("inception_v1_lrn64 on pixels, symmetric LRN window", errors)
    assert min(errors.values()) > threshold(), errors  # measured: 7.3e-5 both (faithful: 3.2e-7, 2.6e-7)


def test_inception_v1_lrn64_passes_check_and_no_export_writes_an_even_lrn(monkeypatch):
    """ONNX's LRN op centres an even window the other way (size/2 - 1 channels before, size/2
    after): every export must keep torch's window as a decomposition, never LRN(size=64)."""
    import onnx

    from parity.onnx import runtime
    lrn_sizes, open_session = {}, runtime.session

    def read_then_open(path, *args):  # each export, as the check opens it in onnxruntime
        lrn_sizes[path.name] = [attribute.i for node in onnx.load(str(path)).graph.node if node.op_type == "LRN"
                                for attribute in node.attribute if attribute.name == "size"]
        return open_session(path, *args)

    monkeypatch.setattr(runtime, "session", read_then_open)
    report = parity.check("inception_v1_lrn64", size=128)
    assert report.passed, [(r.target, r.normalized_error, r.error) for r in report.results]
    assert {name.split(".")[1] for name in lrn_sizes} == {"torch", "keras", "tf"}, lrn_sizes
    assert all(sizes == [] for sizes in lrn_sizes.values()), lrn_sizes


def test_a_global_average_pool_fails_resnet50_blocks(plant):
    """Seed 000 ends in nn.AvgPool2d(4): on the 7x7 map of a 224 input, the top-left 4x4 window
    only. A global average pool (every other ResNet's) in its place, planted in all three."""
    keras_resnet, tf_resnet, torch_resnet = (importlib.import_module(f"{package}.resnet")
                                             for package in ("keras_impl", "tf_impl", "torch_impl"))
    torch.manual_seed(9)
    tutorial = Seed000ResNet50(class_num=10).eval()
    state = parity.weights.from_tutorial("resnet50_blocks", tutorial.state_dict(), num_classes=10)
    x = np.random.default_rng(9).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = tutorial(torch.from_numpy(x)).numpy()
    plant(torch_resnet.ResNet50Blocks, "__init__", "nn.AvgPool2d(4)", "nn.AdaptiveAvgPool2d(1)")
    plant(tf_resnet.ResNet50Blocks, "__call__", "avg_pool2d(x, 4)", "tf.reduce_mean(x, axis=[1, 2], keepdims=True)")
    with planted_function(keras_resnet.resnet50_blocks, "layers.AveragePooling2D(4, 4, ",
                          "layers.AveragePooling2D(7, 7, "):
        for framework in ("torch", "keras", "tf"):
            model = parity.build("resnet50_blocks", framework=framework, num_classes=10)
            parity.load_state_dict(model, state)
            error = normalized_error(parity.run(model, x)[0], expected)
            print("resnet50_blocks with a global average pool", framework, error)
            assert error > 10 * threshold(), (framework, error)


class Seed000FPN(nn.Module):
    """Seed 000's FPN. The text reads its trunk (torchvision's ResNet-50 cut into layer1..layer5)
    from module globals, so the trunk's keys are not the FPN's: held here unregistered alike."""

    def __init__(self, resnet):
        super().__init__()
        stages = (nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool),
                  resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        object.__setattr__(self, "stages", stages)
        self.MtoP = nn.Conv2d(256, 256, 3, 1, 1)
        self.C2toM2 = nn.Conv2d(256, 256, 1, 1, 0)
        self.C3toM3 = nn.Conv2d(512, 256, 1, 1, 0)
        self.C4toM4 = nn.Conv2d(1024, 256, 1, 1, 0)
        self.C5toM5 = nn.Conv2d(2048, 256, 1, 1, 0)

    def _upsample_add(self, in_C, in_M):
        return F.upsample_bilinear(in_C, size=(in_M.shape[2], in_M.shape[3])) + in_M

    def forward(self, x):
        C1 = self.stages[0](x)
        C2 = self.stages[1](C1)
        C3 = self.stages[2](C2)
        C4 = self.stages[3](C3)
        C5 = self.stages[4](C4)
        M5 = self.C5toM5(C5)
        M4 = self._upsample_add(M5, self.C4toM4(C4))
        M3 = self._upsample_add(M4, self.C3toM3(C3))
        M2 = self._upsample_add(M3, self.C2toM2(C2))
        return self.MtoP(M2), self.MtoP(M3), self.MtoP(M4), self.MtoP(M5)


@pytest.fixture(scope="module")
def seed000_fpn():
    """The tutorial's FPN on torchvision's ResNet-50 (tests/_torchvision.py), its checkpoint the
    union of both state dicts (the trunk's fc included), an input of 70 px (maps 18/9/5/3)."""
    import _torchvision
    torchvision = _torchvision.import_torchvision()
    if torchvision is None:
        pytest.skip(f"no torchvision: {_torchvision.WHY_NOT}")
    torch.manual_seed(10)
    resnet = torchvision.models.resnet50(weights=None)
    trained_statistics(resnet, seed=10)
    tutorial = Seed000FPN(resnet.eval()).eval()
    checkpoint = {**resnet.state_dict(), **tutorial.state_dict()}
    state = parity.weights.from_tutorial("fpn_shared_head", checkpoint)
    x = np.random.default_rng(10).standard_normal((2, 3, 70, 70)).astype(np.float32)
    with torch.no_grad():
        expected = [y.numpy() for y in tutorial(torch.from_numpy(x))]
    return state, x, expected


def fpn_errors(state, x, expected, frameworks=("torch", "keras", "tf")) -> dict:
    errors = {}
    for framework in frameworks:
        model = parity.build("fpn_shared_head", framework=framework)
        parity.load_state_dict(model, state)
        errors[framework] = [normalized_error(y, e) for y, e in zip(parity.run(model, x), expected)]
    return errors


def test_seed_000s_fpn_checkpoint_loads_into_every_framework(seed000_fpn):
    state, x, expected = seed000_fpn
    assert "fc.weight" not in state and "MtoP.weight" in state and "layer4.2.bn3.running_var" in state
    errors = fpn_errors(*seed000_fpn)
    print("fpn_shared_head p2..p5", errors)  # docs/tutorials.md (-s)
    assert errors["torch"] == [0.0] * 4
    assert max(max(e) for e in errors.values()) < threshold(), errors


def test_half_pixel_bilinear_fails_the_fpn(seed000_fpn, plant, monkeypatch):
    """F.upsample_bilinear aligns corners; Keras' and TF's bilinear resizes use half-pixel centres."""
    import tensorflow as tf
    from keras import ops
    keras_fpn, tf_fpn, torch_fpn = (importlib.import_module(f"{package}.fpn")
                                    for package in ("keras_impl", "tf_impl", "torch_impl"))
    monkeypatch.setattr(torch_fpn, "resize_bilinear_corners", lambda x, size: F.interpolate(
        x, size=tuple(size), mode="bilinear", align_corners=False))
    monkeypatch.setattr(tf_fpn, "resize_bilinear_corners", lambda x, size: tf.image.resize(x, size, "bilinear"))
    monkeypatch.setattr(keras_fpn.TorchBilinearCornersResize, "call", lambda self, inputs: ops.image.resize(
        inputs[0], ops.shape(inputs[1])[1:3], interpolation="bilinear"))
    errors = fpn_errors(*seed000_fpn)
    print("fpn_shared_head with half-pixel bilinear", errors)
    for framework, (p2, p3, p4, p5) in errors.items():  # p5 is not upsampled
        assert p5 < threshold() and min(p2, p3, p4) > 10 * threshold(), (framework, errors[framework])


def test_one_conv_per_level_computes_the_same_but_trains_otherwise():
    """A port with a 3x3 conv per level, each holding the shared MtoP's weights, gives the same
    pyramid; one SGD step moves each by its own level's gradient where the shared conv takes
    the sum of the four, so the next forward pass differs."""
    torch.manual_seed(11)
    shared = parity.build("fpn_shared_head", framework="torch").train()
    per_level = parity.build("fpn_shared_head", framework="torch").train()
    per_level.load_state_dict(shared.state_dict())
    heads = nn.ModuleList(nn.Conv2d(256, 256, 3, 1, 1) for _ in range(4))
    for head in heads:
        head.load_state_dict(shared.MtoP.state_dict())
    x = torch.from_numpy(np.random.default_rng(11).standard_normal((2, 3, 64, 64)).astype(np.float32))

    def pyramid(model, convs):
        c2, c3, c4, c5 = importlib.import_module("torch_impl.features").resnet_stage_features(model, x).values()
        m5 = model.C5toM5(c5)
        m4 = model._upsample_add(m5, model.C4toM4(c4))
        m3 = model._upsample_add(m4, model.C3toM3(c3))
        m2 = model._upsample_add(m3, model.C2toM2(c2))
        return [conv(m) for conv, m in zip(convs, (m2, m3, m4, m5))]

    def step(model, convs):
        params = list(dict.fromkeys([*model.parameters(), *(p for conv in convs for p in conv.parameters())]))
        optimizer = torch.optim.SGD(params, lr=0.01)
        loss = sum(y.pow(2).mean() for y in pyramid(model, convs))
        loss.backward()
        optimizer.step()

    shared_convs, per_level_convs = [shared.MtoP] * 4, list(heads)
    with torch.no_grad():
        before = [normalized_error(a, b) for a, b in zip(pyramid(per_level, per_level_convs),
                                                          pyramid(shared, shared_convs))]
    step(shared, shared_convs)
    step(per_level, per_level_convs)
    shared.eval(), per_level.eval()
    with torch.no_grad():
        after = [normalized_error(a, b) for a, b in zip(pyramid(per_level, per_level_convs),
                                                         pyramid(shared, shared_convs))]
    print("fpn_shared_head, one conv per level: before a step", before, "after", after)
    assert before == [0.0] * 4 and min(after) > 10 * threshold(), (before, after)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_corner_aligned_bilinear_is_torchs_in_the_maps_dtype(dtype):
    """tf_impl's and Keras' F.upsample_bilinear against torch's, 5x4 -> 18x9 (scales 4/17, 3/8).
    Coordinates computed in float32 inside a float64 model land 1.2e-7 off here (and 4.5e-9 in
    fpn_shared_head's float64 train-check loss); computed in the map's dtype, as torch does,
    float64 agrees to rounding (2e-16)."""
    import keras

    from parity.adapters.base import to_nhwc
    keras_fpn, tf_fpn = (importlib.import_module(f"{package}.fpn") for package in ("keras_impl", "tf_impl"))
    x = np.random.default_rng(12).standard_normal((2, 3, 5, 4)).astype(dtype)
    expected = F.interpolate(torch.from_numpy(x), size=(18, 9), mode="bilinear", align_corners=True).numpy()
    ref = np.zeros((2, 18, 9, 1), dtype)
    outputs = {"tf": tf_fpn.resize_bilinear_corners(to_nhwc(x), (18, 9)),
               "keras": keras_fpn.TorchBilinearCornersResize(dtype=dtype)([keras.ops.convert_to_tensor(to_nhwc(x)), ref])}
    for framework, y in outputs.items():
        assert np.asarray(y).dtype == dtype, framework
        error = normalized_error(np.asarray(y).transpose(0, 3, 1, 2), expected)
        print("corner-aligned bilinear", dtype, framework, error)
        assert error < (1e-14 if dtype == "float64" else threshold()), (framework, error)


class Seed000VGG19(nn.Module):
    """Seed 000: VGG19, 16 convs built in a loop, no average pool, torchvision's classifier."""

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, in_dim, out_dim = [], 3, 64
        for i in range(16):
            layers += [nn.Conv2d(in_dim, out_dim, 3, 1, 1), nn.ReLU(inplace=True)]
            in_dim = out_dim
            if i in (1, 3, 7, 11, 15):
                layers += [nn.MaxPool2d(2)]
                if i < 11:
                    out_dim *= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                                        nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).view(x.size(0), -1))


@pytest.fixture(scope="module")
def seed000_vgg19():
    torch.manual_seed(13)
    tutorial = Seed000VGG19(num_classes=5).eval()
    return tutorial, parity.weights.from_tutorial("vgg19", tutorial.state_dict(), num_classes=5)


def test_seed_000s_vgg19_is_the_catalogues_key_for_key(seed000_vgg19):
    tutorial, state = seed000_vgg19
    assert list(state) == list(tutorial.state_dict())


@pytest.mark.slow
def test_seed_000s_vgg19_computes_the_catalogues_vgg19_at_224(seed000_vgg19):
    tutorial, state = seed000_vgg19
    x = np.random.default_rng(13).standard_normal((1, 3, 224, 224)).astype(np.float32)
    errors = every_framework_error("vgg19", tutorial, state, x, num_classes=5)
    assert max(errors.values()) < threshold(), errors
