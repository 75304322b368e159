"""U-Net (Ronneberger et al., 2015) with padded 3x3 convs, so the output has the input's size.

torchvision has no U-Net; these module paths are the canonical keys (never rename them):
  encoder.{i}.conv1, encoder.{i}.bn1, encoder.{i}.conv2, encoder.{i}.bn2
        i = 0..depth; width base_width * 2**i; block i > 0 starts with max_pool2d(2, 2);
        block `depth` is the bottleneck
  decoder.{j}.up      ConvTranspose2d(2x2, stride 2) halving the channels (bilinear=False)
  decoder.{j}.reduce  1x1 Conv2d halving the channels after bilinear x2 upsampling
                      (bilinear=True; F.interpolate(align_corners=False))
  decoder.{j}.conv1, .bn1, .conv2, .bn2   on concat([skip, upsampled]) along channels
        j = 0..depth-1, deepest first; skip = output of encoder.{depth-1-j}
  head                1x1 Conv2d to num_classes, with bias (logits, no activation)
bn* exist only with batch_norm=True; then the 3x3 convs have no bias, otherwise they do.

Odd sizes: max-pooling floors, so an upsampled map can be one row/col short of its skip;
it is zero-padded to the skip's size, floor(diff/2) at the top/left and the rest at the
bottom/right (the rule of milesial/Pytorch-UNet).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_input


class DoubleConv(nn.Module):
    """(3x3 conv, [BN], ReLU) twice."""

    def __init__(self, in_ch, out_ch, batch_norm=True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(out_ch) if batch_norm else None
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(out_ch) if batch_norm else None

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x if self.bn1 is None else self.bn1(x))
        x = self.conv2(x)
        return F.relu(x if self.bn2 is None else self.bn2(x))


class UpBlock(DoubleConv):
    """Upsample x2 to half the channels, pad to the skip, concat([skip, up]), DoubleConv."""

    def __init__(self, in_ch, out_ch, batch_norm=True, bilinear=False):
        super().__init__(in_ch, out_ch, batch_norm)
        self.bilinear = bilinear
        if bilinear:
            self.reduce = nn.Conv2d(in_ch, out_ch, 1)
        else:
            self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)

    def upsample(self, x):
        if self.bilinear:
            return self.reduce(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return self.up(x)

    def forward(self, x, skip):
        x = pad_to_match(self.upsample(x), skip)
        return super().forward(torch.cat([skip, x], dim=1))


def pad_to_match(x, ref):
    """Zero-pad x's H, W to ref's: floor(diff/2) top/left, the rest bottom/right."""
    dh, dw = ref.shape[-2] - x.shape[-2], ref.shape[-1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


class UNet(nn.Module):
    def __init__(self, name="unet", *, depth=4, base_width=64, in_channels=3, num_classes=2,
                 batch_norm=True, bilinear=False):
        super().__init__()
        if depth < 1:
            raise ValueError(f"{name}: depth must be at least 1; got {depth}")
        self.arch, self.in_channels = name, in_channels
        widths = [base_width * 2 ** i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(DoubleConv(c_in, c_out, batch_norm)
                                     for c_in, c_out in zip([in_channels, *widths[:-1]], widths))
        self.decoder = nn.ModuleList(UpBlock(widths[i + 1], widths[i], batch_norm, bilinear)
                                     for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x):
        check_input(x, self.arch, "encoder.0.conv1", self.in_channels)
        skips = []
        x = self.encoder[0](x)
        for block in self.encoder[1:]:
            skips.append(x)
            x = block(F.max_pool2d(x, 2))
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(x, skip)
        return self.head(x)


def unet(**kwargs):
    return UNet("unet", **kwargs)


def unet_bilinear(**kwargs):
    return UNet("unet_bilinear", bilinear=True, **kwargs)
