"""`parity train-check`: one training run from identical weights and batches in torch_impl
(torch.optim, the reference), keras_impl and tf_impl, compared step by step.

Compared: the loss of every step, the first step's gradient of every trained parameter,
and the weights and BatchNorm running statistics after the last step, each as a
normalized error (max|x - ref| / max|ref|) against the same torch run in fp64. Tolerances:
the policy (GRAD_POLICY for losses and gradients, WEIGHT_POLICY for weights and buffers
after K steps), or NOISE_FACTOR x torch fp32's own error where that is larger (the measured
reference-noise rule; docs/training.md has the measured figures).
"""
import copy
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import unknown_choice
from .tolerance import NOISE_FACTOR, THRESHOLDS

GRAD_POLICY = THRESHOLDS["fp32-cpu"]  # first-step gradients and losses: the inference policy
# Weights and buffers after a few steps: optimizer state amplifies rounding (Adam divides by
# sqrt(v)), so the policy is 10x the inference one; measured worst in docs/training.md.
WEIGHT_POLICY = 1e-4
# loss: step 1 (the train-mode forward); later loss: steps 2..K, which follow the weights.
CATEGORIES = ("loss", "grad", "later loss", "weight", "buffer")
# A gradient below this fraction of the model's largest is judged on that floor, not its own scale.
ZERO_GRADIENT = 1e-6
# Below this fraction of the largest in the fp64 judge, a gradient is zero in exact arithmetic (a
# conv bias right before a train-mode BatchNorm, ~1e-15 there): an fp32 run's value for it is the
# rounding the BatchNorm backward leaves (VGG-11-BN's features.0.bias: 1e-6 of the largest), so it
# is judged on the largest gradient, and its weight, moved by that rounding alone, on the largest
# weight move (both once were judged on their own scale: VGG-11-BN tolerances of 4 and 4e9).
EXACT_ZERO = 1e-10
# The relative weight difference steps 2..K must tolerate: about what separates a port's weights
# from torch's after one step (2-5e-6 measured on ResNet-18); see perturbed_noise.
PERTURBATION = 1e-6
PERTURBED_RUNS = 3  # ResNet-18 v2 / Adam, five draws: conv1 2e-5 to 7e-3 from fp64 after 3 steps
ADAPTIVE = ("adam", "adamw", "rmsprop")  # updates normalized by sqrt(v): see sign_undetermined

# --dtype float64: every framework trains in float64 and is judged against torch float64 with
# fp32 rounding gone, so no noise allowance and no perturbed runs. Each category is judged where
# it depends on nothing the categories before it have not already judged, so the first one over
# its tolerance is the cause: after step 1 the BatchNorm buffers (the forward), the optimizer's
# state (momentum buffers, Adam's moments, step count, by torch.optim's names; the gradient)
# and the update w_1 - w_0 (the state), each on its own scale; then the later losses, and the
# final weights (w_K - w_0) and buffers, which follow from all of them.
FLOAT64_CATEGORIES = ("loss", "grad", "buffer", "optimizer", "update", "later loss", "final")
FLOAT64_POLICY = 1e-8  # measured in docs/training.md: faithful ports and the smallest planted bugs
# Adam, AdamW and RMSprop move a weight by lr*g/(|g| + eps): where |g| is near eps, the update
# (and RMSprop's momentum buffer) carries g's absolute rounding times 1/eps, and the steps after
# compound it. Faithful ports at 32 px, 2 steps: update 1.2e-8 (ResNet-18, Adam), RMSprop's
# state 1.7e-9, final weights 5.2e-7 (GoogLeNet, Adam); Adam without bias correction of m: 0.90.
FLOAT64_ADAPTIVE = {"optimizer": 1e-6, "update": 1e-6, "final": 1e-5}
# A first gradient within this fraction of its tensor's largest element is rounding in float64:
# its sign, which an adaptive optimizer's first update follows, is left out (see sign_undetermined).
FLOAT64_SIGN = 1e-12
# The later categories follow every step before them, so a change of summation order alone, as a
# faithful port makes, grows there with depth, input size and steps: torch float64 trained in
# channels_last lands 7.4e-8 from its NCHW run on Inception v3 at 299 px (final; step-1 gradients
# 4.9e-12) and 1.5e-8 on GoogLeNet at 32 px over 3 steps (benchmarks/float64_drift.py). A run that
# passes every step-1 category is judged there at NOISE_FACTOR x that drift, measured on the same
# state and batches, up to REORDER_CAP: the smallest later-only bug measured (SGD's momentum lost
# between steps) lands 0.58 there, a faithful Inception v3 5.4e-8 (docs/training.md).
LATER = ("later loss", "final")
REORDER_CAP = 1e-6

# Defaults per optimizer, in torch's vocabulary.
DEFAULT_HYPER = {
    "sgd": dict(lr=0.01, momentum=0.9, weight_decay=1e-4),
    "adam": dict(lr=1e-3, weight_decay=1e-4),
    "adamw": dict(lr=1e-3, weight_decay=1e-2),
    "rmsprop": dict(lr=1e-3, momentum=0.9, weight_decay=1e-4),
}


@dataclass
class FrameworkResult:
    framework: str
    errors: dict  # category -> worst normalized error
    tolerances: dict  # category -> tolerance
    worst: dict  # category -> key (or step) of the worst error
    passed: bool
    first_divergence: str | None = None
    likely_cause: str | None = None
    error: str | None = None
    engine: str | None = None  # Keras' backend (tensorflow, torch, jax)
    first_over: dict = field(default_factory=dict)  # category -> first key (state order) over its tolerance

    @property
    def label(self) -> str:
        return f"{self.framework} on {self.engine}" if self.engine else self.framework

    def headroom(self) -> float:
        return max((e / self.tolerances[c] for c, e in self.errors.items()), default=0.0)


@dataclass
class TrainCheckResult:
    model: str
    optimizer: str
    steps: int
    freeze: bool
    size: int
    batch: int
    hyper: dict
    reference_noise: dict
    undetermined: int = 0  # weight elements left out: first gradient's sign is rounding (adaptive optimizers)
    results: list = field(default_factory=list)
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def categories(self) -> tuple:
        return FLOAT64_CATEGORIES if self.dtype == "float64" else CATEGORIES


def normalized(a, ref, floor=0.0) -> float:
    """max |a - ref| over max(max |ref|, floor), in float64; one temporary (AlexNet's
    classifier is 38M elements, and the judge takes this some hundred times)."""
    ref = np.asarray(ref)
    if not ref.size:
        return 0.0
    scale = max(float(ref.max()), -float(ref.min()), floor)
    diff = np.subtract(a, ref, dtype=np.float64)
    diff = float(np.abs(diff, out=diff).max())
    return diff / scale if scale > 0 else diff


def is_buffer(key: str) -> bool:
    return key.endswith("running_mean") or key.endswith("running_var")


def compare(result, reference, initial, undetermined=None) -> tuple[dict, dict, dict]:
    """Per-key errors by category, worst per category and its key. `reference` is an fp64 run
    from `initial`; `undetermined`: {key: mask} of weight elements left out (see sign_undetermined)."""
    undetermined = undetermined or {}
    zero = cancelled(reference.grads)
    move = largest(v - initial[k] for k, v in reference.state.items() if k in initial and not is_buffer(k)) \
        if zero else 0.0

    def weight_error(k, v):
        keep = ~undetermined[k] if k in undetermined else slice(None)
        return normalized(result.state[k][keep], v[keep], move if k in zero else 0.0)

    per_key = {**loss_errors(result, reference), "grad": grad_errors(result, reference, zero),
               "weight": {k: weight_error(k, v) for k, v in reference.state.items() if not is_buffer(k)},
               "buffer": buffer_errors(result.state, reference.state)}
    return worst_of(per_key)


def loss_errors(result, reference) -> dict:
    """{"loss": step 1, "later loss": steps 2..K}, each relative to the reference's loss."""
    def relative(a, b):
        return abs(a - b) / max(abs(b), 1e-12)
    return {"loss": {f"step {i + 1}": relative(a, b) for i, (a, b) in enumerate(zip(result.losses[:1],
                                                                                    reference.losses[:1]))},
            "later loss": {f"step {i + 2}": relative(a, b) for i, (a, b) in enumerate(zip(result.losses[1:],
                                                                                          reference.losses[1:]))}}


def grad_errors(result, reference, zero) -> dict:
    """First-step gradients; those zero in exact arithmetic (`zero`) on the largest gradient."""
    floor, grad_scale = gradient_floor(reference.grads), largest(reference.grads.values())
    return {k: normalized(result.grads[k], g, floor=grad_scale if k in zero else floor)
            for k, g in reference.grads.items() if k in result.grads}


def buffer_errors(state, reference_state) -> dict:
    return {k: normalized(state[k], v) for k, v in reference_state.items() if is_buffer(k)}


def worst_of(per_key) -> tuple[dict, dict, dict]:
    """(per_key, the worst error per category, the key of each)."""
    worst = {c: max(d, key=d.get) if d else None for c, d in per_key.items()}
    errors = {c: (per_key[c][worst[c]] if worst[c] else 0.0) for c in per_key}
    return per_key, errors, worst


def compare_float64(result, reference, initial, undetermined=None) -> tuple[dict, dict, dict]:
    """compare() for two float64 runs made with_first_step, in FLOAT64_CATEGORIES. Updates and
    optimizer state are judged on their own scale; a tensor that is zero in exact arithmetic
    (see EXACT_ZERO) on the model's largest, as in compare."""
    undetermined = undetermined or {}
    zero = cancelled(reference.grads)
    weights = [k for k in reference.state if k in initial and not is_buffer(k)]

    def update_errors(run_state, ref_state):
        moves = {k: ref_state[k] - initial[k] for k in weights}
        largest_move = largest(moves.values())

        def error(k):
            keep = ~undetermined[k] if k in undetermined else slice(None)
            floor = largest_move if k in zero else ZERO_GRADIENT * largest_move
            return normalized((run_state[k] - initial[k])[keep], moves[k][keep], floor)
        return {k: error(k) for k in weights}

    losses = loss_errors(result, reference)
    return worst_of({"loss": losses["loss"], "grad": grad_errors(result, reference, zero),
                     "buffer": buffer_errors(result.first_state, reference.first_state),
                     "optimizer": optimizer_errors(result, reference, zero),
                     "update": update_errors(result.first_state, reference.first_state),
                     "later loss": losses["later loss"],
                     "final": {**update_errors(result.state, reference.state),
                               **buffer_errors(result.state, reference.state)}})


def optimizer_errors(result, reference, zero) -> dict:
    """{"key:state name": normalized error} of the optimizer's state after step 1, each state
    name (momentum_buffer, exp_avg, ...) with its own model-wide floor; a missing state tensor
    or another step count is infinitely wrong."""
    def name(key):
        return key.rpartition(":")[2]
    scale = {}
    for k, v in reference.first_optimizer.items():
        scale[name(k)] = max(scale.get(name(k), 0.0), largest([v]))
    errors = {}
    for k, v in reference.first_optimizer.items():
        floor = scale[name(k)] * (1.0 if k.rpartition(":")[0] in zero else ZERO_GRADIENT)
        errors[k] = normalized(result.first_optimizer[k], v, floor) if k in result.first_optimizer else float("inf")
    if result.first_optimizer_steps != reference.first_optimizer_steps:
        errors["step count"] = float("inf")
    return errors


def largest(arrays) -> float:
    return max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)


def cancelled(grads, fraction=EXACT_ZERO) -> set:
    """Parameters whose gradient is zero in exact arithmetic: below `fraction` of the largest
    gradient element (EXACT_ZERO in an fp64 run; parity.distributed, with no fp64 run, uses more)."""
    floor = gradient_floor(grads, fraction)
    return {k for k, g in grads.items() if g.size and float(np.abs(g).max()) < floor}


def gradient_floor(grads, fraction=ZERO_GRADIENT) -> float:
    """The scale below which a gradient is judged on the model-wide scale (see ZERO_GRADIENT):
    `fraction` x the largest gradient element of any parameter."""
    return fraction * max((float(np.abs(g).max()) for g in grads.values() if g.size), default=0.0)


def sign_undetermined(grads, tolerance) -> dict:
    """Adam, AdamW and RMSprop divide by sqrt(v): their first steps move a weight by about
    lr*sign(g) however small g is. Where the reference's first gradient is within the
    gradient tolerance of zero, its sign is rounding, in torch fp64 vs fp32 as much as
    across frameworks; those elements are left out of the weight comparison (and counted)."""
    floor = gradient_floor(grads)
    return {k: np.abs(g) <= max(tolerance * np.abs(g).max(), floor) for k, g in grads.items()}


def count_undetermined(undetermined, grads) -> int:
    """Elements left out that actually moved (an exactly zero gradient moves nothing)."""
    return int(sum((m & (grads[k] != 0)).sum() for k, m in undetermined.items()))


def likely_cause(per_key, tolerances, frozen_keys) -> tuple[str | None, str | None]:
    """The first parameter that diverges and the trap that most often explains it."""
    over = {c: [k for k, e in per_key[c].items() if e > tolerances[c]] for c in per_key}
    moved_frozen = [k for k in over["weight"] + over["buffer"] if k in frozen_keys]
    if moved_frozen:
        return moved_frozen[0], ("a frozen tensor moved: frozen BatchNorms must run in inference mode "
                                 "(torch eval(), Keras trainable=False) and frozen weights must get no update")
    if over["loss"] and over["loss"][0] == "step 1":
        return "loss, step 1", ("the train-mode forward differs: BN epsilon (Keras 1e-3 vs torch 1e-5), "
                                "dropout masks, or cross-entropy not from logits")
    if over["grad"]:
        return over["grad"][0], ("the first gradient differs: loss reduction/label smoothing, aux-head weights, "
                                 "or the layer's backward (frozen layers, BN in train mode)")
    if over["buffer"] and not over["weight"]:
        variances = [k for k in over["buffer"] if k.endswith("running_var")]
        means = [k for k in over["buffer"] if k.endswith("running_mean")]
        if variances and not means:
            return variances[0], "BN running variance: biased batch variance stored (torch stores the unbiased one)"
        return over["buffer"][0], "BN momentum convention (torch momentum 0.1 = Keras momentum 0.9)"
    if over["weight"]:
        return over["weight"][0], ("the update differs with equal gradients: optimizer formula (Adam epsilon inside "
                                   "vs outside the bias-corrected sqrt, SGD momentum convention under a changing lr), "
                                   "weight decay coupled vs decoupled, or per-variable vs global clipping")
    if over["later loss"]:
        return over["later loss"][0], "later losses differ: see the weights after the step before"
    return None, None


FLOAT64_CAUSES = {
    "optimizer": "the optimizer's state differs with equal gradients: SGD's first momentum buffer (torch: g, "
                 "undamped) or dampening, Adam's betas, or weight decay in the gradient (coupled) where it "
                 "should not be, or not where it should",
    "update": "the update differs with equal gradients and state: Adam's bias correction or epsilon (outside "
              "the corrected sqrt), weight decay coupled vs decoupled, the learning rate",
    "later loss": "later losses differ with an equal first step: the second step's forward (dropout masks of "
                  "step 2, BN momentum) or the optimizer from its second step on (momentum or Adam's step count "
                  "lost between steps, as by an optimizer built anew every step)",
    "final": "the run drifts after equal first steps: the optimizer from its second step on (momentum or Adam's "
             "step count lost between steps, as by an optimizer built anew every step; SGD momentum under a "
             "changing lr)",
}


def likely_cause_float64(per_key, tolerances, frozen_keys) -> tuple[str | None, str | None]:
    """The first tensor over its tolerance, in the order of FLOAT64_CATEGORIES, and its likely cause."""
    over = {c: [k for k, e in per_key[c].items() if e > tolerances[c]] for c in per_key}
    moved_frozen = [k for c in ("buffer", "update", "final") for k in over[c] if k in frozen_keys]
    if moved_frozen:
        return moved_frozen[0], ("a frozen tensor moved: frozen BatchNorms must run in inference mode "
                                 "(torch eval(), Keras trainable=False) and frozen weights must get no update")
    if over["loss"] or over["grad"] or over["buffer"]:  # named as in float32
        fp32_view = {"loss": per_key["loss"], "grad": per_key["grad"], "buffer": per_key["buffer"],
                     "weight": {}, "later loss": {}}
        return likely_cause(fp32_view, {**tolerances, "weight": 0.0}, frozen_keys)
    for category in ("optimizer", "update", "later loss", "final"):
        if over[category]:
            return over[category][0], FLOAT64_CAUSES[category]
    return None, None


def policies(device="cpu") -> dict:
    """Per category; on a GPU the inference policy is fp32-gpu's (1e-4, TF32 off), 10x as much
    for weights and buffers, as on the CPU."""
    grad = GRAD_POLICY if device == "cpu" else THRESHOLDS["fp32-gpu"]
    weight = WEIGHT_POLICY * grad / GRAD_POLICY
    return {"loss": grad, "grad": grad, "later loss": weight, "weight": weight, "buffer": weight}


def nudged(state, rng) -> dict:
    """`state` with every float32 weight times (1 + PERTURBATION x N(0, 1)); buffers unchanged."""
    return {k: (v * (1 + PERTURBATION * rng.standard_normal(v.shape))).astype(v.dtype)
            if v.dtype == np.float32 and not is_buffer(k) else v for k, v in state.items()}


def perturbed_noise(model_name, initial, batches, common, truth, undetermined, *, size, batch, seed,
                    **kwargs) -> dict:
    """The reference noise seen from PERTURBED_RUNS nearby starting points: torch fp32 runs from
    the initial weights times (1 + PERTURBATION x N(0, 1)), against the fp64 truth. Where a ReLU
    input is within rounding of zero, or a max-pool window holds two near-equal values, the last
    bits decide the mask, and one flipped element moves a gradient by tens of percent; an
    unperturbed fp32 run happens to keep most of those signs. A port's forward differs from
    torch's by about that much at step 1, and its weights do after one step:
      first-step gradients: U-Net at 32 px, a decoder ReLU input at 1e-8 of its layer's scale
        comes out positive in TensorFlow and moves decoder.3.bn1's gradient 42% (its weight
        gradients 7%); torch fp32 keeps that sign, the perturbed torch runs land 0.12-0.33 away.
      later losses, weights, buffers: ResNet-18's conv1 moves 0.2-0.9% after 3 steps in torch
        alone (docs/training.md)."""
    from .adapters import adapter
    from .calibrate import calibrated_torch_model
    from .training import train_steps
    model = calibrated_torch_model(model_name, seed=seed, input_size=(batches[0][0].shape[1], size, size),
                                   batch=batch, **kwargs)
    worst = dict.fromkeys(("grad", "later loss", "weight", "buffer"), 0.0)
    for run in range(PERTURBED_RUNS):  # a flip is a chance event: the worst of a few draws
        adapter("torch").load_state_dict(model, nudged(initial, np.random.default_rng((seed, run))))
        _, noise, _ = compare(train_steps(model, batches, **common), truth, initial, undetermined)
        worst = {c: max(worst[c], noise[c]) for c in worst}
    return worst


def make_batches(spec, model_classes, *, steps, size, batch, seed):
    rng = np.random.default_rng(seed)
    channels = spec.input_size[0]
    label_shape = (batch,) if spec.classifier else (batch, size, size)
    return [(rng.normal(size=(batch, channels, size, size)).astype(np.float32),
             rng.integers(0, model_classes, size=label_shape).astype(np.int64)) for _ in range(steps)]


def build_kwargs(spec):
    kwargs = {}
    if spec.classifier:
        kwargs["num_classes"] = 10  # small heads keep the check quick; the layout is the same
    if spec.aux_weights:
        kwargs["aux_logits"] = True  # aux heads train with their loss weights
    return kwargs


@dataclass
class Prepared:
    """What every framework's run shares: seeded, calibrated initial weights, the batches, the
    optimizer settings and the judge, the same torch run in float64 (`truth`)."""
    model: str
    spec: object
    size: int
    batch: int
    optimizer: str
    steps: int
    freeze: bool
    hyper: dict
    kwargs: dict
    initial: dict
    batches: list
    common: dict
    truth: object
    frozen_keys: set


def prepare(model_name, *, optimizer="sgd", steps=3, freeze=False, size=None, batch=4, seed=0, hyper=None,
            with_first_step=False):
    """(Prepared, the torch fp32 model it started from)."""
    import torch

    from . import registry
    from .adapters import adapter
    from .calibrate import calibrated_torch_model
    from .training import train_steps

    spec = registry.get(model_name)
    size = spec.training_size(size)
    hyper = {**DEFAULT_HYPER[optimizer], **(hyper or {})}
    kwargs = build_kwargs(spec)
    torch_adapter = adapter("torch")
    # Seeded weights with non-trivial BN affine parameters and measured running statistics:
    # at plain init (GoogLeNet's std-0.01 convs under BN) torch fp32 alone is 15% from fp64.
    reference_model = calibrated_torch_model(model_name, seed=seed, input_size=(spec.input_size[0], size, size),
                                             batch=batch, **kwargs)
    initial = torch_adapter.state_dict(reference_model)
    with torch.no_grad():
        out = torch_adapter.run(reference_model, np.zeros((1, spec.input_size[0], size, size), np.float32))[0]
    batches = make_batches(spec, out.shape[1], steps=steps, size=size, batch=batch, seed=seed)
    common = dict(optimizer=optimizer, freeze="backbone" if freeze else None, dropout_seed=seed, **hyper)
    fp64 = copy.deepcopy(reference_model).double()
    truth = train_steps(fp64, [(x.astype(np.float64), y) for x, y in batches], **common,
                        with_first_step=with_first_step)
    del fp64  # one model at a time in memory: VGG's optimizer state is over a gigabyte
    frozen_keys = {k for k in initial if freeze and not spec.in_head(k)}
    return Prepared(model_name, spec, size, batch, optimizer, steps, freeze, hyper, kwargs, initial, batches, common,
                    truth, frozen_keys), reference_model


def train_check(model_name, *, optimizer="sgd", steps=3, frameworks=("keras", "tf"), freeze=False,
                size=None, batch=4, seed=0, device="cpu", dtype="float32", **hyper) -> TrainCheckResult:
    """`frameworks` train on `device` (TF32 off on CUDA); the judge is torch on the CPU in fp64.
    "torch" among them is torch_impl itself on `device` (a CUDA run judged against the CPU).
    dtype="float64": the frameworks train in float64 too (CPU only; Float64Check)."""
    from .adapters.base import check_dtype
    if check_dtype(dtype) == "float64":
        if device != "cpu":
            raise ValueError(f"{model_name}: the float64 train-check runs on the CPU; got --device {device}")
        return Float64Check(model_name, optimizer=optimizer, steps=steps, freeze=freeze, size=size, batch=batch,
                            seed=seed, **hyper).result(frameworks)
    from .training import train_steps
    p, reference_model = prepare(model_name, optimizer=optimizer, steps=steps, freeze=freeze, size=size,
                                 batch=batch, seed=seed, hyper=hyper)
    truth = p.truth
    # The judge is the same torch run in fp64; torch fp32's own distance from it is the
    # reference noise, and a port may be NOISE_FACTOR times as far (never less than the policy).
    reference = train_steps(reference_model, p.batches, **p.common)
    del reference_model
    policy = policies(device)
    _, noise, _ = compare(reference, truth, p.initial)
    undetermined = {}
    if optimizer in ADAPTIVE:
        undetermined = sign_undetermined(truth.grads, max(policy["grad"], NOISE_FACTOR * noise["grad"]))
        _, noise, _ = compare(reference, truth, p.initial, undetermined)
    del reference
    perturbed = perturbed_noise(model_name, p.initial, p.batches, p.common, truth, undetermined, size=p.size,
                                 batch=batch, seed=seed, **p.kwargs)
    noise = {c: max(noise[c], perturbed.get(c, 0.0)) for c in CATEGORIES}
    tolerances = {c: max(policy[c], NOISE_FACTOR * noise[c]) for c in CATEGORIES}

    result = TrainCheckResult(model_name, optimizer, steps, freeze, p.size, batch, p.hyper, noise,
                              undetermined=count_undetermined(undetermined, truth.grads), device=device)
    if device != "cpu":
        from .devices import set_tf32
        set_tf32(False, frameworks)
    for framework in frameworks:
        result.results.append(_check_one(framework, p, tolerances, undetermined, device))
    return result


class Float64Check:
    """The float64 train-check of one model: the torch float64 run, made once, and any
    framework's float64 run from the same state judged against it at FLOAT64_POLICY in
    FLOAT64_CATEGORIES, with no noise allowance (fp32 rounding is gone). A run that passes
    every step-1 category and misses only the later ones is judged there again at
    NOISE_FACTOR x the reference's own drift under a change of summation order (reorder_drift)."""

    def __init__(self, model_name, *, optimizer="sgd", steps=3, freeze=False, size=None, batch=4, seed=0, **hyper):
        self.prepared, reference_model = prepare(model_name, optimizer=optimizer, steps=steps, freeze=freeze,
                                                 size=size, batch=batch, seed=seed, hyper=hyper,
                                                 with_first_step=True)
        del reference_model
        truth = self.prepared.truth
        self.undetermined = sign_undetermined(truth.grads, FLOAT64_SIGN) if optimizer in ADAPTIVE else {}
        self.tolerances = dict.fromkeys(FLOAT64_CATEGORIES, FLOAT64_POLICY)
        if optimizer in ADAPTIVE:
            self.tolerances.update(FLOAT64_ADAPTIVE)
        self.drift = None  # reorder_drift(), measured when a run first needs it

    def framework(self, framework) -> FrameworkResult:
        p = self.prepared
        run = _train_one(framework, p, "cpu", "float64")
        if isinstance(run, FrameworkResult):
            run.tolerances = self.tolerances
            return run
        row = _judge(framework, run, p, self.tolerances, self.undetermined, dtype="float64")
        if not row.passed and set(row.first_over) <= set(LATER):
            row = _judge(framework, run, p, self.later_tolerances(), self.undetermined, dtype="float64")
            if not row.passed and self.unjudgeable():
                row.likely_cause = (f"torch float64 itself lands {max(self.drift[c] for c in LATER):.1e} from its own "
                                    f"run in channels_last here (later categories): after step 1 this model at "
                                    f"{p.size} px amplifies rounding past what separates a bug; --steps 1 judges "
                                    f"the step-1 categories alone. Otherwise: {row.likely_cause}")
        return row

    def reorder_drift(self) -> dict:
        """The float64 categories' errors of torch float64 trained in channels_last, which changes
        only the order of the convolutions' sums (as a faithful port does), against the reference."""
        if self.drift is None:
            import torch

            from .adapters import adapter
            from .training import train_steps
            p, native = self.prepared, adapter("torch")
            model = native.build(p.model, input_size=(p.spec.input_size[0], p.size, p.size), dtype="float64",
                                 **p.kwargs)
            native.load_state_dict(model, p.initial)
            model = model.to(memory_format=torch.channels_last)
            run = train_steps(model, [(x.astype(np.float64), y) for x, y in p.batches], with_first_step=True,
                              **p.common)
            del model
            _, self.drift, _ = compare_float64(run, p.truth, p.initial, self.undetermined)
        return self.drift

    def later_tolerances(self) -> dict:
        drift = self.reorder_drift()
        return {**self.tolerances, **{c: max(self.tolerances[c], min(REORDER_CAP, NOISE_FACTOR * drift[c]))
                                      for c in LATER}}

    def unjudgeable(self) -> bool:
        return any(NOISE_FACTOR * self.drift[c] > REORDER_CAP for c in LATER)

    def result(self, frameworks) -> TrainCheckResult:
        p = self.prepared
        result = TrainCheckResult(p.model, p.optimizer, p.steps, p.freeze, p.size, p.batch, p.hyper,
                                  dict.fromkeys(FLOAT64_CATEGORIES, 0.0),
                                  undetermined=count_undetermined(self.undetermined, p.truth.grads), dtype="float64")
        result.results = [self.framework(f) for f in frameworks]
        if self.drift is not None:  # the reference's own drift the later categories were judged with
            result.reference_noise.update({c: self.drift[c] for c in LATER})
        return result


def _check_one(framework, p: Prepared, tolerances, undetermined, device="cpu", dtype="float32"):
    run = _train_one(framework, p, device, dtype)
    if isinstance(run, FrameworkResult):  # it failed to build or train
        run.tolerances = tolerances
        return run
    return _judge(framework, run, p, tolerances, undetermined, device, dtype)


def _train_one(framework, p: Prepared, device, dtype):
    """The framework's run from p's initial state on p's batches, or its error as a FrameworkResult."""
    from .adapters import adapter
    from .devices import placed
    from .training import train_steps
    try:
        native = adapter(framework)
        with placed(framework, device):
            model = native.build(p.model, input_size=(p.spec.input_size[0], p.size, p.size), dtype=dtype, **p.kwargs)
            native.load_state_dict(model, p.initial)
        run = train_steps(model, p.batches, device=device, with_first_step=dtype == "float64", **p.common)
        del model  # before release() collects
        return run
    except Exception as exc:  # noqa: BLE001 - reported per framework, exit 2
        return FrameworkResult(framework, {}, {}, {}, False, error=f"{type(exc).__name__}: {exc}",
                               engine=_engine(framework))
    finally:
        release(framework)


def _judge(framework, run, p: Prepared, tolerances, undetermined, device="cpu", dtype="float32"):
    """The framework's run against p.truth, category by category, at `tolerances`."""
    exact = dtype == "float64"
    reference, initial = p.truth, p.initial
    if undetermined:  # plus the elements whose first-gradient sign this framework rounded the other way
        undetermined = {k: m | (np.sign(run.grads[k]) != np.sign(reference.grads[k])) if k in run.grads else m
                        for k, m in undetermined.items()}
    per_key, errors, worst = (compare_float64 if exact else compare)(run, reference, initial, undetermined)
    passed = all(errors[c] <= tolerances[c] for c in errors)
    first, cause = (None, None) if passed else (likely_cause_float64 if exact else likely_cause)(
        per_key, tolerances, p.frozen_keys)
    if cause and device != "cpu" and framework == "torch":
        cause += (" (on CUDA: cuDNN picks Winograd/FFT algorithms for some NCHW convolutions, AlexNet's 5x5 "
                  "weight gradient 1.5e-3 from fp64 on an H200, channels_last 5.6e-7: benchmarks/cudnn_precision.py)")
    first_over = {c: next(k for k, e in per_key[c].items() if e > tolerances[c])
                  for c in errors if errors[c] > tolerances[c]}
    return FrameworkResult(framework, errors, tolerances, worst, passed, first, cause, engine=_engine(framework),
                           first_over=first_over)


def _engine(framework):
    if framework != "keras":
        return None
    import keras
    return keras.backend.backend()


def release(framework):
    """Give back what a finished model held (Keras keeps its graph state until cleared)."""
    import gc
    if framework == "keras":
        import keras
        keras.backend.clear_session()
    gc.collect()


def table(result: TrainCheckResult, role=None):
    from rich.table import Table
    hyper = ", ".join(f"{k} {v}" for k, v in result.hyper.items())
    title = (f"train-check {result.model}: {result.optimizer} ({hyper}), {result.steps} steps, "
             f"batch {result.batch} at {result.size}px{', frozen backbone' if result.freeze else ''}"
             f"{f', on {result.device}' if result.device != 'cpu' else ''}"
             + (f"; {result.undetermined} weights with a sign-undetermined first gradient left out"
                if result.undetermined else "")
             + (f"; later categories at {NOISE_FACTOR:g}x torch float64's own drift in channels_last ("
                + ", ".join(f"{c} {result.reference_noise[c]:.1e}" for c in LATER) + ")"
                if result.dtype == "float64" and any(result.reference_noise.get(c) for c in LATER) else ""))
    t = Table(title=f"{title}; {result.dtype}" + (f" ({role})" if role else ""))
    categories = result.categories
    for column in ("framework", *(f"{c} err / tol" for c in categories), "headroom", "verdict"):
        t.add_column(column)
    for r in result.results:
        if r.error:
            t.add_row(r.label, *[""] * len(categories), "", f"[red]error[/red] {r.error}")
            continue
        cells = [f"{r.errors[c]:.1e} / {r.tolerances[c]:.0e}" + (f"\n[red]{r.first_over[c]}[/red]" if c in r.first_over
                                                                else "") for c in categories]
        verdict = "[green]pass[/green]" if r.passed else f"[red]FAIL[/red] at {r.first_divergence}"
        t.add_row(r.label, *cells, f"{r.headroom():.2f}", verdict)
    return t


def write_json(result: TrainCheckResult, path, also=()) -> None:
    """The result's fields and `passed`; `also`: other dtypes' results under their dtype."""
    from .io import write_json as write
    write(path, {**asdict(result), "passed": result.passed,
                 **{other.dtype: {**asdict(other), "passed": other.passed} for other in also}})


def register(subparsers) -> None:
    """Add `parity train-check` to the `parity` command line's subparsers."""
    s = subparsers.add_parser("train-check", help="train K steps in torch, keras and tf from identical weights "
                                                  "and batches; compare losses, gradients, weights, BN statistics")
    s.add_argument("model")
    s.add_argument("--optimizer", default="sgd", choices=list(DEFAULT_HYPER))
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--frameworks", default="keras,tf",
                   help="comma list of keras, tf, and torch (torch_impl on --device; the judge is torch fp64 on the CPU)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the frameworks train")
    s.add_argument("--freeze-backbone", action="store_true", help="train only the catalogue's head")
    s.add_argument("--size", type=int, help="input height and width (default: the model's first test size)")
    s.add_argument("--batch", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dtype",  # checked by cmd_train_check: a bad value is one line, exit 2
                   help="both (default on the CPU): the float64 check gives the verdict, the float32 one shows the "
                        "rounding a port lives with; float64 or float32 alone; float32 is the only one on CUDA")
    s.add_argument("--json", metavar="FILE", help="write the result as JSON")
    # --- data-parallel check (issue 14, parity/distributed.py): --replicas N, --sync-bn ---
    from .distributed import add_options
    add_options(s)
    # --- end data-parallel options ---
    s.set_defaults(func=cmd_train_check)


DTYPE_RUNS = {"both": ("float64", "float32"), "float64": ("float64",), "float32": ("float32",)}


def cmd_train_check(args, console) -> int:
    if args.dtype is not None and args.dtype not in DTYPE_RUNS:
        raise ValueError(f"--dtype must be both, float64 or float32; got {args.dtype!r}")
    if getattr(args, "replicas", 1) > 1:  # data-parallel check (issue 14): parity/distributed.py
        from .distributed import cmd_distributed_check
        return cmd_distributed_check(args, console)
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in ("torch", "keras", "tf")]
    if unknown:
        raise ValueError(f"--frameworks: {unknown_choice('framework', unknown[0], ('torch', 'keras', 'tf'))}; "
                         "choose from torch, keras, tf")
    if not frameworks:
        raise ValueError(f"--frameworks takes torch, keras and/or tf; got {args.frameworks!r}")
    dtype = args.dtype or ("both" if args.device == "cpu" else "float32")
    results = [train_check(args.model, optimizer=args.optimizer, steps=args.steps, frameworks=frameworks,
                           freeze=args.freeze_backbone, size=args.size, batch=args.batch, seed=args.seed,
                           device=args.device, dtype=d) for d in DTYPE_RUNS[dtype]]
    verdict = results[0]
    for result in results:
        role = None if len(results) == 1 else "the verdict" if result is verdict else "the rounding a port lives with"
        console.print(table(result, role))
        for r in result.results:
            if r.first_divergence:
                console.print(f"{r.label} ({result.dtype}): first divergence at [bold]{r.first_divergence}[/bold]; "
                              f"likely cause: {r.likely_cause}")
    if args.json:
        write_json(verdict, args.json, also=results[1:])
    if any(r.error for result in results for r in result.results):
        return 2
    return 0 if verdict.passed else 1
