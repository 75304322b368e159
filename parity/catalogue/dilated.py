"""Dilated convolutions: an HDC net (rates 1, 2, 3) and resnet50 at output stride 8."""
from .registry import register_model

register_model("hdc_net", family="dilated", module="dilated", classifier=False,
                   residual_norms=r"^blocks\.\d+\.bn3$", head=("head",))
register_model("resnet50_dilated", family="dilated", module="dilated", outputs=("features",),
                   classifier=False, residual_norms=r"^layer\d\.\d+\.bn3$")
