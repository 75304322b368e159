"""AlexNet in torchvision's layout (the one-GPU variant of "One weird trick", no LRN).

Module paths are torchvision's: convs at features.0/3/6/8/10, avgpool, Linears at
classifier.1/4/6 (dropout at classifier.0/3). classifier.1 follows a spatial flatten of
256 x 6 x 6 features, which Keras and TF flatten in (H, W, C) order (catalogue: flatten_linear).
"""
import torch
from torch import nn

from ._common import check_input


class AlexNet(nn.Module):
    def __init__(self, *, num_classes=1000, dropout=0.5):
        super().__init__()
        self.arch = "alexnet"
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        check_input(x, self.arch, "features.0", 3)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet(**kwargs):
    return AlexNet(**kwargs)
