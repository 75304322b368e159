"""AlexNet in torchvision's layout (layer names are the weight keys).

Convs at features.0/3/6/8/10, adaptive average pooling to 6x6 ("avgpool"), Dense layers at
classifier.1/4/6. Flatten is NHWC-native: classifier.1's kernel is permuted from torch's
(C, H, W) feature order in transfer (catalogue: flatten_linear), never in the graph.

AdaptiveAvgPool2D lives here and is shared with vgg.py.
"""
import keras
from keras import layers, ops

from .layers import conv2d, max_pool, relu


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def adaptive_bins(size, bins):
    """torch's AdaptiveAvgPool bins: [floor(i*size/bins), ceil((i+1)*size/bins)) for each i."""
    return [((i * size) // bins, -(-((i + 1) * size) // bins)) for i in range(bins)]


@keras.saving.register_keras_serializable(package="cnn_parity")
class AdaptiveAvgPool2D(layers.Layer):
    """torch.nn.AdaptiveAvgPool2d on NHWC, with torch's bin boundaries.

    Bins overlap and differ in size when the input does not divide the output, so no single
    average pool expresses it: each axis is averaged bin by bin. H and W may be unknown
    while the graph is built; the bins then follow the runtime size.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = _pair(output_size)

    def call(self, x):
        _, h, w, _ = ops.shape(x)  # ints when static, scalar tensors in a graph of unknown size
        oh, ow = self.output_size
        if isinstance(h, int) and isinstance(w, int) and h % oh == 0 and w % ow == 0:
            window = (h // oh, w // ow)
            return x if window == (1, 1) else ops.average_pool(x, window, window, padding="valid")
        return _mean_over_bins(_mean_over_bins(x, 1, h, oh), 2, w, ow)

    def compute_output_shape(self, shape):
        return (shape[0], *self.output_size, shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def _mean_over_bins(x, axis, size, bins):
    if isinstance(size, int) and size == bins:
        return x
    parts = []
    for start, end in adaptive_bins(size, bins):
        window = [slice(None)] * 4
        window[axis] = slice(start, end)
        parts.append(ops.mean(x[tuple(window)], axis=axis, keepdims=True))
    return ops.concatenate(parts, axis=axis)


def alexnet(*, num_classes=1000, dropout=0.5, input_shape=None):
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = relu(conv2d(inputs, 64, 11, stride=4, padding=2, name="features.0"), name="features.1")
    x = max_pool(x, 3, 2, name="features.2")
    x = relu(conv2d(x, 192, 5, padding=2, name="features.3"), name="features.4")
    x = max_pool(x, 3, 2, name="features.5")
    x = relu(conv2d(x, 384, 3, padding=1, name="features.6"), name="features.7")
    x = relu(conv2d(x, 256, 3, padding=1, name="features.8"), name="features.9")
    x = relu(conv2d(x, 256, 3, padding=1, name="features.10"), name="features.11")
    x = max_pool(x, 3, 2, name="features.12")
    x = AdaptiveAvgPool2D(6, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)  # (H, W, C) order
    x = layers.Dropout(dropout, name="classifier.0")(x)
    x = relu(layers.Dense(4096, name="classifier.1")(x), name="classifier.2")
    x = layers.Dropout(dropout, name="classifier.3")(x)
    x = relu(layers.Dense(4096, name="classifier.4")(x), name="classifier.5")
    x = layers.Dense(num_classes, name="classifier.6")(x)
    return keras.Model(inputs, x, name="alexnet")
