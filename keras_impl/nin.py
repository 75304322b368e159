"""Network in Network, d2l style (layer names are the torch module paths).

Paths, defined in torch_impl/nin.py: NiN blocks at features.0/2/4 and classifier.1, each
with convs at .0/.2/.4 and ReLUs at .1/.3/.5; 3x3 stride-2 max pools at features.1/3/5;
dropout at classifier.0; global average pooling at classifier.2. Any input >= 67x67 works.
"""
import keras
from keras import layers

from .layers import Dropout, conv2d, max_pool, relu


def nin_block(x, channels, kernel_size, *, name, stride=1, padding=0):
    x = relu(conv2d(x, channels, kernel_size, stride=stride, padding=padding, name=f"{name}.0"), f"{name}.1")
    x = relu(conv2d(x, channels, 1, name=f"{name}.2"), f"{name}.3")
    return relu(conv2d(x, channels, 1, name=f"{name}.4"), f"{name}.5")


def nin(*, in_channels=None, num_classes=1000, dropout=0.5, input_shape=None):
    """`in_channels`, when given, overrides the channel entry of `input_shape` (default any H, W x 3)."""
    height, width, channels = input_shape or (None, None, 3)
    inputs = keras.Input(shape=(height, width, in_channels or channels), name="input")
    x = max_pool(nin_block(inputs, 96, 11, stride=4, name="features.0"), 3, 2, name="features.1")
    x = max_pool(nin_block(x, 256, 5, padding=2, name="features.2"), 3, 2, name="features.3")
    x = max_pool(nin_block(x, 384, 3, padding=1, name="features.4"), 3, 2, name="features.5")
    x = Dropout(dropout, name="classifier.0")(x)
    x = nin_block(x, num_classes, 3, padding=1, name="classifier.1")
    x = layers.GlobalAveragePooling2D(name="classifier.2")(x)  # also flattens
    return keras.Model(inputs, x, name="nin")
