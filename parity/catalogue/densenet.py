"""DenseNet-BC (torchvision) and the keras.applications variants (docs/densenet.md).

The smallest input is 29x29: the stem and three transitions halve the size five times
(with floor), and the last transition must still see a 2x2 map.
"""
from .registry import register_model

_PUBLISHED = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
}
# keras.applications DenseNet121/169/201: the same network and key names, with BN epsilon
# 1.001e-5 and zero padding before the stem max-pool.
_KERAS_APPLICATIONS = ("densenet121", "densenet169", "densenet201")

# 97 -> 49 -> 25 -> 12 -> 6 -> 3: odd at the stem conv, the stem pool and a transition. A
# smaller odd size such as 57 leaves denseblock4 on 1x1 maps, where BN calibrated on a few
# single pixels makes the random network ill-conditioned: fp32 torch itself is then 1.4e-5
# away from a float64 run (docs/densenet.md), too close to the 1e-5 tolerance.
_TEST_SIZES = (64, 97)
_MIN_SIZE = 29

for _name, _params in _PUBLISHED.items():
    register_model(_name, family="densenet", module="densenet", test_sizes=_TEST_SIZES,
                       min_size=_MIN_SIZE, published_params=_params, head=("classifier",))

for _name in _KERAS_APPLICATIONS:
    register_model(f"{_name}_keras", family="densenet", module="densenet", test_sizes=_TEST_SIZES,
                       min_size=_MIN_SIZE, published_params=_PUBLISHED[_name],
                       head=("classifier",))

# seed 003's (d2l): a stem conv with bias, four blocks of 4 BN-ReLU-conv3x3 units (growth 32),
# transitions halving the channels, one input channel (Fashion-MNIST at 96 px), 10 classes.
# 96 and 67 end in 3x3 and 2x2 maps.
register_model("densenet_d2l", family="densenet", module="densenet", input_size=(1, 96, 96),
                   test_sizes=(96, 67), min_size=32,
                   published_params=758_226,  # no canonical figure: the count of d2l's layout
                   head=("fc",), tutorial="seed 003 (d2l): DenseNet, Fashion-MNIST at 96 px")
