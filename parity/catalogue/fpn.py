"""ResNet + FPN backbones (torchvision resnet_fpn_backbone layout): five feature-map outputs."""
from ..registry import ModelSpec, register

FPN_OUTPUTS = ("p2", "p3", "p4", "p5", "pool")  # torchvision's "0", "1", "2", "3", "pool"
_LAST_NORM = {"resnet18": "bn2", "resnet34": "bn2", "resnet50": "bn3", "resnet101": "bn3"}

for _trunk, _norm in _LAST_NORM.items():
    register(ModelSpec(f"{_trunk}_fpn", family="fpn", module="fpn", test_sizes=(64, 70), outputs=FPN_OUTPUTS,
                       classifier=False, head=("fpn",), residual_norms=rf"^body\.layer\d\.\d+\.{_norm}$"))
