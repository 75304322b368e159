"""ResNet + FPN backbones (torchvision resnet_fpn_backbone layout): five feature-map outputs."""
from .registry import register_model

FPN_OUTPUTS = ("p2", "p3", "p4", "p5", "pool")  # torchvision's "0", "1", "2", "3", "pool"
_LAST_NORM = {"resnet18": "bn2", "resnet34": "bn2", "resnet50": "bn3", "resnet101": "bn3"}

for _trunk, _norm in _LAST_NORM.items():
    register_model(f"{_trunk}_fpn", family="fpn", module="fpn", test_sizes=(64, 70), outputs=FPN_OUTPUTS,
                       classifier=False, head=("fpn",), residual_norms=rf"^body\.layer\d\.\d+\.{_norm}$")

# seed 000's: the trunk at the top level (torchvision's keys), C2toM2 .. C5toM5, one MtoP for every
# level, corner-aligned bilinear upsampling (F.upsample_bilinear); outputs p2..p5, no pool level
register_model("fpn_shared_head", family="fpn", module="fpn", test_sizes=(64, 70),
                   outputs=FPN_OUTPUTS[:4], classifier=False, head=("MtoP", "C2toM2", "C3toM3", "C4toM4", "C5toM5"),
                   residual_norms=r"^layer\d\.\d+\.bn3$",
                   tutorial="seed 000: FPN on ResNet-50, one shared 3x3 head, corner-aligned bilinear upsampling")
