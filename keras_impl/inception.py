"""Inception v3 (torchvision layout: layer names are the weight keys) and its keras.applications twin.

Layer names are the torch module paths (see torch_impl/inception.py). No ceil-mode pooling,
so the graph takes any input size (input_shape=None) from 75x75 up. With AuxLogits the
graph outputs (logits, aux_logits): training mode returns both, inference the logits only
(without running the head, which needs a 17x17 Mixed_6e map, i.e. a 299x299 input).
"""
import keras
from keras import layers

from .googlenet import AuxOutputsModel, basic_conv2d, transform_imagenet_input
from .layers import Dropout, GlobalAvgPool2D, Linear, max_pool

AUX_MIN_SIZE = 17  # Mixed_6e map the auxiliary head's 5x5/3 pool and 5x5 conv need


def avg_pool_3x3(x, count_include_pad, *, name):
    """3x3/1 average pool with padding 1: zeros counted (torch's default) or excluded."""
    if count_include_pad:
        x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        return layers.AveragePooling2D(3, strides=1, padding="valid", name=name)(x)
    # stride 1 and an odd window: "same" pads 1 on every side and averages over real pixels only
    return layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)


def concat(tensors, name):
    return layers.Concatenate(axis=-1, name=name)(tensors)


def inception_a(x, pool_features, *, name, count_include_pad):
    branch1x1 = basic_conv2d(x, 64, 1, name=f"{name}.branch1x1")
    branch5x5 = basic_conv2d(x, 48, 1, name=f"{name}.branch5x5_1")
    branch5x5 = basic_conv2d(branch5x5, 64, 5, padding=2, name=f"{name}.branch5x5_2")
    branch3x3dbl = basic_conv2d(x, 64, 1, name=f"{name}.branch3x3dbl_1")
    branch3x3dbl = basic_conv2d(branch3x3dbl, 96, 3, padding=1, name=f"{name}.branch3x3dbl_2")
    branch3x3dbl = basic_conv2d(branch3x3dbl, 96, 3, padding=1, name=f"{name}.branch3x3dbl_3")
    branch_pool = avg_pool_3x3(x, count_include_pad, name=f"{name}.avg_pool")
    branch_pool = basic_conv2d(branch_pool, pool_features, 1, name=f"{name}.branch_pool")
    return concat([branch1x1, branch5x5, branch3x3dbl, branch_pool], name)


def inception_b(x, *, name):
    branch3x3 = basic_conv2d(x, 384, 3, stride=2, name=f"{name}.branch3x3")
    branch3x3dbl = basic_conv2d(x, 64, 1, name=f"{name}.branch3x3dbl_1")
    branch3x3dbl = basic_conv2d(branch3x3dbl, 96, 3, padding=1, name=f"{name}.branch3x3dbl_2")
    branch3x3dbl = basic_conv2d(branch3x3dbl, 96, 3, stride=2, name=f"{name}.branch3x3dbl_3")
    branch_pool = max_pool(x, 3, 2, name=f"{name}.max_pool")
    return concat([branch3x3, branch3x3dbl, branch_pool], name)


def inception_c(x, channels_7x7, *, name, count_include_pad):
    c7 = channels_7x7
    branch1x1 = basic_conv2d(x, 192, 1, name=f"{name}.branch1x1")
    branch7x7 = basic_conv2d(x, c7, 1, name=f"{name}.branch7x7_1")
    branch7x7 = basic_conv2d(branch7x7, c7, (1, 7), padding=(0, 3), name=f"{name}.branch7x7_2")
    branch7x7 = basic_conv2d(branch7x7, 192, (7, 1), padding=(3, 0), name=f"{name}.branch7x7_3")
    branch7x7dbl = basic_conv2d(x, c7, 1, name=f"{name}.branch7x7dbl_1")
    branch7x7dbl = basic_conv2d(branch7x7dbl, c7, (7, 1), padding=(3, 0), name=f"{name}.branch7x7dbl_2")
    branch7x7dbl = basic_conv2d(branch7x7dbl, c7, (1, 7), padding=(0, 3), name=f"{name}.branch7x7dbl_3")
    branch7x7dbl = basic_conv2d(branch7x7dbl, c7, (7, 1), padding=(3, 0), name=f"{name}.branch7x7dbl_4")
    branch7x7dbl = basic_conv2d(branch7x7dbl, 192, (1, 7), padding=(0, 3), name=f"{name}.branch7x7dbl_5")
    branch_pool = avg_pool_3x3(x, count_include_pad, name=f"{name}.avg_pool")
    branch_pool = basic_conv2d(branch_pool, 192, 1, name=f"{name}.branch_pool")
    return concat([branch1x1, branch7x7, branch7x7dbl, branch_pool], name)


def inception_d(x, *, name):
    branch3x3 = basic_conv2d(x, 192, 1, name=f"{name}.branch3x3_1")
    branch3x3 = basic_conv2d(branch3x3, 320, 3, stride=2, name=f"{name}.branch3x3_2")
    branch7x7x3 = basic_conv2d(x, 192, 1, name=f"{name}.branch7x7x3_1")
    branch7x7x3 = basic_conv2d(branch7x7x3, 192, (1, 7), padding=(0, 3), name=f"{name}.branch7x7x3_2")
    branch7x7x3 = basic_conv2d(branch7x7x3, 192, (7, 1), padding=(3, 0), name=f"{name}.branch7x7x3_3")
    branch7x7x3 = basic_conv2d(branch7x7x3, 192, 3, stride=2, name=f"{name}.branch7x7x3_4")
    branch_pool = max_pool(x, 3, 2, name=f"{name}.max_pool")
    return concat([branch3x3, branch7x7x3, branch_pool], name)


def inception_e(x, *, name, count_include_pad):
    branch1x1 = basic_conv2d(x, 320, 1, name=f"{name}.branch1x1")
    branch3x3 = basic_conv2d(x, 384, 1, name=f"{name}.branch3x3_1")
    branch3x3 = concat([basic_conv2d(branch3x3, 384, (1, 3), padding=(0, 1), name=f"{name}.branch3x3_2a"),
                        basic_conv2d(branch3x3, 384, (3, 1), padding=(1, 0), name=f"{name}.branch3x3_2b")],
                       f"{name}.branch3x3")
    branch3x3dbl = basic_conv2d(x, 448, 1, name=f"{name}.branch3x3dbl_1")
    branch3x3dbl = basic_conv2d(branch3x3dbl, 384, 3, padding=1, name=f"{name}.branch3x3dbl_2")
    branch3x3dbl = concat([basic_conv2d(branch3x3dbl, 384, (1, 3), padding=(0, 1), name=f"{name}.branch3x3dbl_3a"),
                           basic_conv2d(branch3x3dbl, 384, (3, 1), padding=(1, 0), name=f"{name}.branch3x3dbl_3b")],
                          f"{name}.branch3x3dbl")
    branch_pool = avg_pool_3x3(x, count_include_pad, name=f"{name}.avg_pool")
    branch_pool = basic_conv2d(branch_pool, 192, 1, name=f"{name}.branch_pool")
    return concat([branch1x1, branch3x3, branch3x3dbl, branch_pool], name)


def inception_aux(x, num_classes, *, name):
    """5x5/3 average pool, 1x1 conv to 128, 5x5 conv to 768, global average, fc; needs a 17x17 input."""
    if x.shape[1] is not None and min(x.shape[1:3]) < AUX_MIN_SIZE:
        raise ValueError(f"inception_v3: {name} needs a {AUX_MIN_SIZE}x{AUX_MIN_SIZE} Mixed_6e map (a 299x299 "
                         f"input); got {x.shape[1]}x{x.shape[2]}. Build with input_shape=None or aux_logits=False")
    x = layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{name}.avg_pool")(x)
    x = basic_conv2d(basic_conv2d(x, 128, 1, name=f"{name}.conv0"), 768, 5, name=f"{name}.conv1")
    x = GlobalAvgPool2D(name=f"{name}.global_pool")(x)
    return Linear(num_classes, name=f"{name}.fc")(x)


def inception3(name, *, num_classes=1000, aux_logits=True, transform=False, dropout=0.5, count_include_pad=True,
               input_shape=None):
    pad_counts = dict(count_include_pad=count_include_pad)
    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = transform_imagenet_input(inputs) if transform else inputs
    x = basic_conv2d(x, 32, 3, stride=2, name="Conv2d_1a_3x3")
    x = basic_conv2d(x, 32, 3, name="Conv2d_2a_3x3")
    x = basic_conv2d(x, 64, 3, padding=1, name="Conv2d_2b_3x3")
    x = max_pool(x, 3, 2, name="maxpool1")
    x = basic_conv2d(x, 80, 1, name="Conv2d_3b_1x1")
    x = basic_conv2d(x, 192, 3, name="Conv2d_4a_3x3")
    x = max_pool(x, 3, 2, name="maxpool2")
    x = inception_a(x, 32, name="Mixed_5b", **pad_counts)
    x = inception_a(x, 64, name="Mixed_5c", **pad_counts)
    x = inception_a(x, 64, name="Mixed_5d", **pad_counts)
    x = inception_b(x, name="Mixed_6a")
    x = inception_c(x, 128, name="Mixed_6b", **pad_counts)
    x = inception_c(x, 160, name="Mixed_6c", **pad_counts)
    x = inception_c(x, 160, name="Mixed_6d", **pad_counts)
    x = inception_c(x, 192, name="Mixed_6e", **pad_counts)
    aux = inception_aux(x, num_classes, name="AuxLogits") if aux_logits else None
    x = inception_d(x, name="Mixed_7a")
    x = inception_e(x, name="Mixed_7b", **pad_counts)
    x = inception_e(x, name="Mixed_7c", **pad_counts)
    x = GlobalAvgPool2D(name="avgpool")(x)
    logits = Linear(num_classes, name="fc")(Dropout(dropout, name="dropout")(x))
    if aux_logits:
        return AuxOutputsModel(inputs, [logits, aux], name=name)
    return keras.Model(inputs, logits, name=name)


def inception_v3(*, num_classes=1000, aux_logits=True, transform_input=False, dropout=0.5, input_shape=None):
    return inception3("inception_v3", num_classes=num_classes, aux_logits=aux_logits, transform=transform_input,
                      dropout=dropout, input_shape=input_shape)


def inception_v3_keras(*, num_classes=1000, transform_input=False, dropout=0.5, input_shape=None):
    """keras.applications.InceptionV3: no auxiliary head, average pools exclude the padding."""
    return inception3("inception_v3_keras", num_classes=num_classes, aux_logits=False, transform=transform_input,
                      dropout=dropout, count_include_pad=False, input_shape=input_shape)
