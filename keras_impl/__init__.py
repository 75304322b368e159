"""Hand-written Keras 3 implementations (functional API, keras.layers / keras.ops only).

Each weighted layer's name is its torch module path, so weights move by name.
"""
import keras as _keras

if _keras.backend.backend() == "torch":  # torch refuses "." in parameter names: see _torch_backend.py
    from ._torch_backend import accept_dotted_layer_names, use_copy_free_conv

    accept_dotted_layer_names()
    use_copy_free_conv()  # Keras' torch conv copies layouts three times per call
from .resnet import (
    resnet18, resnet34, resnet50, resnet101, resnet152,
    resnext50_32x4d, resnext101_32x8d, resnext101_64x4d,
    wide_resnet50_2, wide_resnet101_2,
)
from .resnet_v2 import resnet18_v2, resnet34_v2, resnet50_v2, resnet101_v2, resnet152_v2
from .resnet_keras import resnet50_keras, resnet101_keras, resnet152_keras
from .densenet import densenet121, densenet161, densenet169, densenet201, densenet121_keras, densenet169_keras, densenet201_keras  # noqa: E501
from .fpn import resnet18_fpn, resnet34_fpn, resnet50_fpn, resnet101_fpn
from .unet import unet, unet_bilinear
from .dilated import hdc_net, resnet50_dilated
from .lenet import lenet
from .alexnet import alexnet
from .vgg import vgg11, vgg13, vgg16, vgg19, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn
from .nin import nin
from .googlenet import googlenet, inception_v1
from .inception import inception_v3, inception_v3_keras
