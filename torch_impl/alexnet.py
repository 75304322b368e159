"""AlexNet in torchvision's layout (the one-GPU variant of "One weird trick", no LRN).

Module paths are torchvision's: convs at features.0/3/6/8/10, avgpool, Linears at
classifier.1/4/6 (dropout at classifier.0/3). classifier.1 follows a spatial flatten of
256 x 6 x 6 features, which Keras and TF flatten in (H, W, C) order (catalogue: flatten_linear).
"""
import torch
from torch import nn

from ._common import check_input


WIDTHS = (64, 192, 384, 256, 256)  # torchvision's
HALF_WIDTHS = (48, 128, 192, 192, 128)  # seed 004's


class AlexNet(nn.Module):
    def __init__(self, *, num_classes=1000, dropout=0.5, widths=WIDTHS, hidden=4096, avgpool=True, arch="alexnet"):
        super().__init__()
        self.arch = arch
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6) if avgpool else None
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c5 * 6 * 6, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        check_input(x, self.arch, "features.0", 3)
        x = self.features(x)
        if self.avgpool is not None:
            x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def alexnet(**kwargs):
    return AlexNet(**kwargs)


def alexnet_half(*, num_classes=5, **kwargs):
    return AlexNet(num_classes=num_classes, widths=HALF_WIDTHS, hidden=2048, avgpool=False, arch="alexnet_half",
                   **kwargs)
