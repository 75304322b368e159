"""AlexNet, torchvision layout, and the tutorials' own: seed 004's half-width AlexNet, d2l's."""
from .registry import register_model

register_model(
    "alexnet", family="alexnet", module="alexnet",
    # 160 and 163 both end in a 4x4 map, so avgpool's 6 bins overlap unevenly (4 does not
    # divide 6); 64/67 would end in 1x1 and hide a wrong bin rule.
    test_sizes=(160, 163),
    min_size=63,
    published_params=61_100_840,
    fixed_size=True,  # adaptive pooling needs a static H, W
    flatten_linear={"classifier.1": (256, 6, 6)},
    head=("classifier",),
)

register_model(
    "alexnet_half", family="alexnet", module="alexnet",
    input_size=(3, 224, 224),
    # No average pool: the flatten takes 128 x 6 x 6, which only 224..227 give (227 is odd).
    test_sizes=(224, 227),
    min_size=224,
    published_params=14_591_685,  # no canonical figure: the count of seed 004's layout, 5 classes
    fixed_size=True,
    flatten_linear={"classifier.1": (128, 6, 6)},
    head=("classifier",),
    tutorial="seed 004: AlexNet, flower photos (5 classes)",
)

register_model(
    "alexnet_d2l", family="alexnet", module="alexnet",
    input_size=(1, 224, 224),  # Fashion-MNIST resized to 224, as d2l trains it
    test_sizes=(224, 227),  # no average pool: the flatten takes 256 x 5 x 5, which only 224..227 give
    min_size=224,
    published_params=46_764_746,  # no canonical figure: the count of d2l's layout, 10 classes
    fixed_size=True,
    flatten_linear={"classifier.0": (256, 5, 5)},
    head=("classifier",),
    tutorial="seed 003 (d2l): AlexNet, Fashion-MNIST at 224 px",
)
