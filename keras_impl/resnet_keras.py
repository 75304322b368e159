"""keras.applications' ResNet50/101/152: the original Caffe-style ResNet v1.

Unlike torchvision's "v1.5" (keras_impl/resnet.py): stride on the *first* 1x1 conv of a
bottleneck, a bias on every conv, BN epsilon 1.001e-5. Weighted layers are named by the
torch module paths of torch_impl/resnet_keras.py (torchvision's paths plus conv biases).
"""
import keras
from keras import layers

from .layers import Linear, global_avg_pool, relu
from .resnet_v2 import Block, Unit, bn, conv2d_same, make_layer, zero_padded_max_pool


def resnet_keras_blocks(units_per_stage):
    """Stride on the *first* unit of a stage (v1), 2 everywhere except the first stage."""
    strides = (1, 2, 2, 2)
    blocks = []
    for i, n in enumerate(units_per_stage):
        width = 64 * 2 ** i
        units = [Unit(4 * width, width, strides[i])] + [Unit(4 * width, width, 1)] * (n - 1)
        blocks.append(Block(f"layer{i + 1}", bottleneck_v1, units))
    return blocks


def bottleneck_v1(x, depth, depth_bottleneck, stride, *, name):
    shortcut = x
    if stride != 1 or x.shape[-1] != depth:
        shortcut = conv2d_same(x, depth, 1, stride=stride, bias=True, name=f"{name}.downsample.0")
        shortcut = bn(shortcut, f"{name}.downsample.1")
    y = relu(bn(conv2d_same(x, depth_bottleneck, 1, stride=stride, bias=True, name=f"{name}.conv1"), f"{name}.bn1"))
    y = relu(bn(conv2d_same(y, depth_bottleneck, 3, bias=True, name=f"{name}.conv2"), f"{name}.bn2"))
    y = bn(conv2d_same(y, depth, 1, bias=True, name=f"{name}.conv3"), f"{name}.bn3")
    return relu(layers.Add(name=f"{name}.add")([shortcut, y]))


def resnet_keras(name, blocks, *, num_classes=1000, include_top=True, input_shape=None):
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = relu(bn(conv2d_same(inputs, 64, 7, stride=2, bias=True, name="conv1"), "bn1"))
    x = zero_padded_max_pool(x, name="maxpool")
    for block in blocks:
        x = make_layer(x, block)
    if include_top:
        x = global_avg_pool(x, name="avgpool")
        x = Linear(num_classes, name="fc")(x)
    return keras.Model(inputs, x, name=name)


def resnet50_keras(**kwargs):
    return resnet_keras("resnet50_keras", resnet_keras_blocks([3, 4, 6, 3]), **kwargs)


def resnet101_keras(**kwargs):
    return resnet_keras("resnet101_keras", resnet_keras_blocks([3, 4, 23, 3]), **kwargs)


def resnet152_keras(**kwargs):
    return resnet_keras("resnet152_keras", resnet_keras_blocks([3, 8, 36, 3]), **kwargs)
