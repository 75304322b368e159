"""LeNet-5 as d2l-style tutorials teach it (attribute paths are the torch module paths).

Paths, defined in torch_impl/lenet.py: `features` and `classifier` are lists indexed like
the torch nn.Sequentials; convs at features.0/3, Linears at classifier.0/2/4. Flatten is
NHWC-native, so classifier.0's weight is permuted in transfer (catalogue: flatten_linear).
Inputs of 28 or 29 pixels give the 5x5 map that the 400-input Linear expects.

`LeNetCifar`: seed 004's CIFAR-10 LeNet with its own attribute names (conv1, conv2, fc1..fc3;
torch_impl/lenet.py), ReLU and 2x2 max pooling; fc1's weight permuted the same way.
"""
import tensorflow as tf

from .layers import Conv2d, Linear, avg_pool2d, check_input, max_pool2d


def avg_pool_2x2(x):
    return avg_pool2d(x, 2, 2)


def flatten(x):
    """Flatten NHWC in its own (H, W, C) order."""
    return tf.reshape(x, [tf.shape(x)[0], -1])


class LeNet(tf.Module):
    def __init__(self, *, in_channels=1, num_classes=10):
        super().__init__(name="lenet")
        self.arch, self.in_channels = "lenet", in_channels
        self.features = [
            Conv2d(in_channels, 6, 5, padding=2), tf.nn.sigmoid, avg_pool_2x2,
            Conv2d(6, 16, 5), tf.nn.sigmoid, avg_pool_2x2,
        ]
        self.classifier = [
            Linear(16 * 5 * 5, 120), tf.nn.sigmoid,
            Linear(120, 84), tf.nn.sigmoid,
            Linear(84, num_classes),
        ]

    def __call__(self, x, training=False):
        check_input(x, self.arch, "features.0", self.in_channels)
        for layer in self.features:
            x = layer(x)
        x = flatten(x)
        for layer in self.classifier:
            x = layer(x)
        return x


def lenet(**kwargs):
    return LeNet(**kwargs)


class LeNetCifar(tf.Module):
    def __init__(self, *, in_channels=3, num_classes=10):
        super().__init__(name="lenet_cifar")
        self.arch, self.in_channels = "lenet_cifar", in_channels
        self.conv1, self.conv2 = Conv2d(in_channels, 16, 5), Conv2d(16, 32, 5)
        self.fc1, self.fc2, self.fc3 = Linear(32 * 5 * 5, 120), Linear(120, 84), Linear(84, num_classes)

    def __call__(self, x, training=False):
        check_input(x, self.arch, "conv1", self.in_channels)
        x = max_pool2d(tf.nn.relu(self.conv1(x)), 2, 2)
        x = flatten(max_pool2d(tf.nn.relu(self.conv2(x)), 2, 2))
        return self.fc3(tf.nn.relu(self.fc2(tf.nn.relu(self.fc1(x)))))


def lenet_cifar(**kwargs):
    return LeNetCifar(**kwargs)
