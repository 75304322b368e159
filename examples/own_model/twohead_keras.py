"""twohead_torch.py's network in Keras 3, as a user would port it: each weighted layer is
named by its torch module path ("stem.0", "se.reduce", "classes"), so its weights transfer
with no rename map. Torch's stride-2 padding=1 is an explicit ZeroPadding2D then "valid":
Keras' "same" pads a stride-2 conv on an even input only at the bottom and right. The
BatchNorm is keras_impl's TorchBatchNormalization: Keras' own tracks the biased batch
variance where torch tracks the unbiased one (train-check names that as the likely cause).
Activations are layers of their own, as torch's are (a folded `activation="relu"` works too:
the layer-by-layer comparison takes such a layer's output before its activation)."""
import keras
from keras import layers

from keras_impl.layers import TorchBatchNormalization


def conv_bn_relu(x, filters, *, stride, conv, bn):
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(filters, 3, strides=stride, padding="valid", name=conv)(x)
    x = TorchBatchNormalization(epsilon=1e-5, momentum=0.9, name=bn)(x)  # torch's eps, momentum and variance
    return layers.ReLU()(x)


def squeeze_excite(x, channels, *, name, reduction=4):
    gates = layers.GlobalAveragePooling2D(keepdims=True)(x)
    gates = layers.ReLU()(layers.Conv2D(channels // reduction, 1, name=f"{name}.reduce")(gates))
    gates = layers.Activation("sigmoid")(layers.Conv2D(channels, 1, name=f"{name}.expand")(gates))
    return layers.Multiply()([x, gates])


def twohead(num_classes=10, num_attributes=3):
    inputs = keras.Input((None, None, 3))
    x = conv_bn_relu(inputs, 16, stride=1, conv="stem.0", bn="stem.1")
    x = conv_bn_relu(x, 32, stride=2, conv="stem.3", bn="stem.4")
    features = layers.GlobalAveragePooling2D()(squeeze_excite(x, 32, name="se"))
    outputs = [layers.Dense(num_classes, name="classes")(features),
               layers.Dense(num_attributes, name="attributes")(features)]
    return keras.Model(inputs, outputs, name="twohead")
