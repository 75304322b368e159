"""AlexNet, torchvision layout."""
from ..registry import ModelSpec, register

register(ModelSpec(
    "alexnet", family="alexnet", module="alexnet",
    # 160 and 163 both end in a 4x4 map, so avgpool's 6 bins overlap unevenly (4 does not
    # divide 6); 64/67 would end in 1x1 and hide a wrong bin rule.
    test_sizes=(160, 163),
    min_size=63,
    published_params=61_100_840,
    fixed_size=True,  # adaptive pooling needs a static H, W
    flatten_linear={"classifier.1": (256, 6, 6)},
    head=("classifier",),
))
