"""`parity train-check MODEL --replicas N`: data-parallel training on each framework's own
engine, proven equal to the single process it stands for.

Engines (code in <framework>_impl/distributed.py, docs/distributed.md side by side):
torch DistributedDataParallel (gloo on CPU, NCCL on CUDA) in N spawned processes;
tf_impl and Keras-on-TF with tf.distribute.MirroredStrategy over N logical CPU devices
(or GPUs), in a child process (TF's devices must be split before TF starts); Keras on JAX
(framework "jax") with keras.distribution.DataParallel over N host devices, in a child
process started with XLA_FLAGS=--xla_force_host_platform_device_count=N.

The rule checked depends on the model and the engine (`rule` in the table):
- global: no train-mode BatchNorm, or synchronized BN: losses, first-step gradients, weights
  and BN statistics after the last step equal one process (the framework's own
  adapter.trainer) on the global batch.
- per-replica BN: each replica normalizes with its shard's statistics, so the first-step
  gradients equal the mean of the per-shard single-process gradients (and, for SGD, the
  weights after step 1 the mean of the per-shard updates); the running statistics follow
  the engine's rule, checked per replica after step 1 and step 2:
  ddp-broadcast: DDP overwrites every rank's buffers with rank 0's at each forward;
  mirrored-local: Mirrored variables with aggregation NONE (Keras 3 BN, tf.Variable) are
  updated per replica and never synchronized; reads see replica 0's copy.
- spmd-global (Keras on JAX): the step is written for the global batch and XLA shards it,
  so BN statistics are always global: equal to keras_impl/train.py's step on one device
  (adapter.trainer, on the JAX backend).
The table also reports the error under the other engine's buffer rule, to show the check
tells them apart.
"""
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .console import say
from .errors import unknown_choice
from .tolerance import NOISE_FACTOR
from .train_check import (DEFAULT_HYPER, GRAD_POLICY, PERTURBED_RUNS, WEIGHT_POLICY, build_kwargs, cancelled,
                          is_buffer, largest, make_batches, normalized, nudged, release)

FRAMEWORKS = ("torch", "keras", "tf", "jax")  # jax: Keras 3 on the JAX backend
DEFAULT_FRAMEWORKS = ("torch", "keras", "tf")
CATEGORIES = ("loss", "grad", "weight", "buffer")
RULES = {
    "global": "equal to one process on the global batch",
    "sync-bn": "synchronized BN: equal to one process on the global batch",
    "ddp-broadcast": "per-replica BN: mean of per-shard gradients; rank 0's buffers broadcast each forward",
    "mirrored-local": "per-replica BN: mean of per-shard gradients; each replica keeps its own BN statistics",
    "spmd-global": "SPMD on the global batch (BN statistics global): equal to keras_impl's step on one device",
}
OTHER_RULE = {"ddp-broadcast": "mirrored-local", "mirrored-local": "ddp-broadcast"}
# A gradient below this fraction of the model's largest is taken as zero in exact arithmetic
# (train_check.cancelled). Train-check tells those apart in its fp64 judge (EXACT_ZERO); this check
# compares two fp32 runs, where that rounding grows with the positions a conv bias sums over
# (n x eps, 1.2e-4 for 2 x 32 x 32): VGG-11-BN's features.0.bias measured 4.5e-7..8.9e-7 of the
# largest at 32 px, 2 per replica.
CANCELLED = 1e-4


@dataclass
class DistributedRow:
    framework: str
    engine: str
    replicas: int
    rule: str
    errors: dict = field(default_factory=dict)  # category -> worst normalized error
    worst: dict = field(default_factory=dict)  # category -> key of the worst error
    tolerances: dict = field(default_factory=dict)
    other_rule_error: float | None = None  # buffer error under the other engine's rule
    note: str | None = None
    seconds_per_step: float | None = None  # data-parallel step, wall clock (first step excluded)
    error: str | None = None
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.skipped is not None or (self.error is None and all(
            self.errors[c] <= self.tolerances[c] for c in self.errors))


@dataclass
class DistributedResult:
    model: str
    replicas: int
    sync_bn: bool
    steps: int
    size: int
    batch: int
    optimizer: str
    rows: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)


class ShardMasks:
    """Dropout masks of the global batch (parity.training.DropoutMasks), cut into the
    replicas' rows, so N replicas drop exactly the units one process drops. Picklable:
    it travels to spawned workers."""

    def __init__(self, seed, replicas, channels_last=False, flattened=()):
        self.seed, self.replicas, self.channels_last = seed, replicas, channels_last
        self.flattened, self.step = tuple(flattened), 0

    def __call__(self, shape, rate, replica=0):
        from .training import DropoutMasks
        masks = DropoutMasks(self.seed)
        masks.step = self.step
        n = int(shape[0])
        full = masks.for_layout(self.channels_last, self.flattened)((n * self.replicas, *shape[1:]), rate)
        return np.ascontiguousarray(full[replica * n:(replica + 1) * n])


class BoundMasks:
    """One replica's rows of ShardMasks, as a single-process trainer calls them."""

    def __init__(self, masks, replica):
        self.masks, self.replica = masks, replica

    def __call__(self, shape, rate):
        return self.masks(shape, rate, self.replica)


@dataclass
class Job:
    framework: str
    model: str
    kwargs: dict
    size: int
    initial: dict
    batches: list
    replicas: int
    hyper: dict
    sync_bn: bool
    seed: int
    device: str = "cpu"
    timeout_s: float = 120.0
    hang_rank: int | None = None  # tests: a rank that never joins the collective


def distributed_check(model_name, **options) -> DistributedResult:
    """Run `model_name` data-parallel on each framework's engine and compare it with the
    single process it stands for (see the module docstring for the rules)."""
    return distributed_checks([model_name], **options)[0]


def distributed_checks(model_names, *, replicas=2, frameworks=DEFAULT_FRAMEWORKS, sync_bn=False, steps=2, size=None,
                       batch=None, seed=0, optimizer="sgd", device="cpu", timeout_s=120.0, hang_rank=None,
                       **hyper) -> list:
    """distributed_check for several models, sharing the slow starts: one DDP spawn for all
    torch runs, one child interpreter for all MirroredStrategy runs."""
    if replicas < 2:
        raise ValueError("--replicas must be at least 2")
    if steps < 2:
        raise ValueError("the data-parallel check needs at least 2 steps (the BN buffer rule shows at step 2)")
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"{unknown_choice('framework', unknown[0], FRAMEWORKS)}; choose from {', '.join(FRAMEWORKS)}")
    batch = batch or 2 * replicas
    if batch % replicas:
        raise ValueError(f"the global batch ({batch}) must split evenly over {replicas} replicas")
    hyper = {**DEFAULT_HYPER[optimizer], **hyper, "optimizer": optimizer}
    results, jobs = [], {}
    for name in model_names:
        initial, batches, kwargs, model_size = initial_state(name, size, batch, steps, seed)
        results.append(DistributedResult(name, replicas, sync_bn, steps, model_size, batch, optimizer))
        for framework in frameworks:
            jobs[name, framework] = Job(framework, name, kwargs, model_size, initial, batches, replicas, hyper,
                                        sync_bn, seed, device, timeout_s, hang_rank)
    rows = {}
    torch_jobs = [key for key in jobs if key[1] == "torch"]
    mirrored_jobs = [key for key in jobs if key[1] in ("keras", "tf")]
    jax_jobs = [key for key in jobs if key[1] == "jax"]
    # The MirroredStrategy child, the JAX child and the DDP ranks run at the same time (all mostly
    # wait on process and framework starts on a small machine).
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        mirrored = pool.submit(guarded, mirrored_jobs, jobs, lambda keys: run_in_child([jobs[k] for k in keys])) \
            if mirrored_jobs else None
        on_jax = pool.submit(guarded, jax_jobs, jobs,
                             lambda keys: run_in_child([jobs[k] for k in keys], backend="jax")) if jax_jobs else None
        try:
            if torch_jobs:
                rows.update(guarded(torch_jobs, jobs, lambda keys: run_torch_jobs([jobs[k] for k in keys])))
            if mirrored is not None:
                rows.update(mirrored.result())
            if on_jax is not None:
                rows.update(on_jax.result())
        except BaseException:  # Ctrl-C: end the child too (its own session does not get the signal)
            end_children()
            raise
    for result in results:
        result.rows = [rows[result.model, f] for f in frameworks]
    return results


def guarded(keys, jobs, run) -> dict:
    """{key: row}; an engine that fails gives each of its jobs an error row (exit 2)."""
    try:
        return dict(zip(keys, run(keys)))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per framework
        return {k: DistributedRow(k[1], "", jobs[k].replicas, "", error=f"{type(exc).__name__}: {exc}") for k in keys}


def initial_state(model_name, size, batch, steps, seed):
    """The torch reference's initial state (as train-check builds it) and the global batches."""
    import torch

    from . import registry
    from .adapters import adapter
    spec = registry.get(model_name)
    size = spec.training_size(size if size and not spec.fixed_size else None)
    kwargs = build_kwargs(spec)
    torch.manual_seed(seed)
    torch_adapter = adapter("torch")
    reference = torch_adapter.build(model_name, **kwargs)
    initial = torch_adapter.state_dict(reference)
    with torch.no_grad():
        out = torch_adapter.run(reference, np.zeros((1, spec.input_size[0], size, size), np.float32))[0]
    batches = make_batches(spec, out.shape[1], steps=steps, size=size, batch=batch, seed=seed)
    return initial, batches, kwargs, size


# --- one framework -------------------------------------------------------------------

def rule_for(job):
    if job.framework == "jax":
        return "spmd-global"
    has_bn = any(is_buffer(k) for k in job.initial)
    if not has_bn:
        return "global"
    if job.sync_bn:
        return "sync-bn"
    return "ddp-broadcast" if job.framework == "torch" else "mirrored-local"


def sync_refused(job):
    """Why the engine cannot synchronize BN on this device (None when it can)."""
    if job.framework == "torch" and rule_for(job) == "sync-bn":
        import torch_impl.distributed as engine
        if not engine.sync_bn_available(job.device):
            return "torch SyncBatchNorm runs on CUDA/XPU only (on CPU it raises ValueError)"
    return None


def run_job(job: Job, observed=None) -> DistributedRow:
    rule = rule_for(job)
    engine = engine_module(job.framework)
    refused = sync_refused(job)
    if refused:
        return DistributedRow(job.framework, engine.engine_name(job.device, False), job.replicas, rule,
                              skipped=refused)
    observed = observed or (observe_jax(job) if job.framework == "jax" else observe_mirrored(job))
    release(job.framework)  # the data-parallel model, before the single-process runs build theirs
    try:
        return judged(job, observed, rule, engine)
    finally:
        end_single(job)


def judged(job, observed, rule, engine) -> DistributedRow:
    """The row of one job: what the engine did (`observed`) against the single process under `rule`."""
    tolerances = {"loss": GRAD_POLICY, "grad": GRAD_POLICY, "weight": WEIGHT_POLICY, "buffer": WEIGHT_POLICY}
    row = DistributedRow(job.framework, engine.engine_name(job.device, rule == "sync-bn"), job.replicas, rule,
                         tolerances=tolerances, seconds_per_step=observed.get("seconds_per_step"))
    single = None
    if rule in ("global", "sync-bn", "spmd-global"):
        single = single_process(job, job.initial, job.batches)
        per_key = expect_global(job, observed, single, weights_at_step1=rule == "sync-bn")
        if rule == "sync-bn":
            last = per_key.pop("weight after the last step")
            worst = max(last, key=last.get)
            row.note = (f"weights judged after step 1; after step {len(job.batches)}: {last[worst]:.1e} at {worst} "
                        f"(BN statistics reduced in another order, amplified where a BN shift gradient cancels)")
    else:
        per_key, row.other_rule_error = expect_per_replica(job, observed, rule)
    for category, errors in per_key.items():
        if errors:
            row.worst[category] = max(errors, key=errors.get)
            row.errors[category] = errors[row.worst[category]]
    if single is not None and not row.passed:
        widen_to_own_noise(row, job, single, weights_at_step1=rule == "sync-bn")
    return row


def widen_to_own_noise(row, job, single, weights_at_step1):
    """Over the policy: judge at NOISE_FACTOR x the single process's own spread, as train-check
    does. Where a ReLU input sits within rounding of zero, a reduction in another order (an
    all-reduce) flips its mask and moves a gradient by percents: VGG-11-BN with synchronized BN,
    seed 0, 4e-2 in Keras and tf_impl alike; seeds 1 and 2, 7e-6. The spread: the single process
    from PERTURBED_RUNS starting points with weights x (1 + 1e-6 N(0, 1)), against the unperturbed one."""
    noise = {}
    for run in range(PERTURBED_RUNS):
        losses, grads, states = single_process(job, nudged(job.initial, np.random.default_rng((job.seed, run))),
                                               job.batches)
        twin = {"losses": losses, "grads": grads, "weights": [strip_buffers(s) for s in states],
                "buffers": [[buffers_of(states[-1])]]}
        per_key = expect_global(job, twin, single, weights_at_step1)
        per_key.pop("weight after the last step", None)
        for category, errors in per_key.items():
            noise[category] = max([noise.get(category, 0.0), *errors.values()])
    row.tolerances = {c: max(t, NOISE_FACTOR * noise.get(c, 0.0)) for c, t in row.tolerances.items()}
    spread = ", ".join(f"{c} {v:.1e}" for c, v in noise.items())
    row.note = "; ".join(filter(None, [row.note, f"over the policy, judged at {NOISE_FACTOR:g}x the single process's "
                                                 f"own spread from weights perturbed by 1e-6: {spread}"]))


def strip_buffers(state):
    return {k: v for k, v in state.items() if not is_buffer(k)}


def buffers_of(state):
    return {k: v for k, v in state.items() if is_buffer(k)}


def run_torch_jobs(jobs) -> list:
    runnable = [job for job in jobs if not sync_refused(job)]
    observed = dict(zip(map(id, runnable), observe_torch(runnable))) if runnable else {}
    return [run_job(job, observed.get(id(job))) for job in jobs]


def engine_module(framework):
    if framework == "torch":
        import torch_impl.distributed as engine
    elif framework in ("keras", "jax"):
        import keras_impl.distributed as engine
    elif framework == "tf":
        import tf_impl.distributed as engine
    else:
        raise ValueError(f"{unknown_choice('framework', framework, FRAMEWORKS)}; choose from {', '.join(FRAMEWORKS)}")
    return engine


def hyper_of(job):
    from .training import Hyper
    return Hyper(**job.hyper)


def native_options(adapter, model, hyper):
    """What adapter.trainer passes to the framework's native Trainer (without dropout)."""
    from .training import loss_kind
    spec = adapter.spec(model)
    return {**hyper.native(), "loss": loss_kind(spec), "aux_weights": tuple(spec.aux_weights) if spec else (),
            "head": None}


def observe_torch(jobs) -> list:
    """DDP runs of every job in one spawn (same replicas, device, timeout for all)."""
    import torch_impl.distributed as engine

    from .adapters import adapter
    torch_adapter = adapter("torch")
    runs = []
    for job in jobs:
        model = torch_adapter.build(job.model, **job.kwargs)
        torch_adapter.load_state_dict(model, job.initial)
        spec = torch_adapter.spec(model)
        runs.append({"model": model, "batches": job.batches,
                     "trainer_options": native_options(torch_adapter, model, hyper_of(job)),
                     "masks": ShardMasks(job.seed, job.replicas, False, spec.flatten_linear.values() if spec else ())})
    first = jobs[0]
    with tempfile.TemporaryDirectory(prefix="parity-ddp-") as workdir:
        started = time.perf_counter()
        per_run = engine.data_parallel_steps(runs, first.replicas, sync_bn=first.sync_bn, device=first.device,
                                             timeout_s=first.timeout_s, workdir=workdir, hang_rank=first.hang_rank)
        elapsed = time.perf_counter() - started
    return [torch_observed(job, records, elapsed / sum(len(j.batches) for j in jobs))
            for job, records in zip(jobs, per_run)]


def torch_observed(job, records, seconds_per_step):
    steps = len(job.batches)
    return {
        "losses": [float(np.mean([records[r][s]["loss"] for r in range(job.replicas)])) for s in range(steps)],
        "grads": records[0][0]["grads"],
        "weights": [records[0][s]["weights"] for s in range(steps)],
        "buffers": [[records[r][s]["buffers"] for s in range(steps)] for r in range(job.replicas)],
        "seconds_per_step": seconds_per_step,  # process start included: see benchmarks for steady state
    }


_STRATEGIES = {}


def shared_strategy(engine, replicas, device):
    """One MirroredStrategy per process: a second one numbers its collectives from the same
    keys, and TF then mixes up the two (shape mismatch in collective instance N)."""
    key = (replicas, device)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = engine.mirrored_strategy(replicas, device)
    return _STRATEGIES[key]


def observe_mirrored(job: Job) -> dict:
    from .adapters import adapter
    engine = engine_module(job.framework)
    strategy = shared_strategy(engine, job.replicas, job.device)
    native = adapter(job.framework)
    channels = job.batches[0][0].shape[1]
    with strategy.scope():
        model = native.build(job.model, input_size=(channels, job.size, job.size), **job.kwargs)
        native.load_state_dict(model, job.initial)
        if job.sync_bn:
            engine.synchronize_batch_norms(model)
        trainer = native.trainer(model, hyper_of(job))
    spec = native.spec(model)
    masks = ShardMasks(job.seed, job.replicas, native.channels_last, spec.flatten_linear.values() if spec else ())
    slots = native.slots(model)
    by_id = {id(s.variable): (k, s) for k, s in slots.items() if s.variable is not None}
    buffer_keys = [k for k in slots if is_buffer(k)]
    observed = {"losses": [], "weights": [], "buffers": [[] for _ in range(job.replicas)]}
    times = []
    compiled = engine.data_parallel_step(strategy, trainer.native, len(job.batches[0][0]))
    for step, batch in enumerate(job.batches):
        x = np.ascontiguousarray(batch[0].transpose(0, 2, 3, 1)) if native.channels_last else batch[0]
        started = time.perf_counter()
        loss, grads = engine.run_step(strategy, compiled, x, batch[1], masks, step)
        times.append(time.perf_counter() - started)
        observed["losses"].append(loss)
        if step == 0:
            observed["grads"] = {by_id[id(v)][0]: canonical(by_id[id(v)][1], g)
                                 for v, g in zip(trainer.native.variables, grads)}
        observed["weights"].append(strip_buffers(native.state_dict(model)))
        for key in buffer_keys:
            for replica, value in enumerate(engine.replica_values(slots[key].variable)):
                replica_buffers = observed["buffers"][replica]
                if len(replica_buffers) <= step:
                    replica_buffers.append({})
                replica_buffers[step][key] = canonical(slots[key], value)
    observed["seconds_per_step"] = float(np.mean(times[1:])) if len(times) > 1 else times[0]
    return observed


def observe_jax(job: Job) -> dict:
    """Keras on JAX: keras_impl/train.py's jitted step built under keras.distribution.DataParallel
    over N host devices (it shards the global batch); the single-process side is the same
    trainer built without a distribution, on one device (single_process). Dropout masks are the global batch's
    (the step sees the global batch), injected as in the single process."""
    import keras_impl.distributed as engine

    from .adapters import adapter
    native = adapter("keras")
    channels = job.batches[0][0].shape[1]
    distribution = engine.jax_data_parallel(job.replicas)
    with distribution.scope():
        model = native.build(job.model, input_size=(channels, job.size, job.size), **job.kwargs)
        native.load_state_dict(model, job.initial)
        trainer = native.trainer(model, hyper_of(job))
        spec = native.spec(model)
        # The step sees the global batch: the global batch's masks, as the single process draws them.
        masks = ShardMasks(job.seed, 1, native.channels_last, spec.flatten_linear.values() if spec else ())
        trainer.native.dropout_masks = BoundMasks(masks, 0)
        losses, grads, times = [], None, []
        for step, (x, labels) in enumerate(job.batches):
            masks.step = step
            started = time.perf_counter()
            loss, _ = trainer.native.step(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), labels)  # waits for it
            times.append(time.perf_counter() - started)
            losses.append(loss)
            if grads is None:
                grads = trainer.gradients()
    state = native.state_dict(model)
    return {"losses": losses, "grads": grads, "weights": [strip_buffers(state)], "buffers": [[buffers_of(state)]],
            "seconds_per_step": float(np.mean(times[1:])) if len(times) > 1 else times[0]}


def canonical(slot, value):
    return slot.to_canonical(value) if slot.to_canonical else np.asarray(value)


# --- what the single process says -----------------------------------------------------

def single_process(job, state, batches, *, replica=0, replicas=1, first_step=0):
    """The framework's own single-process trainer (adapter.trainer) from `state` over
    `batches`: (losses, first-step gradients, state after each step). Dropout masks are
    rows `replica` of the global batch's masks."""
    native, model, trainer = single_trainer(job)
    native.load_state_dict(model, state)
    trainer.reset_optimizer()
    spec = native.spec(model)
    masks = ShardMasks(job.seed, replicas, native.channels_last, spec.flatten_linear.values() if spec else ())
    trainer.native.dropout_masks = BoundMasks(masks, replica)
    losses, grads, states = [], None, []
    for i, (x, labels) in enumerate(batches):
        masks.step = first_step + i
        losses.append(trainer.step(x, labels).loss)
        if grads is None:
            grads = trainer.gradients()
        states.append(native.state_dict(model))
    return losses, grads, states


_SINGLE = {}  # id(job) -> (adapter, model, trainer) of the job's single-process runs


def single_trainer(job):
    """One model and trainer for all of a job's single-process runs (up to six, and three more
    when the policy is widened), each from its own state with a fresh optimizer: a Keras or TF
    trainer traces its step once instead of once per run. end_single(job) lets them go."""
    if id(job) not in _SINGLE:
        from .adapters import adapter
        from .devices import placed
        framework = "keras" if job.framework == "jax" else job.framework  # Keras on JAX: keras_impl/train.py
        native = adapter(framework)
        channels = job.batches[0][0].shape[1]
        with placed(framework, "cpu"):
            model = native.build(job.model, input_size=(channels, job.size, job.size), **job.kwargs)
            native.load_state_dict(model, job.initial)
            _SINGLE[id(job)] = native, model, native.trainer(model, hyper_of(job))
    return _SINGLE[id(job)]


def end_single(job):
    """Let the job's single-process model and trainer go (VGG-11-BN's weights and momentum
    are a gigabyte)."""
    if _SINGLE.pop(id(job), None) is not None:
        release("keras" if job.framework == "jax" else job.framework)


def shard(array, replica, replicas):
    n = len(array) // replicas
    return array[replica * n:(replica + 1) * n]


def gradient_errors(observed: dict, expected: dict) -> dict:
    """A cancelled gradient (see cancelled) is rounding in any two computations: judged on the
    model-wide scale (the largest gradient), not its own; every other gradient on its own."""
    zero, scale = cancelled(expected, CANCELLED), largest(expected.values())
    return {k: normalized(observed[k], v, scale if k in zero else 0.0) for k, v in expected.items()}


def weight_errors(observed: dict, expected: dict, initial: dict, zero: set) -> dict:
    """Weights; one moved only by a cancelled gradient (a zero-initialized conv bias under
    BatchNorm is then rounding too) is judged on the largest move of any weight."""
    scale = largest(v - initial[k] for k, v in expected.items() if k in initial)
    return {k: normalized(observed[k], v, scale if k in zero else 0.0) for k, v in expected.items()}


def expect_global(job, observed, single, weights_at_step1=False):
    """Equal to one process on the global batch. weights_at_step1 (synchronized BN): the
    weights are judged after step 1 and the last step's error is returned for the record.
    `single`: single_process on the global batch, (losses, first-step gradients, states)."""
    losses, grads, states = single
    last = states[-1]
    weights_after = lambda step: weight_errors(  # noqa: E731
        observed["weights"][step], strip_buffers(states[step]), job.initial,
        cancelled(grads, CANCELLED))
    per_key = {
        "loss": {f"step {i + 1}": abs(a - b) / max(abs(b), 1e-12) for i, (a, b) in enumerate(zip(observed["losses"], losses))},
        "grad": gradient_errors(observed["grads"], grads),
        "weight": weights_after(-1),
        "buffer": {},
    }
    if weights_at_step1:
        per_key["weight after the last step"] = per_key["weight"]
        per_key["weight"] = {f"{k} (step 1)": e for k, e in weights_after(0).items()}
    for replica, buffers in enumerate(observed["buffers"]):
        for key, value in (buffers[-1] if buffers else {}).items():
            per_key["buffer"][f"{key} (replica {replica})"] = normalized(value, last[key])
    return per_key


def expect_per_replica(job, observed, rule):
    """Step 1: mean of the per-shard single-process steps; each replica's buffers its own
    shard's update. Step 2: each replica's buffers = one single-process step on its shard of
    batch 2, from the data-parallel weights after step 1 and the buffers the rule says."""
    first, second = job.batches[0], job.batches[1]
    shard_runs = [single_process(job, job.initial, [(shard(first[0], r, job.replicas), shard(first[1], r, job.replicas))],
                                 replica=r, replicas=job.replicas) for r in range(job.replicas)]
    mean = lambda arrays: np.mean(np.stack(arrays), axis=0)  # noqa: E731
    grads = {k: mean([run[1][k] for run in shard_runs]) for k in shard_runs[0][1]}
    per_key = {"loss": {"step 1": abs(observed["losses"][0] - float(np.mean([run[0][0] for run in shard_runs])))
                        / max(abs(float(np.mean([run[0][0] for run in shard_runs]))), 1e-12)},
               "grad": gradient_errors(observed["grads"], grads),
               "weight": {}, "buffer": {}}
    if job.hyper["optimizer"] == "sgd":  # an SGD step is linear in the gradient
        weights = {k: mean([run[2][0][k] for run in shard_runs]) for k in observed["weights"][0]}
        errors = weight_errors(observed["weights"][0], weights, job.initial, cancelled(grads, CANCELLED))
        per_key["weight"] = {f"{k} (step 1)": e for k, e in errors.items()}
    for r, run in enumerate(shard_runs):
        for key, value in observed["buffers"][r][0].items():
            per_key["buffer"][f"{key} (replica {r}, step 1)"] = normalized(value, run[2][0][key])
    step2 = buffers_after_step2(job, observed, rule, second)
    for r in range(job.replicas):
        for key, value in observed["buffers"][r][1].items():
            per_key["buffer"][f"{key} (replica {r}, step 2)"] = normalized(value, step2[r][key])
    other = buffers_after_step2(job, observed, OTHER_RULE[rule], second)
    other_error = max(normalized(observed["buffers"][r][1][k], other[r][k])
                      for r in range(job.replicas) for k in observed["buffers"][r][1])
    return per_key, other_error


def buffers_after_step2(job, observed, rule, batch):
    expected = []
    for r in range(job.replicas):
        start = observed["buffers"][0 if rule == "ddp-broadcast" else r][0]
        state = {**observed["weights"][0], **start}
        _, _, states = single_process(job, complete(state, job.initial),
                                      [(shard(batch[0], r, job.replicas), shard(batch[1], r, job.replicas))],
                                      replica=r, replicas=job.replicas, first_step=1)
        expected.append(buffers_of(states[0]))
    return expected


def complete(state, initial):
    """Keys the engine does not report (none today) keep their initial value."""
    return {**{k: v for k, v in initial.items() if not k.endswith("num_batches_tracked")}, **state}


# --- the TF engines run in a child process ---------------------------------------------

def run_in_child(jobs, backend="tensorflow") -> list:
    """TensorFlow must be told its logical devices before it starts, so each Mirrored job
    runs in a fresh interpreter; killed (with its process group) on timeout or Ctrl-C."""
    rows = run_child("parity.distributed", "child_main", [vars(job) for job in jobs],  # vars: shared arrays stay shared
                     replicas=jobs[0].replicas, backend=backend, limit=sum(job.timeout_s * 4 for job in jobs) + 300)
    return [DistributedRow(**row) for row in rows]


def run_child(module, function, payload, *, replicas, backend="tensorflow", limit=600.0):
    """module.function() in a fresh interpreter with N host devices for TF's logical CPUs and
    XLA (JAX), reading `payload` with read_payload(sys.argv[1] + "/jobs") and writing its
    answer to sys.argv[1] + "/rows"; returns the answer. Killed with its process group on
    timeout, failure or Ctrl-C."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="parity-mirrored-") as workdir:
        write_payload(os.path.join(workdir, "jobs"), payload)
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={replicas}",
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        with open(os.path.join(workdir, "stderr"), "w") as stderr:
            process = subprocess.Popen([sys.executable, "-c", f"from {module} import {function}; {function}()",
                                        workdir], env=env, stdout=stderr, stderr=stderr, start_new_session=True)
            _CHILDREN.add(process)
            try:
                process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"the MirroredStrategy process did not finish in {limit:g} s; ended it") from None
            finally:
                end_child(process)
        if process.returncode != 0:
            with open(os.path.join(workdir, "stderr")) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"the MirroredStrategy process failed (exit {process.returncode}):\n{tail}")
        return read_payload(os.path.join(workdir, "rows"))


_CHILDREN = set()


def end_child(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _CHILDREN.discard(process)


def end_children():
    for process in list(_CHILDREN):
        end_child(process)


def child_main():
    workdir = sys.argv[1]
    jobs = [job_from_dict(fields) for fields in read_payload(os.path.join(workdir, "jobs"))]
    rows = []
    for job in jobs:  # one strategy for all: TF's logical devices are set once per process
        try:
            rows.append(run_job(job))
        except Exception as exc:  # noqa: BLE001 - reported per job
            rows.append(DistributedRow(job.framework, "", job.replicas, rule_for(job),
                                       error=f"{type(exc).__name__}: {exc}"))
        release(job.framework)
    write_payload(os.path.join(workdir, "rows"), [asdict(row) for row in rows])


def job_from_dict(fields) -> Job:
    return Job(**{**fields, "batches": [tuple(batch) for batch in fields["batches"]]})


# Between the parent and the child nothing is pickled: arrays go to STEM.npz (np.load without
# pickle), everything else to STEM.json, where an array is {"npz": its name in the npz}.

def write_payload(stem, payload) -> None:
    arrays, names = {}, {}  # one entry per array object: the jobs of several frameworks share one state

    def plain(value):
        if isinstance(value, np.ndarray):
            if id(value) not in names:
                names[id(value)] = f"a{len(names)}"
                arrays[names[id(value)]] = value
            return {"npz": names[id(value)]}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value.item() if isinstance(value, np.generic) else value
    tree = plain(payload)
    with open(stem + ".npz", "wb") as f:
        np.savez(f, **arrays)
    with open(stem + ".json", "w") as f:
        json.dump(tree, f)


def read_payload(stem):
    with open(stem + ".json") as f:
        tree = json.load(f)
    with np.load(stem + ".npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}

    def restore(value):
        if isinstance(value, dict):
            return arrays[value["npz"]] if set(value) == {"npz"} else {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value
    return restore(tree)


# --- command line -----------------------------------------------------------------------

def add_options(parser) -> None:
    """The two options `parity train-check` gains (registered by train_check.register)."""
    parser.add_argument("--replicas", type=int, default=1,
                        help="N > 1: data-parallel on each framework's engine (torch DDP, tf.distribute) "
                             "compared with one process; --frameworks then takes torch,keras,tf")
    parser.add_argument("--sync-bn", action="store_true",
                        help="with --replicas: synchronized BatchNorm where the engine has it on the device")


def cmd_distributed_check(args, console) -> int:
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    if "torch" not in frameworks:
        frameworks = ["torch", *frameworks]  # torch is always checked, as in train-check
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"--frameworks: {unknown_choice('framework', unknown[0], FRAMEWORKS)}; "
                         f"choose from {', '.join(FRAMEWORKS)}")
    result = distributed_check(args.model, replicas=args.replicas, frameworks=frameworks, sync_bn=args.sync_bn,
                               steps=max(args.steps, 2), size=args.size, batch=args.batch if args.batch != 4 else None,
                               seed=args.seed, optimizer=args.optimizer)
    console.print(table(result))
    for rule in dict.fromkeys(r.rule for r in result.rows if r.rule):
        console.print(f"{rule}: {RULES[rule]}")
    for row in result.rows:
        if row.error:
            say(console, f"{row.framework}: {row.error}")
        if row.note:
            say(console, f"{row.framework}: {row.note}")
    if args.json:
        from .io import write_json
        write_json(args.json, {**asdict(result), "passed": result.passed})
    if any(r.error for r in result.rows):
        return 2
    return 0 if result.passed else 1


def table(result: DistributedResult):
    from rich.table import Table
    t = Table(title=f"train-check {result.model} --replicas {result.replicas}{' --sync-bn' if result.sync_bn else ''}: "
                    f"{result.optimizer}, {result.steps} steps, global batch {result.batch} at {result.size}px")
    for column in ("framework", "engine", "rule", *(f"{c} err / tol" for c in CATEGORIES), "other rule",
                   "s/step", "verdict"):
        t.add_column(column)
    for r in result.rows:
        if r.skipped or r.error:
            t.add_row(r.framework, r.engine, r.rule, *[""] * len(CATEGORIES), "", "",
                      f"skipped: {r.skipped}" if r.skipped else f"[red]error[/red] {r.error.splitlines()[0]}")
            continue
        cells = [f"{r.errors[c]:.1e} / {r.tolerances[c]:.0e}" if c in r.errors else "-" for c in CATEGORIES]
        other = f"{r.other_rule_error:.1e}" if r.other_rule_error is not None else "-"
        verdict = "[green]pass[/green]" if r.passed else \
            "[red]FAIL[/red] at " + ", ".join(r.worst[c] for c in CATEGORIES
                                              if c in r.errors and r.errors[c] > r.tolerances[c])
        t.add_row(r.framework, r.engine, r.rule, *cells, other,
                  f"{r.seconds_per_step:.2f}" if r.seconds_per_step else "", verdict)
    return t
