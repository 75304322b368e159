"""Helpers shared by the torch_impl architectures."""
import torch


def check_input(x: torch.Tensor, model: str, first_layer: str, channels: int) -> None:
    """Raise a ValueError naming the model, its first layer and the bad shape or dtype."""
    if torch.compiler.is_compiling():  # export and torch.compile trace symbolic shapes
        return
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{model}: layer '{first_layer}' expects input (N, {channels}, H, W) (NCHW); "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{model}: layer '{first_layer}' got an empty batch, shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{model}: layer '{first_layer}' expects a floating-point input; got {x.dtype}")
