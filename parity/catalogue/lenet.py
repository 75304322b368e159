"""LeNet-5, d2l style (module paths defined in torch_impl/lenet.py)."""
from ..registry import ModelSpec, register

register(ModelSpec(
    "lenet", family="lenet", module="lenet",
    input_size=(1, 28, 28),
    test_sizes=(28, 29),  # both give the 5x5 map the 400-input Linear needs
    min_size=28,
    published_params=61_706,
    fixed_size=True,  # Dense after Flatten needs a static H, W
    flatten_linear={"classifier.0": (16, 5, 5)},
    head=("classifier",),
))
