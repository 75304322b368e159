"""Helpers shared by the torch_impl architectures."""
import torch
from torch import nn


class Dropout(nn.Dropout):
    """torch.nn.Dropout whose masks can come from outside: while `masks` is set (a callable
    (shape, p) -> the mask, already scaled by 1/(1-p), as parity's DropoutMasks draws it), a
    training-mode call multiplies by that instead of drawing from torch's RNG, so every
    framework drops the same units. Unset, it is nn.Dropout (train.Trainer sets and unsets it)."""

    masks = None

    def forward(self, x):
        if self.masks is None or not self.training or self.p == 0:
            return super().forward(x)
        return x * torch.from_numpy(self.masks(tuple(x.shape), self.p)).to(x.device)


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
