"""Data-parallel training the torch way: DistributedDataParallel, one process per replica.

Processes are started as torchrun would start them (MASTER_ADDR, MASTER_PORT, RANK,
WORLD_SIZE, LOCAL_RANK; init_method env://), with torch.multiprocessing spawn; gloo on CPU,
NCCL on CUDA (one GPU per rank). Each rank runs torch_impl.train.Trainer on its shard of the
global batch; DDP averages the gradients (all-reduce sum / world size) during backward and
broadcasts rank 0's buffers (BatchNorm running statistics) at the start of every forward.
SyncBatchNorm (batch statistics over all ranks) runs only on CUDA/XPU in torch: on CPU it
raises, so it is refused here up front.
"""
import copy
import datetime
import functools
import gc
import json
import os
import socket
import time
import traceback

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from .train import Trainer

LOOPBACK = "127.0.0.1"


def engine_name(device="cpu", sync_bn=False):
    backend = "nccl" if device == "cuda" else "gloo"
    return f"DistributedDataParallel ({backend}{', SyncBatchNorm' if sync_bn else ''})"


def sync_bn_available(device="cpu"):
    """torch.nn.SyncBatchNorm synchronizes only CUDA/XPU tensors (torch raises on CPU)."""
    return device == "cuda"


def check_devices(replicas, device="cpu", sync_bn=False):
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("DDP on cuda (NCCL) needs GPUs, and torch.cuda.is_available() is False")
        if torch.cuda.device_count() < replicas:
            raise RuntimeError(f"{replicas} replicas need {replicas} GPUs; {torch.cuda.device_count()} visible")
    elif device != "cpu":
        raise ValueError(f"device must be cpu or cuda, not {device!r}")
    if sync_bn and not sync_bn_available(device):
        raise NotImplementedError("torch SyncBatchNorm runs on CUDA/XPU only (on CPU it raises ValueError)")


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def data_parallel_steps(runs, replicas, *, sync_bn=False, device="cpu", timeout_s=120.0, workdir, hang_rank=None):
    """Train each run's model one step per global batch with DDP over `replicas` processes
    (one spawn, one process group for all runs: starting gloo ranks is the slow part).
    runs: [{model, batches, trainer_options, masks}], masks(shape, rate, replica) = the
    global batch's dropout mask, this replica's rows (or None). Returns, per run, the
    per-rank records [rank][step] = {loss, buffers, grads (step 1), weights (rank 0)}.
    A rank stuck in a collective fails after timeout_s naming itself; every process is
    ended on success, failure and Ctrl-C. `hang_rank` (tests) never joins the collective."""
    check_devices(replicas, device, sync_bn)
    work = functools.partial(check_runs, runs, sync_bn, device)
    records = launch(work, replicas, device=device, timeout_s=timeout_s, workdir=workdir, hang_rank=hang_rank)
    return [[records[rank][i] for rank in range(replicas)] for i in range(len(runs))]


def train_data_parallel(model, epoch_batches, lrs, trainer_options, replicas, *, device="cpu", timeout_s=120.0,
                        workdir):
    """A training run with DDP over `replicas` processes: epoch e (one per entry of `lrs`, its
    learning rate) trains on the global batches epoch_batches(e) (a picklable callable; every
    rank calls it and takes its contiguous shard). Returns [rank][step] = {epoch, loss,
    correct, seconds} of that rank's shard; rank 0's list ends with {"state": the final
    state_dict as numpy}."""
    check_devices(replicas, device)
    work = functools.partial(train_epochs, model, epoch_batches, lrs, trainer_options, device)
    return [runs[0] for runs in launch(work, replicas, device=device, timeout_s=timeout_s, workdir=workdir)]


def save_batches(directory, epoch, batches):
    """One epoch's global batches for the ranks, in an npz (x0, labels0, x1, ...): the parent's
    one loader feeds every rank, which then imports nothing beyond torch and numpy."""
    arrays = {f"{name}{i}": a for i, batch in enumerate(batches) for name, a in zip(("x", "labels"), batch)}
    path = os.path.join(directory, f"epoch{epoch}.npz")
    with open(path + ".tmp", "wb") as f:
        np.savez(f, **arrays)
    os.replace(path + ".tmp", path)


def saved_batches(directory, epoch):
    with np.load(os.path.join(directory, f"epoch{epoch}.npz"), allow_pickle=False) as arrays:
        return [(arrays[f"x{i}"], arrays[f"labels{i}"]) for i in range(len(arrays.files) // 2)]


def launch(work, replicas, *, device, timeout_s, workdir, hang_rank=None):
    """Spawn `replicas` ranks that each run work(rank, replicas) -> [run][step] records in one
    process group; returns every rank's records."""
    port = free_port()
    args = (replicas, port, work, device, timeout_s, workdir, hang_rank)
    context = mp.spawn(run_rank, args=args, nprocs=replicas, join=False, start_method="spawn")
    try:
        wait_for(context, deadline=time.monotonic() + timeout_s * 2 + 120)
    finally:
        end_all(context)
    return [read_records(workdir, rank) for rank in range(replicas)]


def wait_for(context, deadline):
    try:
        while not context.join(timeout=0.5):
            check_deadline(context, deadline)
    except mp.ProcessRaisedException as exc:  # the failing rank's own message, without the spawn traceback
        lines = [line for line in str(exc).splitlines() if line.startswith("RuntimeError: rank ")]
        raise RuntimeError(lines[0][len("RuntimeError: "):] if lines else str(exc)) from None


def check_deadline(context, deadline):
    if time.monotonic() > deadline:
        alive = [rank for rank, p in enumerate(context.processes) if p.is_alive()]
        raise TimeoutError(f"DDP ranks {alive} did not finish before the deadline; ended them")


def end_all(context):
    for process in context.processes:
        if process.is_alive():
            process.terminate()
    for process in context.processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def read_records(workdir, rank):
    """Rank `rank`'s records as write_records wrote them: numbers from rank{R}.json, arrays
    from rank{R}.npz (loaded without pickle)."""
    with open(os.path.join(workdir, f"rank{rank}.json")) as f:
        records = json.load(f)
    for run in records:
        for record in run:
            record.update({kind: {} for kind in record.pop("array_fields")})
    with np.load(os.path.join(workdir, f"rank{rank}.npz"), allow_pickle=False) as arrays:
        for name in arrays.files:
            run, step, kind, key = name.split("/", 3)
            records[int(run)][int(step)][kind][key] = arrays[name]
    return records


def write_records(workdir, rank, records):
    """[run][step] = {loss, seconds, buffers, grads, weights}: the numbers as JSON, the
    arrays (buffers, grads, weights by parameter name) in an npz; each file is replaced whole."""
    numbers = [[{**{k: v for k, v in record.items() if not isinstance(v, dict)},
                 "array_fields": [k for k, v in record.items() if isinstance(v, dict)]} for record in run]
               for run in records]
    arrays = {f"{i}/{s}/{kind}/{key}": value for i, run in enumerate(records) for s, record in enumerate(run)
              for kind, values in record.items() if isinstance(values, dict) for key, value in values.items()}
    for name, write in ((f"rank{rank}.npz", lambda f: np.savez(f, **arrays)),
                        (f"rank{rank}.json", lambda f: f.write(json.dumps(numbers).encode()))):
        path = os.path.join(workdir, name)
        with open(path + ".tmp", "wb") as f:
            write(f)
        os.replace(path + ".tmp", path)


def run_rank(rank, replicas, port, work, device, timeout_s, workdir, hang_rank=None):
    """One replica, started as torchrun starts a worker (its environment variables)."""
    os.environ.update(MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(replicas),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)  # N ranks share the machine's cores
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(rank)  # one GPU per rank, before NCCL starts
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))
    try:
        if rank == hang_rank:
            time.sleep(timeout_s * 10)  # a rank that never reaches the collective
        records = work(rank, replicas)
        gc.collect()  # a DDP wrapper kept alive by a reference cycle must not outlive the process group
        dist.barrier()  # no rank closes its connections while another still works (gloo aborted 1 run in 5)
    except Exception as exc:
        raise RuntimeError(f"rank {rank} of {replicas}: {type(exc).__name__}: {exc}"
                           f"{timeout_hint(exc, timeout_s)}\n{traceback.format_exc()}") from None
    finally:
        dist.destroy_process_group()
    write_records(workdir, rank, records)


def check_runs(runs, sync_bn, device, rank, replicas):
    return [train_rank(rank, replicas, run["model"], run["batches"], run["trainer_options"], run["masks"],
                       sync_bn, device) for run in runs]


def timeout_hint(exc, timeout_s):
    text = str(exc).lower()
    if "timeout" in text or "timed out" in text:
        return f" (collective timed out after {timeout_s:g} s: another rank never joined)"
    return ""


def train_rank(rank, replicas, model, batches, trainer_options, masks, sync_bn, device):
    local_device = torch.device(f"cuda:{rank}") if device == "cuda" else torch.device("cpu")
    # spawn hands every rank the *same* shared-memory tensors (torch.multiprocessing pickling):
    # without a private copy each rank's optimizer would update the others' weights too.
    model = copy.deepcopy(model)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(local_device)
    # DDP's default: rank 0's buffers are broadcast at every forward (broadcast_buffers=True)
    unused = heads_beyond_the_loss(model, shard(batches[0][0], rank, replicas), trainer_options, local_device)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device == "cuda" else None,
                                              find_unused_parameters=unused)
    options = dict(trainer_options)
    if options.get("head"):
        options["head"] = tuple(f"module.{p}" for p in options["head"])  # DDP's wrapper adds "module."
    replica_masks = ReplicaMasks(masks, rank) if masks is not None else None
    trainer = Trainer(ddp, **options, dropout_masks=replica_masks, device=local_device)
    names = [n[len("module."):] for n, p in ddp.named_parameters() if p.requires_grad]
    records = []
    for step, (x, labels) in enumerate(batches):
        if replica_masks is not None:
            replica_masks.step = step
        started = time.perf_counter()
        loss, _ = trainer.step(shard(x, rank, replicas), shard(labels, rank, replicas))
        record = {"loss": loss, "seconds": time.perf_counter() - started, "buffers": buffers(model)}
        if step == 0:
            record["grads"] = dict(zip(names, trainer.gradients()))  # already averaged by DDP
        if rank == 0:
            record["weights"] = {k: v.detach().cpu().numpy().copy() for k, v in model.named_parameters()}
        records.append(record)
    return records


def heads_beyond_the_loss(model, x, trainer_options, device) -> bool:
    """Whether the model returns more outputs than the loss weighs (the main one and one per
    aux weight): a head of one's own model the loss does not reach gets no gradient, and DDP,
    unless told (find_unused_parameters, an extra graph walk per step), waits for it."""
    training = model.training
    with torch.no_grad():
        outputs = model.eval()(torch.from_numpy(x).to(device))
    model.train(training)
    count = len(outputs) if isinstance(outputs, (list, tuple, dict)) else 1
    return count > 1 + len(trainer_options.get("aux_weights") or ())


def train_epochs(model, epoch_batches, lrs, trainer_options, device, rank, replicas):
    local_device = torch.device(f"cuda:{rank}") if device == "cuda" else torch.device("cpu")
    model = copy.deepcopy(model).to(local_device)  # a private copy: see train_rank
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device == "cuda" else None)
    trainer = Trainer(ddp, **trainer_options, device=local_device)
    records = []
    for epoch, lr in enumerate(lrs):
        trainer.set_lr(lr)
        for x, labels in epoch_batches(epoch):
            labels = shard(labels, rank, replicas)
            started = time.perf_counter()
            loss, logits = trainer.step(shard(x, rank, replicas), labels)
            records.append({"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - started,
                            "correct": int((np.argmax(logits, axis=-1) == labels).sum()), "seen": len(labels)})
    if rank == 0:
        records.append({"state": {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()
                                  if not k.endswith("num_batches_tracked")}})
    return [records]


def shard(array, rank, replicas):
    """Rank `rank`'s contiguous slice of the global batch (DistributedSampler without shuffle
    gives every rank an equal share; contiguous rows keep the comparison simple)."""
    n = len(array) // replicas
    return np.ascontiguousarray(array[rank * n:(rank + 1) * n])


def buffers(model):
    return {k: v.detach().cpu().numpy().copy() for k, v in model.named_buffers()
            if not k.endswith("num_batches_tracked")}


class ReplicaMasks:
    """This rank's rows of the global dropout masks."""

    def __init__(self, masks, replica):
        self.masks, self.replica = masks, replica

    @property
    def step(self):
        return self.masks.step

    @step.setter
    def step(self, value):
        self.masks.step = value

    def __call__(self, shape, rate):
        return self.masks(shape, rate, self.replica)
