"""VGG 11/13/16/19 with and without BatchNorm, torchvision layout."""
from ..registry import ModelSpec, register

_PUBLISHED = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}

for _name, _params in _PUBLISHED.items():
    register(ModelSpec(
        _name, family="vgg", module="vgg",
        test_sizes=(64, 67),  # both end in a 2x2 map: avgpool's 7 bins overlap unevenly
        min_size=32,
        published_params=_params,
        fixed_size=True,  # adaptive pooling needs a static H, W
        flatten_linear={"classifier.0": (512, 7, 7)},
        head=("classifier",),
    ))
