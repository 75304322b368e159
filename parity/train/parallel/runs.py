"""`parity train MODEL --replicas N`: the short training of `parity train`, data-parallel on
each framework's own engine, with one replica and with N, side by side.

Engines (the same as `parity train-check --replicas`, docs/distributed.md): torch
DistributedDataParallel (gloo on CPU, NCCL on CUDA) in spawned processes; tf_impl and Keras on
TF with MirroredStrategy over logical CPU devices (or GPUs), in a child interpreter per replica
count (TF's devices are fixed once it starts); with `--frameworks ...,jax`, Keras on JAX with
keras.distribution.DataParallel over host devices (XLA's device count, also fixed at start, so
a child too). Every run starts from the same weights (torch's
seeded initialization, as `parity train`) and trains on the same global batches in the same
order (parity.train.data.Loader: the parent's, saved per epoch for the DDP ranks; the TF child
rebuilds it from the run's configuration);
replica r takes rows r*B/N .. (r+1)*B/N - 1 of each global batch. A last batch that does not
split evenly keeps its first N*floor(B'/N) examples, in the one-replica run too.

Reported per framework and replica count: the last epoch's training loss and accuracy, test
loss and accuracy, examples/s of the training steps (the first step, with process warm-up and
tracing, left out; a step of N replicas ends when the slowest ends), per replica, and the
scaling efficiency throughput(N) / (N x throughput(1)), both measured in the same run, one
engine at a time. Files in --out (each written atomically): replicas.json and
<framework>/replicas-<n>/last.safetensors (the final canonical state).
"""
import functools
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...adapters import adapter
from ...adapters.step import Hyper, lr_at
from ...io import save_state, write_json
from ..runs import RunConfig, build_model, evaluate, open_data, seeded_state
from .child import end_children, read_payload, run_child, write_payload
from .engines import engine_module, native_options, shared_strategy

ENGINES = ("torch", "keras", "tf", "jax")  # jax: Keras 3 on the JAX backend (keras.distribution.DataParallel)
CHILD_ENGINES = {"keras": "tensorflow", "tf": "tensorflow", "jax": "jax"}  # framework -> the child's Keras backend


@dataclass
class ReplicaRun:
    framework: str
    replicas: int
    engine: str = ""
    loss: float = math.nan  # last epoch, mean over its examples
    train_acc: float = math.nan
    test_loss: float = math.nan
    test_acc: float = math.nan
    examples_per_s: float = math.nan  # training steps after the first
    step_loss: list = field(default_factory=list)
    checkpoint: str | None = None
    error: str | None = None

    @property
    def per_replica(self) -> float:
        return self.examples_per_s / self.replicas


class GlobalBatches:
    """epoch -> the run's global training batches (parity.train.data.Loader), each cut to a multiple
    of `multiple` examples. The TF child rebuilds the loader from the configuration; the DDP
    ranks read the parent's batches from files (torch_impl.distributed.save_batches)."""

    def __init__(self, config: dict, multiple: int):
        self.config, self.multiple, self._loader = config, multiple, None

    def __call__(self, epoch):
        if self._loader is None:
            self._loader = open_run_data(self.config)["train"]
        cut = [(x[:len(y) - len(y) % self.multiple], y[:len(y) - len(y) % self.multiple])
               for x, y in self._loader.batches(epoch)]
        return [(x, y) for x, y in cut if len(y)]


def open_run_data(config: dict) -> dict:
    return open_data(RunConfig(**config))


def train_data_parallel(config, replicas: int, console=None) -> list:
    """[ReplicaRun] for every framework of config, one replica and `replicas`, one engine at
    a time (so the throughputs are not measured against each other)."""
    if replicas < 2:
        raise ValueError("--replicas must be at least 2")
    if config.batch % replicas:
        raise ValueError(f"--batch {config.batch} must split evenly over {replicas} replicas")
    unknown = [f for f in config.frameworks if f not in ENGINES]
    if unknown:
        raise ValueError(f"--replicas runs {', '.join(ENGINES)}; not {unknown}")
    data = open_run_data(asdict(config))
    input_size, num_classes = shapes(config, data)
    starts = [f for f in config.frameworks if f != "jax"] or ["keras"]  # Keras on JAX starts as Keras would
    state = seeded_state(config.model, starts, input_size, num_classes, config.seed)
    lrs = [lr_at(Hyper(**config.hyper), epoch) for epoch in range(config.epochs)]
    job = {"config": asdict(config), "state": state, "lrs": lrs, "multiple": replicas}
    runs = []
    for n in (1, replicas):
        if "torch" in config.frameworks:
            report(console, config, ["torch"], n)
            runs.append(guarded("torch", n, lambda n=n: torch_run(n, job)))
        for backend in ("tensorflow", "jax"):  # one child interpreter per Keras backend and replica count
            frameworks = [f for f in config.frameworks if CHILD_ENGINES.get(f) == backend]
            if frameworks:
                report(console, config, frameworks, n)
                runs += guarded_all(frameworks, n, lambda n=n, fs=frameworks, b=backend: child_runs(fs, n, job, b))
    runs.sort(key=lambda r: (config.frameworks.index(r.framework), r.replicas))
    write_json(Path(config.out) / "replicas.json", summary(config, runs, replicas))
    return runs


def report(console, config, frameworks, replicas):
    if console is not None:
        console.print(f"training {config.model}: {', '.join(frameworks)} on {replicas} "
                      f"replica{'s' if replicas > 1 else ''}")


def guarded(framework, replicas, run) -> ReplicaRun:
    return guarded_all([framework], replicas, lambda: [run()])[0]


def guarded_all(frameworks, replicas, run) -> list:
    try:
        return run()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - reported per engine, exit 2
        return [ReplicaRun(f, replicas, error=f"{type(exc).__name__}: {exc}") for f in frameworks]


def child_runs(frameworks, replicas, job, backend) -> list:
    """The runs of `frameworks` in one child interpreter with `replicas` devices and KERAS_BACKEND
    `backend` (MirroredStrategy on tensorflow, DataParallel on jax)."""
    try:
        answers = run_child("parity.train.parallel.runs", "child_main", {**job, "frameworks": frameworks,
                            "replicas": replicas}, replicas=replicas, backend=backend, limit=3600)
    except BaseException:
        end_children()
        raise
    return [ReplicaRun(**answer) for answer in answers]


def shapes(config, data):
    """(input size CHW, number of classes) as `parity train` builds the model."""
    num_classes = config.num_classes or len(data["split"].classes)
    return (data["prep"].channels, data["prep"].size, data["prep"].size), num_classes


def torch_run(replicas, job) -> ReplicaRun:
    """DDP over `replicas` ranks (torch_impl.distributed.train_data_parallel)."""
    engine = engine_module("torch")
    config = RunConfig(**job["config"])
    data = open_run_data(job["config"])
    input_size, num_classes = shapes(config, data)
    model = build_model(config.model, "torch", input_size, num_classes, job["state"])
    options = native_options(adapter("torch"), model, Hyper(**config.hyper))
    batches = GlobalBatches(job["config"], job["multiple"])
    with tempfile.TemporaryDirectory(prefix="parity-ddp-") as workdir:
        for epoch in range(config.epochs):
            engine.save_batches(workdir, epoch, batches(epoch))
        ranks = engine.train_data_parallel(model, functools.partial(engine.saved_batches, workdir), job["lrs"],
                                           options, replicas, device=config.device, workdir=workdir)
    final = ranks[0].pop()["state"]
    steps = [{"epoch": records[0]["epoch"], "loss": float(np.mean([r["loss"] for r in records])),
              "correct": sum(r["correct"] for r in records), "seen": sum(r["seen"] for r in records),
              "seconds": max(r["seconds"] for r in records)}  # the all-reduce waits for the slowest rank
             for records in zip(*ranks)]
    adapter("torch").load_state_dict(model, final)
    return finish(config, "torch", replicas, engine.engine_name(config.device), model, steps, data)


def child_main():
    """The child interpreter of child_runs (parity.train.parallel.child.run_child)."""
    workdir = Path(sys.argv[1])
    job = read_payload(str(workdir / "jobs"))
    run = {"keras": mirrored_run, "tf": mirrored_run, "jax": jax_run}
    answers = [asdict(guarded(f, job["replicas"], lambda f=f: run[f](f, job["replicas"], job)))
               for f in job["frameworks"]]
    write_payload(str(workdir / "rows"), answers)


def mirrored_run(framework, replicas, job) -> ReplicaRun:
    """MirroredStrategy over `replicas` devices: <framework>_impl.distributed.data_parallel_step
    around the framework's own trainer (adapter.trainer), as the data-parallel check runs it."""
    config = RunConfig(**job["config"])
    engine = engine_module(framework)
    strategy = shared_strategy(engine, replicas, config.device)
    native = adapter(framework)
    data = open_run_data(job["config"])
    input_size, num_classes = shapes(config, data)
    with strategy.scope():
        model = build_model(config.model, framework, input_size, num_classes, job["state"])
        trainer = native.trainer(model, Hyper(**config.hyper), device=config.device)
    step = engine.data_parallel_step(strategy, trainer.native, None, returns="logits")
    batches, steps = GlobalBatches(job["config"], job["multiple"]), []
    for epoch, lr in enumerate(job["lrs"]):
        if epoch and lr != job["lrs"][epoch - 1]:
            trainer.set_lr(lr)
        for x, labels in batches(epoch):
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if native.channels_last else x
            started = time.perf_counter()
            loss, logits = engine.run_step(strategy, step, x, labels)
            seconds = time.perf_counter() - started
            correct = int((np.argmax(np.concatenate(logits), axis=-1) == labels).sum())
            steps.append({"epoch": epoch, "loss": loss, "correct": correct, "seen": len(labels), "seconds": seconds})
    return finish(config, framework, replicas, engine.engine_name(config.device), model, steps, data)


def jax_run(framework, replicas, job) -> ReplicaRun:
    """Keras on JAX: keras_impl/train.py's jitted step built under keras.distribution.DataParallel
    over `replicas` host devices (it shards each global batch)."""
    engine = engine_module("jax")
    config = RunConfig(**job["config"])
    data = open_run_data(job["config"])
    input_size, num_classes = shapes(config, data)
    distribution = engine.jax_data_parallel(replicas)
    with distribution.scope():
        model = build_model(config.model, "keras", input_size, num_classes, job["state"])
        trainer = adapter("keras").trainer(model, Hyper(**config.hyper)).native
        batches, steps = GlobalBatches(job["config"], job["multiple"]), []
        for epoch, lr in enumerate(job["lrs"]):
            if epoch and lr != job["lrs"][epoch - 1]:
                trainer.set_lr(lr)
            for x, labels in batches(epoch):
                started = time.perf_counter()
                loss, logits = trainer.step(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), labels)  # waits for it
                seconds = time.perf_counter() - started
                correct = int((np.argmax(logits, axis=-1) == labels).sum())
                steps.append({"epoch": epoch, "loss": loss, "correct": correct, "seen": len(labels),
                              "seconds": seconds})
    return finish(config, "jax", replicas, engine.engine_name(), model, steps, data)


def finish(config, framework, replicas, engine, model, steps, data) -> ReplicaRun:
    """Statistics of a finished run, its test loss and accuracy, and its final checkpoint."""
    last = [s for s in steps if s["epoch"] == config.epochs - 1]
    seen = sum(s["seen"] for s in last)
    timed = steps[1:] or steps
    run = ReplicaRun(framework, replicas, engine, loss=sum(s["loss"] * s["seen"] for s in last) / seen,
                     train_acc=sum(s["correct"] for s in last) / seen,
                     examples_per_s=sum(s["seen"] for s in timed) / sum(s["seconds"] for s in timed),
                     step_loss=[float(s["loss"]) for s in steps])
    native = "keras" if framework == "jax" else framework
    run.test_loss, run.test_acc = evaluate(native, model, data["test"], config.device)
    path = Path(config.out) / framework / f"replicas-{replicas}" / "last.safetensors"
    tags = {"model": config.model, "framework": framework, "replicas": str(replicas), "epoch": str(config.epochs),
            "test_acc": f"{run.test_acc:.6f}", **data["prep"].to_metadata()}
    save_state(adapter(native).state_dict(model), path, tags)
    run.checkpoint = str(path)
    return run


def efficiency(runs, framework, replicas):
    """throughput(N) / (N x throughput(1)) of one framework (None if either run failed)."""
    by_count = {r.replicas: r for r in runs if r.framework == framework and not r.error}
    if 1 not in by_count or replicas not in by_count:
        return None
    return by_count[replicas].examples_per_s / (replicas * by_count[1].examples_per_s)


def loss_gap(runs, framework, replicas):
    """The largest per-step training-loss difference between the N-replica and 1-replica runs."""
    by_count = {r.replicas: r for r in runs if r.framework == framework and not r.error}
    if 1 not in by_count or replicas not in by_count:
        return None
    return float(np.max(np.abs(np.subtract(by_count[replicas].step_loss, by_count[1].step_loss))))


def summary(config, runs, replicas) -> dict:
    return {"config": asdict(config), "replicas": replicas, "runs": [asdict(r) for r in runs],
            "scaling_efficiency": {f: efficiency(runs, f, replicas) for f in config.frameworks},
            "max_step_loss_gap": {f: loss_gap(runs, f, replicas) for f in config.frameworks}}


def table(config, runs, replicas):
    from rich.table import Table
    t = Table(title=f"{config.model} on {config.data}, data-parallel: {config.epochs} epochs, global batch "
                    f"{config.batch}, {config.hyper.get('optimizer')} lr {config.hyper.get('lr')}, {config.device}")
    columns = ("framework", "replicas", "loss", "train acc", "test acc", "ex/s", "per replica", "scaling eff.",
               "step loss diff")
    for column in columns:
        t.add_column(column, justify="left" if column == "framework" else "right")
    engines = "; ".join(dict.fromkeys(f"{r.framework}: {r.engine}" for r in runs if r.engine))
    t.caption = (f"{engines}. ex/s: examples per second of the training steps after the first; scaling eff. = "
                 f"ex/s(N) / (N x ex/s(1)); step loss diff: the largest against the same engine on 1 replica "
                 f"(same start, same batches)")
    for r in runs:
        if r.error:
            t.add_row(r.framework, str(r.replicas), *[""] * (len(columns) - 3),
                      f"[red]error[/red] {r.error.splitlines()[0]}")
            continue
        eff = efficiency(runs, r.framework, replicas) if r.replicas > 1 else None
        gap = loss_gap(runs, r.framework, replicas) if r.replicas > 1 else None
        t.add_row(r.framework, str(r.replicas), f"{r.loss:.4f}", f"{r.train_acc:.3f}", f"{r.test_acc:.3f}",
                  f"{r.examples_per_s:,.0f}", f"{r.per_replica:,.0f}", "-" if eff is None else f"{eff:.2f}",
                  "reference" if r.replicas == 1 else ("-" if gap is None else f"{gap:.1e}"))
    return t
