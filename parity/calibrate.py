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


def seeded_reference(name: str, *, seed: int = 0, input_size=None, batch: int = 4, **kwargs):
    """(framework, model): the reference a check starts from. torch_impl's seeded, calibrated
    model; for a model of one's own without a torch builder, the first framework it is written
    in, at its builder's own initialisation under keras.utils.set_random_seed(seed) (no
    calibration: a Keras or TF model's BatchNorms cannot be run in torch's train mode here)."""
    from .adapters import adapter
    from .catalogue import registry

    framework = registry.get(name).frameworks[0]
    if framework == "torch":
        return framework, calibrated_torch_model(name, seed=seed, input_size=input_size, batch=batch, **kwargs)
    import keras
    keras.utils.set_random_seed(seed)  # Python, numpy and TensorFlow's seeds
    return framework, adapter(framework).build(name, input_size=input_size or registry.get(name).input_size,
                                               **kwargs)


def seeded_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
