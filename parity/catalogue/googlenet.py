"""GoogLeNet (torchvision layout) and the paper's Inception v1; see docs/inception.md."""
from .registry import register_model

# Auxiliary heads flatten a 128x4x4 map into fc1; the native frameworks flatten in (H, W, C) order.
_AUX_FLATTEN = {"aux1.fc1": (128, 4, 4), "aux2.fc1": (128, 4, 4)}

# ceil_mode max-pools need a static size in Keras; 15 is the smallest input every pool accepts.
register_model("googlenet", family="inception", module="googlenet", test_sizes=(64, 57), min_size=15,
                   published_params=6_624_904, fixed_size=True, flatten_linear=_AUX_FLATTEN,
                   head=("fc", "aux1.fc2", "aux2.fc2"), aux_weights=(0.3, 0.3))
register_model("inception_v1", family="inception", module="googlenet", test_sizes=(64, 57), min_size=15,
                   fixed_size=True, flatten_linear=_AUX_FLATTEN,
                   head=("fc", "aux1.fc2", "aux2.fc2"), aux_weights=(0.3, 0.3))
# seed 004's, for its flower set (5 classes): aux heads AvgPool2d(5, 3) then a 2048-input fc1,
# so a 4x4 map after the pool, built with the graph: 223..270 px (224 and the odd 231 here; on
# 14x14 the pool's windows start at 0/3/6/9, an adaptive 4x4 pool's at 0/3/7/10).
register_model("googlenet_nobn", family="inception", module="googlenet", input_size=(3, 224, 224),
                   test_sizes=(224, 231), min_size=223, train_min_size=223,
                   published_params=10_318_655,  # no canonical figure: the count of seed 004's layout
                   fixed_size=True, flatten_linear=_AUX_FLATTEN,
                   head=("fc", "aux1.fc2", "aux2.fc2"), aux_weights=(0.3, 0.3),
                   tutorial="seed 004: GoogLeNet without BatchNorm, flower photos (5 classes)")
# seed 003's (d2l): convs with bias, its own Inception branch names, max pools padded by 1 without
# ceil_mode, one input channel (Fashion-MNIST at 96 px), no aux heads, no dropout, 10 classes
register_model("googlenet_d2l", family="inception", module="googlenet", input_size=(1, 96, 96),
                   published_params=5_977_530,  # no canonical figure: the count of d2l's layout
                   head=("fc",), tutorial="seed 003 (d2l): GoogLeNet, Fashion-MNIST at 96 px")
# seed 000's: its own paths (block1..block4, conv.0, branch_1x1 ...), LocalResponseNorm(64) and
# (192) windows, 3x3/2 pools padded by 1, AvgPool2d(3, 1) on the 4x4 map and a CHW flatten into
# Linear(4096): 97..128 px give that map. The evaluation form (the text leaves out its aux heads).
register_model("inception_v1_lrn64", family="inception", module="googlenet", input_size=(3, 128, 128),
                   test_sizes=(128, 99), min_size=97, fixed_size=True,
                   published_params=10_070_552,  # no canonical figure: the count of seed 000's layout
                   flatten_linear={"classifier": (1024, 2, 2)}, head=("classifier",),
                   tutorial="seed 000: Inception v1 with LocalResponseNorm(64) and (192), 128 px")
