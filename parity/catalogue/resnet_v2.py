"""ResNet v2 (pre-activation, TF-slim / keras.applications layout) and keras.applications'
Caffe-style ResNet v1 (`*_keras`).

published_params follows the catalogue's convention (torch `parameters()`, BN running
statistics excluded): keras.applications' trainable weights. keras' `count_params()`
also counts the BN moving statistics; those totals are in the comments.
"""
from .registry import register_model

_V2 = {
    "resnet18_v2": None,  # no published reference: basic pre-activation units, for learners
    "resnet34_v2": None,
    "resnet50_v2": 25_568_360,  # keras.applications.ResNet50V2, count_params() 25,613,800
    "resnet101_v2": 44_577_896,  # ResNet101V2, count_params() 44,675,560
    "resnet152_v2": 60_236_904,  # ResNet152V2, count_params() 60,380,648
}
_KERAS_V1 = {
    "resnet50_keras": 25_583_592,  # keras.applications.ResNet50, count_params() 25,636,712
    "resnet101_keras": 44_601_832,  # ResNet101, count_params() 44,707,176
    "resnet152_keras": 60_268_520,  # ResNet152, count_params() 60,419,944
}

_BASIC = ("resnet18_v2", "resnet34_v2")

for _name, _params in _V2.items():
    # A v2 branch ends in a conv, not a BN: its last BN (before that conv) gets the small gains.
    _last_norm = "bn1" if _name in _BASIC else "bn2"
    register_model(_name, family="resnet_v2", module="resnet_v2", test_sizes=(64, 57),
                       published_params=_params, residual_norms=rf"^layer\d\.\d+\.{_last_norm}$", head=("fc",))
for _name, _params in _KERAS_V1.items():
    register_model(_name, family="resnet_keras", module="resnet_keras", test_sizes=(64, 57),
                       published_params=_params, residual_norms=r"^layer\d\.\d+\.bn3$", head=("fc",))
