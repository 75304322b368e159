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
import os
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from ...adapters import adapter
from ...calibrate import seeded_reference
from ...catalogue import registry
from ...errors import unknown_choice
from ...frameworks import release_memory
from ...tolerance import NOISE_FACTOR
from ..judge import (DEFAULT_HYPER, GRAD_POLICY, PERTURBED_RUNS, WEIGHT_POLICY, build_kwargs, is_buffer, make_batches,
                     nudged)
from .child import end_children, read_payload, run_child, write_payload
from .engines import FRAMEWORKS, engine_module
from .expect import end_single, expect_global, expect_per_replica, single_process
from .observe import Job, buffers_of, observe_jax, observe_mirrored, observe_torch, strip_buffers

DEFAULT_FRAMEWORKS = ("torch", "keras", "tf")
CATEGORIES = ("loss", "grad", "weight", "buffer")
RULES = {
    "global": "equal to one process on the global batch",
    "sync-bn": "synchronized BN: equal to one process on the global batch",
    "ddp-broadcast": "per-replica BN: mean of per-shard gradients; rank 0's buffers broadcast each forward",
    "mirrored-local": "per-replica BN: mean of per-shard gradients; each replica keeps its own BN statistics",
    "spmd-global": "SPMD on the global batch (BN statistics global): equal to keras_impl's step on one device",
}


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
    """The reference's initial state and the global batches: torch's seeded initialisation, or
    for a model of one's own without a torch builder its first framework's (seeded_reference)."""
    spec = registry.get(model_name)
    size = spec.training_size(size if size and not spec.fixed_size else None)
    kwargs = build_kwargs(spec)
    framework = spec.frameworks[0]
    if framework == "torch":
        import torch
        torch.manual_seed(seed)
        reference = adapter("torch").build(model_name, **kwargs)
    else:
        reference = seeded_reference(model_name, seed=seed, input_size=(spec.input_size[0], size, size), **kwargs)[1]
    initial = adapter(framework).state_dict(reference)
    out = adapter(framework).run(reference, np.zeros((1, spec.input_size[0], size, size), np.float32))[0]
    batches = make_batches(spec, out.shape[1], steps=steps, size=size, batch=batch, seed=seed)
    return initial, batches, kwargs, size

# --- one framework --------------------------------------------------------------------

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
        if not engine_module("torch").sync_bn_available(job.device):
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
    release_memory(job.framework)  # the data-parallel model, before the single-process runs build theirs
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


def run_torch_jobs(jobs) -> list:
    runnable = [job for job in jobs if not sync_refused(job)]
    observed = dict(zip(map(id, runnable), observe_torch(runnable))) if runnable else {}
    return [run_job(job, observed.get(id(job))) for job in jobs]

# --- the TF engines run in a child process --------------------------------------------

def run_in_child(jobs, backend="tensorflow") -> list:
    """TensorFlow must be told its logical devices before it starts, so each Mirrored job
    runs in a fresh interpreter; killed (with its process group) on timeout or Ctrl-C."""
    rows = run_child("parity.train.parallel.check", "child_main", [vars(job) for job in jobs],  # vars: shared arrays stay shared
                     replicas=jobs[0].replicas, backend=backend, limit=sum(job.timeout_s * 4 for job in jobs) + 300)
    return [DistributedRow(**row) for row in rows]


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
        release_memory(job.framework)
    write_payload(os.path.join(workdir, "rows"), [asdict(row) for row in rows])


def job_from_dict(fields) -> Job:
    return Job(**{**fields, "batches": [tuple(batch) for batch in fields["batches"]]})

# --- the table ------------------------------------------------------------------------

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
