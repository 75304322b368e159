"""twohead_torch.py's network in plain TensorFlow 2 (tf.Module + tf.nn), built from
tf_impl.layers' weighted layers: their attribute paths ("stem[0]" is "stem.0") are the
canonical weight names, and they take torch's padding and BatchNorm arguments as torch does."""
import tensorflow as tf

from tf_impl.layers import BatchNorm2d, Conv2d, Linear


class SqueezeExcite(tf.Module):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.reduce = Conv2d(channels, channels // reduction, 1)
        self.expand = Conv2d(channels // reduction, channels, 1)

    def __call__(self, x):
        gates = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        return x * tf.sigmoid(self.expand(tf.nn.relu(self.reduce(gates))))


class TwoHead(tf.Module):
    def __init__(self, num_classes=10, num_attributes=3):
        super().__init__(name="twohead")
        self.stem = [Conv2d(3, 16, 3, padding=1), BatchNorm2d(16), tf.nn.relu,
                     Conv2d(16, 32, 3, stride=2, padding=1), BatchNorm2d(32), tf.nn.relu]
        self.se = SqueezeExcite(32)
        self.classes = Linear(32, num_classes)
        self.attributes = Linear(32, num_attributes)

    def __call__(self, x, training=False):
        for layer in self.stem:
            x = layer(x, training=training) if isinstance(layer, BatchNorm2d) else layer(x)
        features = tf.reduce_mean(self.se(x), axis=(1, 2))
        return self.classes(features), self.attributes(features)


def twohead(**kwargs):
    return TwoHead(**kwargs)
