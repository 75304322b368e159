"""GoogLeNet (torchvision layout) and the paper's Inception v1; see docs/inception.md."""
from ..registry import ModelSpec, register

# Auxiliary heads flatten a 128x4x4 map into fc1; the native frameworks flatten in (H, W, C) order.
_AUX_FLATTEN = {"aux1.fc1": (128, 4, 4), "aux2.fc1": (128, 4, 4)}

# ceil_mode max-pools need a static size in Keras; 15 is the smallest input every pool accepts.
register(ModelSpec("googlenet", family="inception", module="googlenet", test_sizes=(64, 57), min_size=15,
                   published_params=6_624_904, fixed_size=True, flatten_linear=_AUX_FLATTEN,
                   head=("fc", "aux1.fc2", "aux2.fc2"), aux_weights=(0.3, 0.3)))
register(ModelSpec("inception_v1", family="inception", module="googlenet", test_sizes=(64, 57), min_size=15,
                   fixed_size=True, flatten_linear=_AUX_FLATTEN,
                   head=("fc", "aux1.fc2", "aux2.fc2"), aux_weights=(0.3, 0.3)))
