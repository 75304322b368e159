"""`parity train-check`: one training run from identical weights and batches in torch_impl
(torch.optim, the reference), keras_impl and tf_impl, compared step by step. A model of
one's own without a torch builder is judged against its first framework instead (Keras for
a Keras + TF pair), at its builder's seeded initialisation.

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

from ..adapters import adapter
from ..adapters.base import check_dtype
from ..calibrate import calibrated_torch_model, seeded_reference
from ..catalogue import registry
from ..devices import placed, set_tf32
from ..frameworks import release_memory
from ..tolerance import NOISE_FACTOR
from .judge import (ADAPTIVE, CATEGORIES, DEFAULT_HYPER, FLOAT64_ADAPTIVE, FLOAT64_CATEGORIES, FLOAT64_POLICY,
                    FLOAT64_SIGN, LATER, PERTURBED_RUNS, REORDER_CAP, build_kwargs, compare, compare_float64,
                    count_undetermined, likely_cause, likely_cause_float64, make_batches, nudged, policies,
                    sign_undetermined)
from .loop import train_steps


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
    reference: str = "torch"  # the framework the judge runs (in float64, on the CPU)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def categories(self) -> tuple:
        return FLOAT64_CATEGORIES if self.dtype == "float64" else CATEGORIES


def perturbed_noise(p, truth, undetermined, *, seed) -> dict:
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
        alone (docs/training.md).
    (Without a torch builder, the same runs of the reference framework in float32.)"""
    model = _reference_model(p, "float32", seed)
    worst = dict.fromkeys(("grad", "later loss", "weight", "buffer"), 0.0)
    for run in range(PERTURBED_RUNS):  # a flip is a chance event: the worst of a few draws
        adapter(p.reference).load_state_dict(model, nudged(p.initial, np.random.default_rng((seed, run))))
        _, noise, _ = compare(train_steps(model, p.batches, **p.common), truth, p.initial, undetermined)
        worst = {c: max(worst[c], noise[c]) for c in worst}
    return worst


@dataclass
class Prepared:
    """What every framework's run shares: seeded, calibrated initial weights, the batches, the
    optimizer settings and the judge, the same reference run in float64 (`truth`); the
    reference is torch, or the first framework of a model of one's own without a torch builder."""
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
    reference: str = "torch"


def prepare(model_name, *, optimizer="sgd", steps=3, freeze=False, size=None, batch=4, seed=0, hyper=None,
            with_first_step=False):
    """(Prepared, the reference's fp32 model it started from)."""
    spec = registry.get(model_name)
    size = spec.training_size(size)
    hyper = {**DEFAULT_HYPER[optimizer], **(hyper or {})}
    kwargs = build_kwargs(spec)
    # Seeded weights with non-trivial BN affine parameters and measured running statistics:
    # at plain init (GoogLeNet's std-0.01 convs under BN) torch fp32 alone is 15% from fp64.
    ref, reference_model = seeded_reference(model_name, seed=seed, input_size=(spec.input_size[0], size, size),
                                            batch=batch, **kwargs)
    native = adapter(ref)
    initial = native.state_dict(reference_model)
    out = native.run(reference_model, np.zeros((1, spec.input_size[0], size, size), np.float32))[0]
    batches = make_batches(spec, out.shape[1], steps=steps, size=size, batch=batch, seed=seed)
    common = dict(optimizer=optimizer, freeze="backbone" if freeze else None, dropout_seed=seed, **hyper)
    p = Prepared(model_name, spec, size, batch, optimizer, steps, freeze, hyper, kwargs, initial, batches, common,
                 None, {k for k in initial if freeze and not spec.in_head(k)}, ref)
    fp64 = copy.deepcopy(reference_model).double() if ref == "torch" else _reference_model(p, "float64")
    p.truth = train_steps(fp64, [(x.astype(np.float64), y) for x, y in batches], **common,
                          with_first_step=with_first_step)
    del fp64  # one model at a time in memory: VGG's optimizer state is over a gigabyte
    return p, reference_model


def _reference_model(p: Prepared, dtype, seed=0):
    """A fresh reference model holding p's initial weights (torch's calibrated anew, as it was made)."""
    shape = (p.spec.input_size[0], p.size, p.size)
    if p.reference == "torch" and dtype == "float32":
        return calibrated_torch_model(p.model, seed=seed, input_size=shape, batch=p.batch, **p.kwargs)
    model = adapter(p.reference).build(p.model, input_size=shape, dtype=dtype, **p.kwargs)
    adapter(p.reference).load_state_dict(model, p.initial)
    return model


def train_check(model_name, *, optimizer="sgd", steps=3, frameworks=("keras", "tf"), freeze=False,
                size=None, batch=4, seed=0, device="cpu", dtype="float32", **hyper) -> TrainCheckResult:
    """`frameworks` train on `device` (TF32 off on CUDA); the judge is torch on the CPU in fp64
    (or, without a torch builder, the model's first framework).
    "torch" among them is torch_impl itself on `device` (a CUDA run judged against the CPU).
    dtype="float64": the frameworks train in float64 too (CPU only; Float64Check)."""
    if check_dtype(dtype) == "float64":
        if device != "cpu":
            raise ValueError(f"{model_name}: the float64 train-check runs on the CPU; got --device {device}")
        return Float64Check(model_name, optimizer=optimizer, steps=steps, freeze=freeze, size=size, batch=batch,
                            seed=seed, **hyper).result(frameworks)
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
    perturbed = perturbed_noise(p, truth, undetermined, seed=seed)
    noise = {c: max(noise[c], perturbed.get(c, 0.0)) for c in CATEGORIES}
    tolerances = {c: max(policy[c], NOISE_FACTOR * noise[c]) for c in CATEGORIES}

    result = TrainCheckResult(model_name, optimizer, steps, freeze, p.size, batch, p.hyper, noise,
                              undetermined=count_undetermined(undetermined, truth.grads), device=device,
                              reference=p.reference)
    if device != "cpu":
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
        if not row.passed and (rounding := _float64_rounding(framework, p)):
            row.likely_cause = f"{rounding}. Otherwise: {row.likely_cause}"
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
        only the order of the convolutions' sums (as a faithful port does), against the reference.
        A Keras or TF reference has no such switch: none (the later categories at the policy)."""
        if self.drift is None and self.prepared.reference != "torch":
            self.drift = dict.fromkeys(FLOAT64_CATEGORIES, 0.0)
        if self.drift is None:
            import torch

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
                                  undetermined=count_undetermined(self.undetermined, p.truth.grads), dtype="float64",
                                  reference=p.reference)
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
    try:
        native = adapter(framework)
        with placed(framework, device):
            model = native.build(p.model, input_size=(p.spec.input_size[0], p.size, p.size), dtype=dtype, **p.kwargs)
            native.load_state_dict(model, p.initial)
        run = train_steps(model, p.batches, device=device, with_first_step=dtype == "float64", **p.common)
        del model  # before release_memory() collects
        return run
    except Exception as exc:  # noqa: BLE001 - reported per framework, exit 2
        return FrameworkResult(framework, {}, {}, {}, False, error=f"{type(exc).__name__}: {exc}",
                               engine=_engine(framework))
    finally:
        release_memory(framework)


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


def _float64_rounding(framework, p: Prepared):
    """A framework's known float64 trap in this model (adapter.float64_rounding), if any."""
    native = adapter(framework)
    return native.float64_rounding(native.build(p.model, input_size=(p.spec.input_size[0], p.size, p.size),
                                                dtype="float64", **p.kwargs))


def _engine(framework):
    if framework != "keras":
        return None
    import keras
    return keras.backend.backend()


def table(result: TrainCheckResult, role=None):
    from rich.table import Table
    hyper = ", ".join(f"{k} {v}" for k, v in result.hyper.items())
    title = (f"train-check {result.model}: {result.optimizer} ({hyper}), {result.steps} steps, "
             f"batch {result.batch} at {result.size}px{', frozen backbone' if result.freeze else ''}"
             f"{f', on {result.device}' if result.device != 'cpu' else ''}"
             f"{f'; judged against {result.reference} (no torch builder)' if result.reference != 'torch' else ''}"
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
    from ..io import write_json as write
    write(path, {**asdict(result), "passed": result.passed,
                 **{other.dtype: {**asdict(other), "passed": other.passed} for other in also}})
