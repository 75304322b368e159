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
import json
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

    @property
    def label(self) -> str:
        return f"{self.framework} on {self.engine}" if self.engine else self.framework

    def headroom(self) -> float:
        return max((self.errors[c] / self.tolerances[c] for c in CATEGORIES if c in self.errors), default=0.0)


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

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


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
    floor = gradient_floor(reference.grads)
    zero = cancelled(reference.grads)
    grad_scale = largest(reference.grads.values())
    move = largest(v - initial[k] for k, v in reference.state.items() if k in initial and not is_buffer(k)) \
        if zero else 0.0

    def weight_error(k, v):
        keep = ~undetermined[k] if k in undetermined else slice(None)
        return normalized(result.state[k][keep], v[keep], move if k in zero else 0.0)

    per_key = {
        "loss": {f"step {i + 1}": abs(a - b) / max(abs(b), 1e-12)
                 for i, (a, b) in enumerate(zip(result.losses[:1], reference.losses[:1]))},
        "later loss": {f"step {i + 2}": abs(a - b) / max(abs(b), 1e-12)
                       for i, (a, b) in enumerate(zip(result.losses[1:], reference.losses[1:]))},
        "grad": {k: normalized(result.grads[k], g, floor=grad_scale if k in zero else floor)
                 for k, g in reference.grads.items() if k in result.grads},
        "weight": {k: weight_error(k, v) for k, v in reference.state.items() if not is_buffer(k)},
        "buffer": {k: normalized(result.state[k], v) for k, v in reference.state.items() if is_buffer(k)},
    }
    worst = {c: max(d, key=d.get) if d else None for c, d in per_key.items()}
    errors = {c: (per_key[c][worst[c]] if worst[c] else 0.0) for c in per_key}
    return per_key, errors, worst


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


def train_check(model_name, *, optimizer="sgd", steps=3, frameworks=("keras", "tf"), freeze=False,
                size=None, batch=4, seed=0, device="cpu", **hyper) -> TrainCheckResult:
    """`frameworks` train on `device` (TF32 off on CUDA); the judge is torch on the CPU in fp64.
    "torch" among them is torch_impl itself on `device` (a CUDA run judged against the CPU)."""
    import torch

    from . import registry
    from .adapters import adapter
    from .calibrate import calibrated_torch_model
    from .training import train_steps

    spec = registry.get(model_name)
    size = size or spec.test_sizes[0]
    hyper = {**DEFAULT_HYPER[optimizer], **hyper}
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

    # The judge is the same torch run in fp64; torch fp32's own distance from it is the
    # reference noise, and a port may be NOISE_FACTOR times as far (never less than the policy).
    fp64 = copy.deepcopy(reference_model).double()
    truth = train_steps(fp64, [(x.astype(np.float64), y) for x, y in batches], **common)
    del fp64  # one model at a time in memory: VGG's optimizer state is over a gigabyte
    reference = train_steps(reference_model, batches, **common)
    del reference_model
    policy = policies(device)
    _, noise, _ = compare(reference, truth, initial)
    undetermined = {}
    if optimizer in ADAPTIVE:
        undetermined = sign_undetermined(truth.grads, max(policy["grad"], NOISE_FACTOR * noise["grad"]))
        _, noise, _ = compare(reference, truth, initial, undetermined)
    del reference
    perturbed = perturbed_noise(model_name, initial, batches, common, truth, undetermined, size=size,
                                 batch=batch, seed=seed, **kwargs)
    noise = {c: max(noise[c], perturbed.get(c, 0.0)) for c in CATEGORIES}
    tolerances = {c: max(policy[c], NOISE_FACTOR * noise[c]) for c in CATEGORIES}
    frozen_keys = {k for k in initial if freeze and not spec.in_head(k)}

    result = TrainCheckResult(model_name, optimizer, steps, freeze, size, batch, hyper, noise,
                              undetermined=count_undetermined(undetermined, truth.grads), device=device)
    if device != "cpu":
        from .devices import set_tf32
        set_tf32(False, frameworks)
    for framework in frameworks:
        result.results.append(_check_one(framework, model_name, spec, kwargs, initial, batches, common,
                                         truth, tolerances, frozen_keys, size, undetermined, device))
    return result


def _check_one(framework, model_name, spec, kwargs, initial, batches, common, reference, tolerances,
               frozen_keys, size, undetermined, device="cpu"):
    from .adapters import adapter
    from .devices import placed
    from .training import train_steps
    try:
        native = adapter(framework)
        with placed(framework, device):
            model = native.build(model_name, input_size=(spec.input_size[0], size, size), **kwargs)
            native.load_state_dict(model, initial)
        run = train_steps(model, batches, device=device, **common)
        del model
    except Exception as exc:  # noqa: BLE001 - reported per framework, exit 2
        return FrameworkResult(framework, {}, tolerances, {}, False, error=f"{type(exc).__name__}: {exc}",
                               engine=_engine(framework))
    finally:
        release(framework)
    if undetermined:  # plus the elements whose first-gradient sign this framework rounded the other way
        undetermined = {k: m | (np.sign(run.grads[k]) != np.sign(reference.grads[k])) if k in run.grads else m
                        for k, m in undetermined.items()}
    per_key, errors, worst = compare(run, reference, initial, undetermined)
    passed = all(errors[c] <= tolerances[c] for c in CATEGORIES)
    first, cause = (None, None) if passed else likely_cause(per_key, tolerances, frozen_keys)
    if cause and device != "cpu" and framework == "torch":
        cause += (" (on CUDA: cuDNN picks Winograd/FFT algorithms for some NCHW convolutions, AlexNet's 5x5 "
                  "weight gradient 1.5e-3 from fp64 on an H200, channels_last 5.6e-7: benchmarks/cudnn_precision.py)")
    return FrameworkResult(framework, errors, tolerances, worst, passed, first, cause, engine=_engine(framework))


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


def table(result: TrainCheckResult):
    from rich.table import Table
    hyper = ", ".join(f"{k} {v}" for k, v in result.hyper.items())
    title = (f"train-check {result.model}: {result.optimizer} ({hyper}), {result.steps} steps, "
             f"batch {result.batch} at {result.size}px{', frozen backbone' if result.freeze else ''}"
             f"{f', on {result.device}' if result.device != 'cpu' else ''}"
             + (f"; {result.undetermined} weights with a sign-undetermined first gradient left out"
                if result.undetermined else ""))
    t = Table(title=title)
    for column in ("framework", *(f"{c} err / tol" for c in CATEGORIES), "headroom", "verdict"):
        t.add_column(column)
    for r in result.results:
        if r.error:
            t.add_row(r.label, *[""] * len(CATEGORIES), "", f"[red]error[/red] {r.error}")
            continue
        cells = [f"{r.errors[c]:.1e} / {r.tolerances[c]:.0e}" for c in CATEGORIES]
        verdict = "[green]pass[/green]" if r.passed else f"[red]FAIL[/red] at {r.first_divergence}"
        t.add_row(r.label, *cells, f"{r.headroom():.2f}", verdict)
    return t


def write_json(result: TrainCheckResult, path) -> None:
    from .io import atomic_path
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump({**asdict(result), "passed": result.passed}, f, indent=2)


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
    s.add_argument("--json", metavar="FILE", help="write the result as JSON")
    # --- data-parallel check (issue 14, parity/distributed.py): --replicas N, --sync-bn ---
    from .distributed import add_options
    add_options(s)
    # --- end data-parallel options ---
    s.set_defaults(func=cmd_train_check)


def cmd_train_check(args, console) -> int:
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
    result = train_check(args.model, optimizer=args.optimizer, steps=args.steps, frameworks=frameworks,
                         freeze=args.freeze_backbone, size=args.size, batch=args.batch, seed=args.seed,
                         device=args.device)
    console.print(table(result))
    for r in result.results:
        if r.first_divergence:
            console.print(f"{r.label}: first divergence at [bold]{r.first_divergence}[/bold]; likely cause: "
                          f"{r.likely_cause}")
    if args.json:
        write_json(result, args.json)
    if any(r.error for r in result.results):
        return 2
    return 0 if result.passed else 1
