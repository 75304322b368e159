"""The train-check judge: its policies and tolerances, the normalized errors of losses,
gradients, optimizer state, weights and BatchNorm statistics against a reference run, the
likely cause of the first divergence, and the seeded batches every framework trains on.
Numpy only: used by the single-process check (check.py) and the data-parallel one
(parallel/check.py)."""
import numpy as np

from ..tolerance import THRESHOLDS

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
# from torch's after one step (2-5e-6 measured on ResNet-18); see check.perturbed_noise.
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
    gradient element (EXACT_ZERO in an fp64 run; the data-parallel check, with no fp64 run, uses more)."""
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
