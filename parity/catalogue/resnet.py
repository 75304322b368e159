from .registry import register_model

_PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}

_BASIC = ("resnet18", "resnet34")

for _name, _params in _PUBLISHED.items():
    _last_norm = "bn2" if _name in _BASIC else "bn3"
    register_model(_name, family="resnet", module="resnet", published_params=_params,
                       residual_norms=rf"^layer\d\.\d+\.{_last_norm}$", head=("fc",))

# seed 003's (d2l): its Residual (convs with bias, a 1x1 conv3 without BatchNorm on a changed
# shortcut) for Fashion-MNIST resized to 96, 10 classes (torch_impl/resnet.py)
register_model("resnet18_d2l", family="resnet", module="resnet", input_size=(1, 96, 96),
                   published_params=11_178_378,  # no canonical figure: the count of d2l's layout
                   residual_norms=r"^layer\d\.\d+\.bn2$", head=("fc",),
                   tutorial="seed 003 (d2l): ResNet-18, Fashion-MNIST at 96 px")

# seed 000's: its own names (conv.conv.{0,1}, block1..4, bottleneck.{0,2,4}, downsample, classifier),
# no ReLU after the stem, and AvgPool2d(4) as written: the top-left 4x4 window of the last map,
# whose 1x1 output needs 97..224 px (160 and 131 here: a 5x5 map, where that pool is not global).
register_model("resnet50_blocks", family="resnet", module="resnet", test_sizes=(160, 131), min_size=97,
                   fixed_size=True, published_params=25_557_032,  # resnet50's count: the same layers
                   residual_norms=r"^block\d\.\d+\.bottleneck\.4\.conv\.1$", head=("classifier",),
                   tutorial="seed 000: ResNet-50 with its own block names and AvgPool2d(4)")
