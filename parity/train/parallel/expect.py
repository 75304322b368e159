"""What the single process says a data-parallel job should have done: the framework's own
trainer on the global batch (the global rule) or on each replica's shard (per-replica
BatchNorm, under the engine's buffer rule), and the normalized errors against it."""
import numpy as np

from ...adapters import adapter
from ...devices import placed
from ...frameworks import release_memory
from ..judge import cancelled, largest, normalized
from .engines import BoundMasks, ShardMasks, hyper_of
from .observe import buffers_of, strip_buffers

# A gradient below this fraction of the model's largest is taken as zero in exact arithmetic
# (judge.cancelled). Train-check tells those apart in its fp64 judge (EXACT_ZERO); this check
# compares two fp32 runs, where that rounding grows with the positions a conv bias sums over
# (n x eps, 1.2e-4 for 2 x 32 x 32): VGG-11-BN's features.0.bias measured 4.5e-7..8.9e-7 of the
# largest at 32 px, 2 per replica.
CANCELLED = 1e-4
OTHER_RULE = {"ddp-broadcast": "mirrored-local", "mirrored-local": "ddp-broadcast"}


def single_process(job, state, batches, *, replica=0, replicas=1, first_step=0):
    """The framework's own single-process trainer (adapter.trainer) from `state` over
    `batches`: (losses, first-step gradients, state after each step). Dropout masks are
    rows `replica` of the global batch's masks."""
    native, model, trainer = single_trainer(job)
    native.load_state_dict(model, state)
    trainer.reset_optimizer()
    spec = native.spec(model)
    masks = ShardMasks(job.seed, replicas, native.channels_last, spec.flatten_linear.values() if spec else ())
    trainer.use_dropout_masks(BoundMasks(masks, replica))
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
        release_memory("keras" if job.framework == "jax" else job.framework)


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
