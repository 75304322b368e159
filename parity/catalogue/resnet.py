from ..registry import ModelSpec, register

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
    register(ModelSpec(_name, family="resnet", module="resnet", published_params=_params,
                       residual_norms=rf"^layer\d\.\d+\.{_last_norm}$", head=("fc",)))

# seed 003's (d2l): its Residual (convs with bias, a 1x1 conv3 without BatchNorm on a changed
# shortcut) for Fashion-MNIST resized to 96, 10 classes (torch_impl/resnet.py)
register(ModelSpec("resnet18_d2l", family="resnet", module="resnet", input_size=(1, 96, 96),
                   published_params=11_178_378,  # no canonical figure: the count of d2l's layout
                   residual_norms=r"^layer\d\.\d+\.bn2$", head=("fc",),
                   tutorial="seed 003 (d2l): ResNet-18, Fashion-MNIST at 96 px"))
