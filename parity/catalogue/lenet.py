"""LeNet-5, d2l style, and seed 004's CIFAR-10 LeNet (module paths defined in torch_impl/lenet.py)."""
from .registry import register_model

register_model(
    "lenet", family="lenet", module="lenet",
    input_size=(1, 28, 28),
    test_sizes=(28, 29),  # both give the 5x5 map the 400-input Linear needs
    min_size=28,
    published_params=61_706,
    fixed_size=True,  # Dense after Flatten needs a static H, W
    flatten_linear={"classifier.0": (16, 5, 5)},
    head=("classifier",),
    tutorial="seed 003 (d2l): LeNet, Fashion-MNIST",
)

register_model(
    "lenet_cifar", family="lenet", module="lenet",
    input_size=(3, 32, 32),
    test_sizes=(32, 33),  # both give the 5x5 map the 800-input fc1 needs
    min_size=32,
    published_params=121_182,  # no canonical figure: the count of seed 004's layout
    fixed_size=True,  # Dense after Flatten needs a static H, W
    flatten_linear={"fc1": (32, 5, 5)},
    head=("fc3",),
    tutorial="seed 004: LeNet, CIFAR-10",
)
