"""1-vs-N replica training throughput on each data-parallel engine (issue 14).

Weak scaling: every replica trains --per-replica samples per step, so the global batch is
N x per-replica. Throughput = global batch / median step time (the first step, with tracing
and warm-up, left out); per-replica throughput = throughput / N; scaling efficiency =
throughput(N) / (N x throughput(1)). Engines: torch DDP (gloo ranks, one thread each),
MirroredStrategy over logical CPU devices for tf_impl and Keras on TF, and Keras on JAX with
keras.distribution.DataParallel over host devices (one child interpreter per replica count:
TF's devices and XLA's host device count are fixed once they start).

    python benchmarks/distributed_bench.py [--model resnet18] [--size 32] [--per-replica 8]
        [--steps 6] [--replicas 2] [--frameworks torch,keras,tf,jax] [--out benchmarks/distributed.json]

On a machine with fewer free cores than replicas the efficiency mostly measures contention;
the JSON records os.cpu_count() and the load average beside the figures.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def batches_for(model, size, global_batch, steps, seed=0):
    from parity.catalogue import registry
    from parity.train.judge import make_batches
    spec = registry.get(model)
    return make_batches(spec, 10, steps=steps, size=size, batch=global_batch, seed=seed)


def initial(model, size):
    from parity.train.parallel.check import initial_state
    state, _, kwargs, size = initial_state(model, size, 2, 2, 0)
    return state, kwargs, size


def hyper():
    from parity.adapters.step import Hyper
    from parity.train.judge import DEFAULT_HYPER
    return Hyper(optimizer="sgd", **DEFAULT_HYPER["sgd"])


def torch_step_times(model, size, replicas, per_replica, steps):
    import torch_impl.distributed as engine
    from parity.adapters import adapter
    from parity.train.parallel.engines import native_options
    state, kwargs, size = initial(model, size)
    torch_adapter = adapter("torch")
    native = torch_adapter.build(model, **kwargs)
    torch_adapter.load_state_dict(native, state)
    run = {"model": native, "batches": batches_for(model, size, per_replica * replicas, steps),
           "trainer_options": native_options(torch_adapter, native, hyper()), "masks": None}
    with tempfile.TemporaryDirectory() as workdir:
        [records] = engine.data_parallel_steps([run], replicas, workdir=workdir)
    # a step ends when the slowest rank ends it (the all-reduce waits for every rank)
    return [max(records[r][s]["seconds"] for r in range(replicas)) for s in range(steps)]


def mirrored_step_times(framework, model, size, replicas, per_replica, steps):
    from parity.adapters import adapter
    from parity.train.parallel.engines import engine_module, shared_strategy
    engine = engine_module(framework)
    strategy = shared_strategy(engine, replicas, "cpu")
    state, kwargs, size = initial(model, size)
    native = adapter(framework)
    with strategy.scope():
        net = native.build(model, input_size=(3, size, size), **kwargs)
        native.load_state_dict(net, state)
        trainer = native.trainer(net, hyper())
    times = []
    compiled = engine.data_parallel_step(strategy, trainer.native, per_replica * replicas)
    for x, labels in batches_for(model, size, per_replica * replicas, steps):
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        started = time.perf_counter()
        engine.run_step(strategy, compiled, x, labels)
        times.append(time.perf_counter() - started)
    return times


def jax_step_times(model, size, replicas, per_replica, steps):
    import keras_impl.distributed as engine
    from parity.adapters import adapter
    state, kwargs, size = initial(model, size)
    native = adapter("keras")
    distribution = engine.jax_data_parallel(replicas)
    times = []
    with distribution.scope():
        net = native.build(model, input_size=(3, size, size), **kwargs)
        native.load_state_dict(net, state)
        trainer = native.trainer(net, hyper()).native
        for x, y in batches_for(model, size, per_replica * replicas, steps):
            started = time.perf_counter()
            trainer.step(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y)  # returns the loss as a float: waits
            times.append(time.perf_counter() - started)
    return times


def in_child(framework, model, size, replicas, per_replica, steps):
    backend = "jax" if framework == "jax" else "tensorflow"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={replicas}",
           "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", framework, "--model", model,
                          "--size", str(size), "--replicas", str(replicas), "--per-replica", str(per_replica),
                          "--steps", str(steps)], env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{framework} x{replicas} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(times, global_batch, replicas):
    steady = float(np.median(times[1:])) if len(times) > 1 else times[0]
    throughput = global_batch / steady
    return {"replicas": replicas, "global_batch": global_batch, "median_step_s": steady,
            "samples_per_s": throughput, "per_replica_samples_per_s": throughput / replicas, "step_s": times}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--per-replica", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--frameworks", default="torch,keras,tf,jax", help="jax: Keras on JAX, DataParallel")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "distributed.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        measure = jax_step_times if args.child == "jax" else \
            lambda *a: mirrored_step_times(args.child, *a)
        times = measure(args.model, args.size, args.replicas, args.per_replica, args.steps)
        print(json.dumps(times))
        return 0
    rows = []
    for framework in args.frameworks.split(","):
        results = {}
        for replicas in (1, args.replicas):
            times = (torch_step_times(args.model, args.size, replicas, args.per_replica, args.steps)
                     if framework == "torch" else
                     in_child(framework, args.model, args.size, replicas, args.per_replica, args.steps))
            results[replicas] = summary(times, args.per_replica * replicas, replicas)
        one, many = results[1], results[args.replicas]
        efficiency = many["samples_per_s"] / (args.replicas * one["samples_per_s"])
        rows.append({"framework": framework, "one": one, "many": many, "scaling_efficiency": efficiency})
        print(f"{framework:6s} 1 replica {one['samples_per_s']:7.1f} samples/s | {args.replicas} replicas "
              f"{many['samples_per_s']:7.1f} samples/s ({many['per_replica_samples_per_s']:.1f} per replica) | "
              f"efficiency {efficiency:.2f}", flush=True)
    record = {"model": args.model, "size": args.size, "per_replica_batch": args.per_replica, "steps": args.steps,
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "rows": rows}
    with open(args.out + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
