"""LeNet-5 as d2l-style tutorials teach it (sigmoid activations, average pooling, 1x28x28
input), and seed 004's CIFAR-10 LeNet (`lenet_cifar`, below).

torchvision has no LeNet, so the module paths (the weight keys) are defined here, once:

    features.0    Conv2d(in_channels, 6, 5, padding=2)
    features.1    Sigmoid
    features.2    AvgPool2d(2, 2)
    features.3    Conv2d(6, 16, 5)
    features.4    Sigmoid
    features.5    AvgPool2d(2, 2)
    (flatten in (C, H, W) order: 16 x 5 x 5 = 400 features)
    classifier.0  Linear(400, 120)
    classifier.1  Sigmoid
    classifier.2  Linear(120, 84)
    classifier.3  Sigmoid
    classifier.4  Linear(84, num_classes)

d2l's `nn.Sequential` index k maps to `features.k` for k < 6 and `classifier.(k - 7)` for k > 6.
The first Linear follows a spatial flatten: Keras and TF flatten (H, W, C), so its weight is
permuted in transfer (catalogue: flatten_linear). Inputs of 28 or 29 pixels give the 5x5 map.

`lenet_cifar` is seed 004's LeNet for 3x32x32 CIFAR-10 images, with the tutorial's own module
names: conv1 Conv2d(in_channels, 16, 5) -> ReLU -> pool1 MaxPool2d(2, 2) -> conv2 Conv2d(16, 32, 5)
-> ReLU -> pool2 -> flatten (32 x 5 x 5 = 800, (C, H, W) order) -> fc1 Linear(800, 120) -> ReLU
-> fc2 Linear(120, 84) -> ReLU -> fc3 Linear(84, num_classes). Inputs of 32 or 33 pixels
give the 5x5 map.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_input


class LeNet(nn.Module):
    def __init__(self, *, in_channels=1, num_classes=10):
        super().__init__()
        self.arch, self.in_channels = "lenet", in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
            nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        check_input(x, self.arch, "features.0", self.in_channels)
        return self.classifier(torch.flatten(self.features(x), 1))


def lenet(**kwargs):
    return LeNet(**kwargs)


class LeNetCifar(nn.Module):
    def __init__(self, *, in_channels=3, num_classes=10):
        super().__init__()
        self.arch, self.in_channels = "lenet_cifar", in_channels
        self.conv1, self.pool1 = nn.Conv2d(in_channels, 16, 5), nn.MaxPool2d(2, 2)
        self.conv2, self.pool2 = nn.Conv2d(16, 32, 5), nn.MaxPool2d(2, 2)
        self.fc1, self.fc2, self.fc3 = nn.Linear(32 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, num_classes)

    def forward(self, x):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = self.pool1(F.relu(self.conv1(x)))
        x = torch.flatten(self.pool2(F.relu(self.conv2(x))), 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def lenet_cifar(**kwargs):
    return LeNetCifar(**kwargs)
