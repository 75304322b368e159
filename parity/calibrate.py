"""Seeded, BatchNorm-calibrated weights, so deep random networks give well-scaled outputs."""
import re

import numpy as np


def calibrated_torch_model(name: str, *, seed: int = 0, input_size=None, batch: int = 4, passes: int = 2,
                           **kwargs):
    """A torch_impl model with seeded weights, non-trivial BN affine parameters and running
    statistics measured in a few train-mode passes over seeded random inputs."""
    import torch
    from torch import nn

    from .catalogue import registry
    from .adapters import adapter

    spec = registry.get(name)
    c, h, w = input_size or spec.input_size
    torch.manual_seed(seed)
    model = adapter("torch").build(name, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    norms = {path: m for path, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    closes_branch = re.compile(spec.residual_norms).search if spec.residual_norms else lambda _: False
    with torch.no_grad():
        for path, bn in norms.items():
            if bn.affine:
                bn.weight.uniform_(*((0.0, 0.3) if closes_branch(path) else (0.5, 1.5)), generator=gen)
                bn.bias.normal_(0.0, 0.2, generator=gen)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration passes
        model.eval()  # only the BatchNorms train: training-only heads (aux logits) never run
        for bn in norms.values():
            bn.train()
        for _ in range(passes if norms else 0):
            model(torch.randn(batch, c, h, w, generator=gen))
    for bn in norms.values():
        bn.momentum = 0.1
    return model.eval()


def seeded_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
