"""LeNet-5 as d2l-style tutorials teach it (layer names are the torch module paths).

Paths, defined in torch_impl/lenet.py: convs features.0/3, Dense layers classifier.0/2/4,
sigmoids and 2x2 average pools in between. Flatten is NHWC-native, so classifier.0's kernel
is permuted from torch's (C, H, W) feature order in transfer (catalogue: flatten_linear).
The Dense input size fixes H and W: inputs of 28 or 29 pixels give the 5x5 map.

`lenet_cifar`: seed 004's CIFAR-10 LeNet with its own layer names (conv1, pool1, conv2, pool2,
fc1..fc3; torch_impl/lenet.py), ReLU and max pooling; fc1's kernel permuted the same way.
"""
import keras
from keras import layers

from .layers import Linear, conv2d, max_pool, relu


def sigmoid(x, name):
    return layers.Activation("sigmoid", name=name)(x)


def avg_pool(x, name):
    return layers.AveragePooling2D(2, 2, padding="valid", name=name)(x)


def lenet(*, in_channels=None, num_classes=10, input_shape=None):
    """`in_channels`, when given, overrides the channel entry of `input_shape` (default 28x28x1)."""
    height, width, channels = input_shape or (28, 28, 1)
    inputs = keras.Input(shape=(height, width, in_channels or channels), name="input")
    x = avg_pool(sigmoid(conv2d(inputs, 6, 5, padding=2, name="features.0"), "features.1"), "features.2")
    x = avg_pool(sigmoid(conv2d(x, 16, 5, name="features.3"), "features.4"), "features.5")
    x = layers.Flatten(name="flatten")(x)  # (H, W, C) order
    x = sigmoid(Linear(120, name="classifier.0")(x), "classifier.1")
    x = sigmoid(Linear(84, name="classifier.2")(x), "classifier.3")
    x = Linear(num_classes, name="classifier.4")(x)
    return keras.Model(inputs, x, name="lenet")


def lenet_cifar(*, in_channels=None, num_classes=10, input_shape=None):
    """`in_channels`, when given, overrides the channel entry of `input_shape` (default 32x32x3)."""
    height, width, channels = input_shape or (32, 32, 3)
    inputs = keras.Input(shape=(height, width, in_channels or channels), name="input")
    x = max_pool(relu(conv2d(inputs, 16, 5, name="conv1"), name="conv1_relu"), 2, 2, name="pool1")
    x = max_pool(relu(conv2d(x, 32, 5, name="conv2"), name="conv2_relu"), 2, 2, name="pool2")
    x = layers.Flatten(name="flatten")(x)  # (H, W, C) order
    x = relu(Linear(120, name="fc1")(x), name="fc1_relu")
    x = relu(Linear(84, name="fc2")(x), name="fc2_relu")
    x = Linear(num_classes, name="fc3")(x)
    return keras.Model(inputs, x, name="lenet_cifar")
