"""A small network of one's own, in PyTorch: a VGG-like stem, a squeeze-and-excitation block
and two heads (10 classes, 3 attributes). Its module paths are the canonical weight names
the Keras and TF versions (twohead_keras.py, twohead_tf.py) give their layers."""
import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel gates from the global average: 1x1 convs down by `reduction` and back, sigmoid."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        gates = torch.sigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))
        return x * gates


class TwoHead(nn.Module):
    def __init__(self, num_classes=10, num_attributes=3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.se = SqueezeExcite(32)
        self.classes = nn.Linear(32, num_classes)
        self.attributes = nn.Linear(32, num_attributes)

    def forward(self, x):
        features = torch.flatten(F.adaptive_avg_pool2d(self.se(self.stem(x)), 1), 1)
        return self.classes(features), self.attributes(features)


def twohead(**kwargs):
    return TwoHead(**kwargs)


# What cnn-parity needs to know beyond the builders (parity.register_model's options); read
# when the model is named by path, as `parity check twohead_torch:twohead`.
PARITY_SPECS = {"twohead": {"input_size": (3, 32, 32), "test_sizes": (32, 33), "outputs": ("classes", "attributes"),
                            "head": ("classes", "attributes")}}
