"""Network in Network, d2l style (module paths defined in torch_impl/nin.py)."""
from .registry import register_model

register_model(
    "nin", family="nin", module="nin",
    test_sizes=(96, 99),  # end in 1x1 and 2x2 maps before global pooling
    min_size=67,  # three 3x3 stride-2 max pools after an 11x11 stride-4 conv
    head=("classifier",),
    published_params=7_439_608,  # no canonical figure: the count of this layout with 1000 classes
    tutorial="seed 003 (d2l): NiN",
)
