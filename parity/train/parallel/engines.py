"""The data-parallel engines of the three frameworks (<framework>_impl/distributed.py), as the
check and the runs reach them: the engine module, its native trainer options, one
MirroredStrategy per process, and the global batch's dropout masks cut into replicas."""
import numpy as np

from ...adapters import adapter
from ...adapters.step import DropoutMasks, Hyper, loss_kind
from ...errors import unknown_choice

FRAMEWORKS = ("torch", "keras", "tf", "jax")  # jax: Keras 3 on the JAX backend


def engine_module(framework):
    """The framework's data-parallel engine (Keras on JAX: keras_impl's), through its adapter."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"{unknown_choice('framework', framework, FRAMEWORKS)}; choose from {', '.join(FRAMEWORKS)}")
    return adapter("keras" if framework == "jax" else framework).distributed_engine()


def hyper_of(job):
    return Hyper(**job.hyper)


def native_options(adapter, model, hyper):
    """What adapter.trainer passes to the framework's native Trainer (without dropout)."""
    spec = adapter.spec(model)
    return {**hyper.native(), "loss": loss_kind(spec), "aux_weights": tuple(spec.aux_weights) if spec else (),
            "head": None}


_STRATEGIES = {}


def shared_strategy(engine, replicas, device):
    """One MirroredStrategy per process: a second one numbers its collectives from the same
    keys, and TF then mixes up the two (shape mismatch in collective instance N)."""
    key = (replicas, device)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = engine.mirrored_strategy(replicas, device)
    return _STRATEGIES[key]


class ShardMasks:
    """Dropout masks of the global batch (parity.adapters.step.DropoutMasks), cut into the
    replicas' rows, so N replicas drop exactly the units one process drops. Picklable:
    it travels to spawned workers."""

    def __init__(self, seed, replicas, channels_last=False, flattened=()):
        self.seed, self.replicas, self.channels_last = seed, replicas, channels_last
        self.flattened, self.step = tuple(flattened), 0

    def __call__(self, shape, rate, replica=0):
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
