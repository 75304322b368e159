"""VGG 11/13/16/19 with and without BatchNorm, torchvision layout, and the tutorials' own VGGs."""
from .registry import register_model

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
    register_model(
        _name, family="vgg", module="vgg",
        test_sizes=(64, 67),  # both end in a 2x2 map: avgpool's 7 bins overlap unevenly
        min_size=32,
        published_params=_params,
        fixed_size=True,  # adaptive pooling needs a static H, W
        flatten_linear={"classifier.0": (512, 7, 7)},
        head=("classifier",),
    )

# seed 004's VGGs for its flower set: no average pool, the classifier Dropout-first and 2048
# wide, 5 classes (no canonical figure: the counts of that layout)
_FC2048 = {"vgg11_fc2048": 64_809_349, "vgg13_fc2048": 64_993_861, "vgg16_fc2048": 70_303_557,
           "vgg19_fc2048": 75_613_253}

for _name, _params in _FC2048.items():
    register_model(
        _name, family="vgg", module="vgg",
        test_sizes=(224, 239),  # the 512 x 7 x 7 flatten: 224..239 px end in a 7x7 map
        min_size=224,
        published_params=_params,
        fixed_size=True,
        flatten_linear={"classifier.1": (512, 7, 7)},
        head=("classifier",),
        tutorial=f"seed 004: VGG-{_name[3:5]}, flower photos (5 classes)",
    )

# seed 003's (d2l): VGG-11 for Fashion-MNIST resized to 224, convs grouped in vgg_blocks
# (features.<block>.<index>), no average pool, torchvision's classifier, 10 classes
register_model(
    "vgg11_d2l", family="vgg", module="vgg",
    input_size=(1, 224, 224),
    test_sizes=(224, 239),  # the 512 x 7 x 7 flatten: 224..239 px end in a 7x7 map
    min_size=224,
    published_params=128_806_154,  # no canonical figure: the count of d2l's layout
    fixed_size=True,
    flatten_linear={"classifier.0": (512, 7, 7)},
    head=("classifier",),
    tutorial="seed 003 (d2l): VGG-11, Fashion-MNIST at 224 px",
)
