"""Data-parallel training the Keras 3 way.

On the tensorflow backend: tf.distribute.MirroredStrategy (Keras 3 supports it in custom
training loops): the model and optimizer are built under strategy.scope(), each replica
gets an equal contiguous shard of the global batch, its loss is
tf.nn.compute_average_loss over the global batch size, and the Keras optimizer's apply()
all-reduces (sums) the gradients across replicas before one update per variable.

BatchNorm: Keras 3 creates moving_mean/moving_variance with aggregation "none"; under
MirroredStrategy a replica-context assign to such a variable updates that replica's copy
only, so each replica tracks its own shard's statistics, the copies are never synchronized,
and reads/checkpoints see replica 0's copy. BatchNormalization(synchronized=True) all-reduces
the batch moments (TF backend only), so every replica normalizes with the global batch.
"""

import keras
from keras import ops

from .train import injected_dropout


def engine_name(device="cpu", sync_bn=False):
    if keras.backend.backend() == "jax":
        return "keras.distribution.DataParallel (JAX SPMD, host devices)"
    return f"MirroredStrategy ({'GPUs' if device in ('cuda', 'gpu') else 'logical CPUs'}" \
           f"{', BatchNormalization(synchronized=True)' if sync_bn else ''})"


def split_host_cpu(replicas):
    """N logical CPU devices (TF backend); must run before TensorFlow initializes its devices."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or ()) != replicas:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def mirrored_strategy(replicas, device="cpu"):
    import tensorflow as tf
    if device in ("cuda", "gpu"):
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < replicas:
            raise RuntimeError(f"MirroredStrategy over {replicas} GPUs: TensorFlow sees {len(gpus)}")
        names = [d.name for d in gpus[:replicas]]
    else:
        split_host_cpu(replicas)
        names = [d.name for d in tf.config.list_logical_devices("CPU")[:replicas]]
    return tf.distribute.MirroredStrategy(names)


def synchronize_batch_norms(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True  # moments all-reduced across replicas (TF backend)


def per_example_loss(outputs, labels, *, loss, aux_weights, label_smoothing):
    """The loss of each sample (mean over its pixels for a logits map), aux heads weighted;
    its mean over the global batch is keras_impl.train.compute_loss."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if loss == "mean_square":
        return sum(ops.mean(ops.reshape(ops.square(o), (ops.shape(o)[0], -1)), axis=1) for o in outputs)
    weights = (1.0, *aux_weights)[:len(outputs)]
    total = 0.0
    for w, o in zip(weights, outputs):
        classes = o.shape[-1]
        target = ops.one_hot(labels, classes) * (1.0 - label_smoothing) + label_smoothing / classes
        per_position = -ops.sum(target * ops.log_softmax(o, axis=-1), axis=-1)
        total = total + w * ops.mean(ops.reshape(per_position, (ops.shape(o)[0], -1)), axis=1)
    return total


def data_parallel_step(strategy, trainer, global_batch, returns="grads"):
    """A tf.function (x shards, label shards) -> (per-replica losses, summed gradients) that
    runs one synchronous step on every replica. `trainer`: keras_impl.train.Trainer built
    under strategy.scope().
    returns="logits" (training runs): the replicas' main-head outputs instead of the gradients,
    and global_batch=None scales each loss by the replicas' batch sizes at run time."""
    import tensorflow as tf
    if trainer.clip_grad_norm is not None:
        raise NotImplementedError("global gradient clipping is not wired into the data-parallel step")

    def replica_step(x, labels):
        with tf.GradientTape() as tape:
            outputs = trainer.model(x, training=True)
            per_example = per_example_loss(outputs, labels, loss=trainer.loss, aux_weights=trainer.aux_weights,
                                           label_smoothing=trainer.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, trainer.variables)
        trainer.optimizer.apply(grads, trainer.variables)  # all-reduces (sums) the gradients first
        return loss, (grads if returns == "grads" else main_output(outputs))

    @tf.function
    def step(x, labels):
        losses, grads = strategy.run(replica_step, args=(x, labels))
        if returns == "logits":
            return strategy.experimental_local_results(losses), strategy.experimental_local_results(grads)
        summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) if g is not None
                  else tf.zeros(v.shape, v.dtype) for g, v in zip(grads, trainer.variables)]  # zeros: no gradient
        return strategy.experimental_local_results(losses), summed

    step.model = trainer.model  # run_step hands the dropout masks to this model's layers
    return step


def main_output(outputs):
    """The main head's output (the first of several heads)."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def distribute(strategy, array):
    """Per-replica contiguous shards of a global numpy batch."""
    import tensorflow as tf
    replicas = strategy.num_replicas_in_sync
    n = len(array) // replicas

    def shard(context):
        i = context.replica_id_in_sync_group
        return tf.constant(array[i * n:(i + 1) * n])
    return strategy.experimental_distribute_values_from_function(shard)


def replica_values(variable):
    """Every replica's copy of a mirrored Keras variable, as numpy."""
    native = getattr(variable, "value", variable)
    values = getattr(native, "values", None)
    return [v.numpy() for v in values] if values is not None else [ops.convert_to_numpy(native)]


def run_step(strategy, step, x, labels, masks=None, index=0):
    """One global (x_nhwc, labels) batch through `step` (data_parallel_step, built once:
    a new tf.function per batch would trace again every step). Returns the global loss
    (sum of the replicas' scaled losses) and the step's gradients (or the replicas' outputs,
    in replica order, for a step built with returns="logits")."""
    if masks is not None:
        masks.step = index
    with injected_dropout(step.model, masks, per_replica=True):
        losses, values = step(distribute(strategy, x), distribute(strategy, labels))
    return float(sum(loss.numpy() for loss in losses)), [v.numpy() for v in values]


def run_steps(strategy, trainer, batches, masks=None):
    """Train one step per global (x_nhwc, labels) batch; [(loss, gradients)] per step."""
    step = data_parallel_step(strategy, trainer, len(batches[0][0]))
    return [run_step(strategy, step, x, labels, masks, i) for i, (x, labels) in enumerate(batches)]


# --- Keras on JAX: keras.distribution.DataParallel -------------------------------------
# The step itself is keras_impl/train.py's (jax_step): built under a DataParallel scope it
# shards each global batch over the mesh's batch axis and replicates the values, and XLA's
# SPMD partitioner inserts the all-reduces. So the loss is the plain global mean, and
# BatchNorm's batch statistics are the global batch's (synchronized by construction).

def jax_data_parallel(replicas):
    """DataParallel over the first `replicas` devices (on CPU: start the process with
    XLA_FLAGS=--xla_force_host_platform_device_count=N)."""
    devices = keras.distribution.list_devices()
    if len(devices) < replicas:
        raise RuntimeError(f"DataParallel over {replicas} devices: JAX sees {len(devices)} "
                           f"(XLA_FLAGS=--xla_force_host_platform_device_count={replicas} on CPU)")
    return keras.distribution.DataParallel(devices=devices[:replicas])
