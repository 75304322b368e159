"""What each engine did in a data-parallel check: one Job per (model, framework), run on torch
DDP, MirroredStrategy or Keras on JAX, and recorded as losses, first-step gradients, weights
after each step and every replica's BatchNorm statistics, in canonical names."""
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ...adapters import adapter
from ..judge import is_buffer
from .engines import BoundMasks, ShardMasks, engine_module, hyper_of, native_options, shared_strategy


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


def observe_torch(jobs) -> list:
    """DDP runs of every job in one spawn (same replicas, device, timeout for all)."""
    engine = engine_module("torch")
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


def observe_mirrored(job: Job) -> dict:
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
    engine = engine_module("jax")
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
        trainer.use_dropout_masks(BoundMasks(masks, 0))
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


def strip_buffers(state):
    return {k: v for k, v in state.items() if not is_buffer(k)}


def buffers_of(state):
    return {k: v for k, v in state.items() if is_buffer(k)}
