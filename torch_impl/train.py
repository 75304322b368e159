"""One training step, the torch way: train(), zero_grad, backward, step, with torch.optim.

The hyperparameters are torch.optim's own, so nothing is translated here; this loop is the
reference the Keras and TF trainers are checked against.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._common import Dropout


def make_optimizer(params, *, optimizer, lr, momentum, nesterov, dampening, weight_decay, betas, eps, alpha):
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=dampening,
                               weight_decay=weight_decay, nesterov=nesterov)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                   momentum=momentum)
    raise ValueError(f"unknown optimizer {optimizer!r}")


def in_head(path, head):
    return any(path == p or path.startswith(p + ".") for p in head)


def compute_loss(outputs, labels, *, loss, aux_weights, label_smoothing):
    """Mean cross-entropy from logits (per pixel for a logits map), aux heads weighted;
    mean_square: sum over outputs of mean(out^2), for feature extractors."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if loss == "mean_square":
        return sum(o.square().mean() for o in outputs), outputs[0]
    weights = (1.0, *aux_weights)[:len(outputs)]
    total = sum(w * F.cross_entropy(o, labels, label_smoothing=label_smoothing) for w, o in zip(weights, outputs))
    return total, outputs[0]


class Trainer:
    def __init__(self, model, *, optimizer="sgd", lr=0.01, momentum=0.0, nesterov=False, dampening=0.0,
                 weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, alpha=0.99, label_smoothing=0.0,
                 clip_grad_norm=None, bn_momentum=0.1, loss="cross_entropy", aux_weights=(), head=None,
                 dropout_masks=None, device="cpu"):
        self.model, self.device = model.to(device), device
        self.loss, self.aux_weights, self.label_smoothing = loss, aux_weights, label_smoothing
        self.clip_grad_norm, self.dropout_masks = clip_grad_norm, dropout_masks
        self.frozen_norms, self.steps = [], 0
        for path, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
                if head is not None and not in_head(path, head):
                    self.frozen_norms.append(module)
        if head is not None:
            for name, param in model.named_parameters():
                param.requires_grad_(in_head(name, head))
        self.variables = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.variables, optimizer=optimizer, lr=lr, momentum=momentum,
                                        nesterov=nesterov, dampening=dampening, weight_decay=weight_decay,
                                        betas=betas, eps=eps, alpha=alpha)

    def train_mode(self):
        # Walking the modules costs as much as a small model's optimizer step: only when a mode is off.
        if self.model.training and not any(norm.training for norm in self.frozen_norms):
            return
        self.model.train()
        for norm in self.frozen_norms:  # frozen BN: running statistics, and they do not move
            norm.eval()

    def step(self, x, labels):
        self.train_mode()
        x = torch.from_numpy(x).to(self.device)
        labels = torch.from_numpy(labels).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with injected_dropout(self.model, self.dropout_masks):
            loss, logits = compute_loss(self.model(x), labels, loss=self.loss, aux_weights=self.aux_weights,
                                        label_smoothing=self.label_smoothing)
        loss.backward()
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.variables, self.clip_grad_norm)
        self.optimizer.step()
        self.steps += 1
        return loss.item(), logits.detach().float().cpu().numpy()

    def gradients(self):
        return [p.grad.detach().cpu().numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32)
                for p in self.variables]

    def optimizer_state(self):
        """Per variable {state name: array} as torch.optim keeps it (momentum_buffer, exp_avg, ...),
        and the step count."""
        per_variable, steps = [], 0
        for p in self.variables:
            state = self.optimizer.state.get(p, {})
            per_variable.append({k: v.detach().cpu().numpy().copy() for k, v in state.items()
                                 if k != "step" and isinstance(v, torch.Tensor)})
            steps = max(steps, int(state["step"])) if "step" in state else steps
        return per_variable, steps or self.steps

    def load_optimizer_state(self, per_variable, steps):
        """Set the state optimizer_state returns, before or after a first step: torch.optim
        creates a parameter's state on its first update unless it is there already."""
        for p, slots in zip(self.variables, per_variable):
            if not slots:
                continue
            state = self.optimizer.state[p]
            for name, value in slots.items():
                state[name] = torch.tensor(np.asarray(value), dtype=p.dtype, device=p.device)
            if "step" in state or any(name != "momentum_buffer" for name in slots):  # Adam, AdamW, RMSprop count
                state["step"] = torch.tensor(float(steps), dtype=torch.float32)
        self.steps = steps

    def reset_optimizer(self):
        """The optimizer as built: no state (torch.optim creates it on a first update), step 0."""
        self.optimizer.state.clear()
        self.steps = 0

    def set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr


@contextlib.contextmanager
def injected_dropout(model, masks):
    """While active, every Dropout of `model` (torch_impl._common.Dropout) multiplies by
    masks(shape, p) (already scaled by 1/(1-p)) instead of drawing from torch's RNG, so every
    framework drops the same units. Only this model's layers are touched."""
    layers = [m for m in model.modules() if isinstance(m, Dropout)] if masks is not None else []
    for layer in layers:
        layer.masks = masks
    try:
        yield
    finally:
        for layer in layers:
            layer.masks = None
