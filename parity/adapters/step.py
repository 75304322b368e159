"""Training in one vocabulary, torch.optim's, for a model of any framework.

`Hyper` names every hyperparameter as torch does and means what torch means; each
framework's trainer (<framework>_impl/train.py, reached through `adapter.trainer`) translates
it once, by the table below (also in docs/training.md with the formulas). Where a framework
lacks torch's exact formula the trainer uses an explicit, named implementation
(keras_impl/optimizers.py, tf_impl/optimizers.py); nothing is approximated silently.
"""
import math
from dataclasses import dataclass, field, replace

import numpy as np

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")

# torch vocabulary -> what each framework runs (native = the framework's own API is exact).
TRANSLATION = (
    ("SGD(momentum, dampening, nesterov, weight_decay)", "torch.optim.SGD",
     "keras_impl.optimizers.TorchSGD (Keras' SGD keeps v = mu*v - lr*g: differs once lr changes)",
     "tf_impl.optimizers.TorchSGD"),
    ("Adam(betas, eps, weight_decay coupled)", "torch.optim.Adam",
     "TorchAdam (Keras' Adam adds epsilon to the uncorrected sqrt(v); its weight_decay is decoupled)",
     "TorchAdam"),
    ("AdamW(betas, eps, weight_decay decoupled)", "torch.optim.AdamW",
     "TorchAdamW (Keras' AdamW: same epsilon trap as Adam)", "TorchAdamW"),
    ("RMSprop(alpha, eps, momentum, weight_decay)", "torch.optim.RMSprop",
     "TorchRMSprop (Keras: rho, default 0.9, and sqrt(v + eps))", "TorchRMSprop"),
    ("BN momentum m (0.1)", "nn.BatchNorm2d(momentum=m)",
     "keras_impl.layers.TorchBatchNormalization(momentum=1-m), running_var unbiased",
     "tf_impl.layers.BatchNorm2d(momentum=m), running_var unbiased"),
    ("label_smoothing", "F.cross_entropy(label_smoothing=)",
     "CategoricalCrossentropy(from_logits=True, label_smoothing=) on one-hot labels (native)",
     "explicit: (1-s)*CE + s*mean(-log_softmax)"),
    ("clip_grad_norm (global)", "nn.utils.clip_grad_norm_",
     "explicit global clip (max/(norm+1e-6), as torch; Keras clipnorm is per variable)", "explicit, same formula"),
    ("freeze='backbone'", "requires_grad_(False) + eval() on frozen BatchNorms",
     "layer.trainable = False (Keras: frozen BN normalizes with its moving statistics)",
     "variables left out of the step; frozen BatchNorm2d runs in inference mode"),
    ("lr schedule step/cosine", "StepLR / CosineAnnealingLR, stepped per epoch",
     "set_lr(lr_at(hyper, epoch)) per epoch (not a per-iteration LearningRateSchedule)", "same"),
)


@dataclass(frozen=True)
class Hyper:
    """torch.optim vocabulary, torch meaning."""
    optimizer: str = "sgd"  # sgd | adam | adamw | rmsprop
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    dampening: float = 0.0
    weight_decay: float = 0.0  # coupled L2 for sgd/adam/rmsprop, decoupled for adamw (as torch)
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    alpha: float = 0.99  # RMSprop smoothing (torch name)
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None  # global norm, as torch.nn.utils.clip_grad_norm_
    bn_momentum: float = 0.1  # torch convention
    freeze: str | None = None  # None | "backbone" (everything but the catalogue's head)
    schedule: str | None = None  # None | "step" | "cosine", applied per epoch with lr_at
    step_size: int = 30  # StepLR
    gamma: float = 0.1  # StepLR
    epochs: int = 0  # CosineAnnealingLR's T_max
    eta_min: float = 0.0  # CosineAnnealingLR

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.freeze not in (None, "backbone"):
            raise ValueError(f"freeze must be None or 'backbone'; got {self.freeze!r}")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and zero dampening (as torch.optim.SGD)")
        if self.schedule not in (None, "step", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose step or cosine")

    def native(self) -> dict:
        """The plain keyword arguments each <framework>_impl trainer takes."""
        return {"optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
                "nesterov": self.nesterov, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "betas": tuple(self.betas), "eps": self.eps,
                "alpha": self.alpha, "label_smoothing": self.label_smoothing,
                "clip_grad_norm": self.clip_grad_norm, "bn_momentum": self.bn_momentum}


def lr_at(hyper: Hyper, epoch: int) -> float:
    """The learning rate of `epoch` (0-based), as torch's StepLR / CosineAnnealingLR give it
    when scheduler.step() runs once per epoch after the optimizer steps."""
    if hyper.schedule == "step":
        return hyper.lr * hyper.gamma ** (epoch // hyper.step_size)
    if hyper.schedule == "cosine":
        if hyper.epochs <= 0:
            raise ValueError("cosine schedule needs epochs (T_max) > 0")
        return hyper.eta_min + (hyper.lr - hyper.eta_min) * (1 + math.cos(math.pi * epoch / hyper.epochs)) / 2
    return hyper.lr


@dataclass
class StepResult:
    loss: float
    logits: np.ndarray  # main-head output of the train-mode forward (NCHW for maps)


@dataclass
class TrainResult:
    losses: list = field(default_factory=list)  # one float per step
    grads: dict = field(default_factory=dict)  # canonical key -> gradient of the first step (torch layout)
    state: dict = field(default_factory=dict)  # canonical state after the last step, BN statistics included
    # with_first_step=True: the state and the optimizer's ({"key:state name": array}, step count)
    # after the first step, which depend on nothing but the initial state and the first batch
    first_state: dict = field(default_factory=dict)
    first_optimizer: dict = field(default_factory=dict)
    first_optimizer_steps: int = 0


class DropoutMasks:
    """The same dropout masks in every framework. A mask depends on (seed, step, canonical
    shape, rate) only, never on call order (Keras may run parallel branches in another
    order), so dropouts of one shape and rate in one step share a mask. Masks are drawn in
    canonical (NCHW) layout and already scaled by 1/(1-p)."""

    def __init__(self, seed: int = 0):
        self.seed, self.step = seed, 0

    def canonical(self, shape, rate: float) -> np.ndarray:
        rng = np.random.default_rng((self.seed, self.step, round(rate * 1e6), *shape))
        keep = rng.random(shape) >= rate
        return (keep * np.float32(1.0 / (1.0 - rate))).astype(np.float32)

    def for_layout(self, channels_last: bool, flattened=()):
        """A provider (native shape, rate) -> mask in the native layout. `flattened`: the
        (C, H, W) maps a model flattens before a dropout (catalogue flatten_linear); NHWC
        frameworks flatten them in (H, W, C) order, so the mask is permuted to match."""
        sizes = {c * h * w: (c, h, w) for c, h, w in flattened}

        def provide(shape, rate):
            shape = tuple(int(s) for s in shape)
            if channels_last and len(shape) == 4:
                n, h, w, c = shape
                return np.ascontiguousarray(self.canonical((n, c, h, w), rate).transpose(0, 2, 3, 1))
            if channels_last and len(shape) == 2 and shape[1] in sizes:
                c, h, w = sizes[shape[1]]
                mask = self.canonical(shape, rate).reshape(shape[0], c, h, w)
                return np.ascontiguousarray(mask.transpose(0, 2, 3, 1).reshape(shape))
            return self.canonical(shape, rate)
        return provide


def loss_kind(spec) -> str:
    """cross_entropy for classifiers, pixel_cross_entropy for a logits map (U-Net),
    mean_square (sum over outputs of mean(out^2)) for feature extractors (FPN)."""
    if spec is None or spec.classifier:
        return "cross_entropy"
    return "pixel_cross_entropy" if tuple(spec.outputs) == ("logits",) else "mean_square"


def make_hyper(hyper: Hyper | None = None, **kwargs) -> Hyper:
    return replace(hyper, **kwargs) if hyper is not None else Hyper(**kwargs)


class Trainer:
    """A framework's native trainer seen in canonical terms: NCHW in and out, gradients by
    canonical key in torch layout. Built by `adapter.trainer(model, hyper)`."""

    def __init__(self, native, slots, *, framework, device="cpu", channels_last=False, masks=None, dtype="float32"):
        """`slots`: (canonical key, adapters.base.Slot) of each of native.variables, in their order."""
        self.native, self.framework, self.device, self.dtype = native, framework, device, dtype
        self._slots = slots
        self._channels_last, self._masks = channels_last, masks

    @property
    def model(self):
        return self.native.model

    def step(self, x_nchw: np.ndarray, labels: np.ndarray) -> StepResult:
        from ..devices import placed
        x_nchw = x_nchw.astype(self.dtype, copy=False)  # float32 batches go into a float64 model exactly
        x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if self._channels_last else x_nchw
        with placed(self.framework, self.device):
            loss, logits = self.native.step(x, np.asarray(labels, dtype=np.int64))
        if self._masks is not None:
            self._masks.step += 1
        if self._channels_last and logits.ndim == 4:
            logits = np.ascontiguousarray(logits.transpose(0, 3, 1, 2))
        return StepResult(float(loss), logits)

    def gradients(self) -> dict:
        """Canonical key -> gradient of the last step (as applied: after global clipping)."""
        return {key: slot.canonical(g) for (key, slot), g in zip(self._slots, self.native.gradients())}

    def optimizer_state(self) -> tuple[dict, int]:
        """({"key:state name": array in torch layout}, the optimizer's step count): momentum
        buffers, Adam's exp_avg / exp_avg_sq, RMSprop's square_avg, named as torch.optim does."""
        per_variable, steps = self.native.optimizer_state()
        state = {f"{key}:{name}": slot.canonical(value) for (key, slot), slots in zip(self._slots, per_variable)
                 for name, value in slots.items()}
        return state, steps

    def load_optimizer_state(self, state: dict, steps: int) -> None:
        """The inverse of optimizer_state: every state tensor and the step count set from `state`,
        before or after a first step (a resumed run continues exactly; the dropout masks go on
        from step `steps` too)."""
        per_variable = [{name.rpartition(":")[2]: slot.native(np.asarray(value, self.dtype))
                         for name, value in state.items() if name.rpartition(":")[0] == key}
                        for key, slot in self._slots]
        self.native.load_optimizer_state(per_variable, steps)
        if self._masks is not None:
            self._masks.step = steps

    def use_dropout_masks(self, masks) -> None:
        """Every dropout of the next steps draws its mask from `masks(shape, rate)` (in the
        framework's layout); the caller advances them (data-parallel: a replica's rows of the
        global batch's masks)."""
        self.native.dropout_masks = masks

    def reset_optimizer(self) -> None:
        """The optimizer as built (no momentum or moments, step 0), for a new run of the same
        trainer: its compiled step is kept (a Keras or TF trace of ResNet-18 costs 2-3 s)."""
        self.native.reset_optimizer()

    def set_lr(self, lr: float) -> None:
        self.native.set_lr(float(lr))
