"""train_steps: one training step per batch through a model's adapter, in any framework, with
torch.optim's meaning; what train-check, the data-parallel check and `parity.train_steps` run.
(The step interface it speaks is step.py, a leaf the adapters build their trainers from.)"""
import numpy as np

from ..adapters import adapter_for
from ..adapters.step import Hyper, TrainResult


def train_steps(model, batches, *, optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0,
                betas=(0.9, 0.999), eps=1e-8, freeze=None, device="cpu", dropout_seed=None,
                with_first_step=False, **more) -> TrainResult:
    """One training step per (x_nchw float32, labels int64) batch, in train mode; the same
    batches and initial state give the same TrainResult in torch_impl, keras_impl and tf_impl.
    `more`: the other Hyper fields (nesterov, dampening, alpha, label_smoothing, ...).
    `dropout_seed`: draw dropout masks from DropoutMasks(seed), identical in every framework.
    `with_first_step`: the result also carries the model's and the optimizer's state after step 1."""
    hyper = Hyper(optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                  betas=tuple(betas), eps=eps, freeze=freeze, **more)
    adapter = adapter_for(model)
    trainer = adapter.trainer(model, hyper, device=device, dropout_seed=dropout_seed)
    result = TrainResult()
    for i, (x, labels) in enumerate(batches):
        step = trainer.step(np.asarray(x), np.asarray(labels, dtype=np.int64))
        result.losses.append(step.loss)
        if i == 0:
            result.grads = trainer.gradients()
            if with_first_step:
                result.first_state = adapter.state_dict(model)
                result.first_optimizer, result.first_optimizer_steps = trainer.optimizer_state()
    result.state = adapter.state_dict(model)
    return result
