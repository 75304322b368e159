"""U-Net: transposed-conv (default) and bilinear upsampling variants; logits map at input size."""
from .registry import register_model

for _name in ("unet", "unet_bilinear"):
    register_model(_name, family="unet", module="unet", test_sizes=(64, 70), min_size=16,
                       classifier=False, head=("head",))
