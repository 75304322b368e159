"""Data-parallel training the TensorFlow way: tf.distribute.MirroredStrategy.

One replica per device (GPUs, or N logical CPU devices split from the host CPU before TF
starts). A custom training loop: the global batch is split into equal contiguous shards
(one per replica), each replica's loss is tf.nn.compute_average_loss over the *global*
batch size, the gradients are all-reduced with SUM (= the mean gradient of the global
batch) and every replica applies the same update to its copy of each variable.

BatchNorm: tf_impl.layers.BatchNorm2d keeps its statistics in plain tf.Variables
(aggregation NONE). Under MirroredStrategy a replica-context assign to such a variable
updates that replica's copy only, so each replica tracks the statistics of its own shard,
the copies are never synchronized, and reads (and checkpoints) see replica 0's copy.
With sync_bn the batch moments are all-reduced across replicas (SyncBatchNorm2d below,
on the replica context's all_reduce), so every replica normalizes with the global batch.
"""

import tensorflow as tf

from .layers import BatchNorm2d, named_layers
from .train import injected_dropout


def engine_name(device="cpu", sync_bn=False):
    return f"MirroredStrategy ({'GPUs' if device in ('cuda', 'gpu') else 'logical CPUs'}" \
           f"{', synchronized BN' if sync_bn else ''})"


def split_host_cpu(replicas):
    """N logical CPU devices; must run before TensorFlow initializes its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or ()) != replicas:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def mirrored_strategy(replicas, device="cpu"):
    if device in ("cuda", "gpu"):
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < replicas:
            raise RuntimeError(f"MirroredStrategy over {replicas} GPUs: TensorFlow sees {len(gpus)}")
        names = [d.name for d in gpus[:replicas]]
    else:
        split_host_cpu(replicas)
        names = [d.name for d in tf.config.list_logical_devices("CPU")[:replicas]]
    return tf.distribute.MirroredStrategy(names)


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d whose training-mode moments are those of the global batch, all-reduced
    across replicas in two passes: the mean first, then the squared deviations from it.
    (One pass, E[x^2] - E[x]^2 as Keras' synchronized=True computes it, cancels badly when
    the variance is small next to the mean: a few values per channel at 1x1 maps.)"""

    def forward(self, x, training=False):
        context = tf.distribute.get_replica_context()
        if not training or self.frozen or context is None:
            return super().forward(x, training=training)
        total = tf.distribute.ReduceOp.SUM
        local_count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
        sums, count = context.all_reduce(total, [tf.reduce_sum(x, axis=[0, 1, 2]), local_count])
        mean = sums / count
        var = context.all_reduce(total, tf.reduce_sum(tf.square(x - mean), axis=[0, 1, 2])) / count
        unbiased = var * count / tf.maximum(count - 1.0, 1.0)
        self.running_mean.assign_sub(self.momentum * (self.running_mean - mean))
        self.running_var.assign_sub(self.momentum * (self.running_var - unbiased))
        return tf.nn.batch_normalization(x, mean, var, self.bias, self.weight, self.eps)


def synchronize_batch_norms(model):
    for _, layer in named_layers(model):
        if type(layer) is BatchNorm2d:
            layer.__class__ = SyncBatchNorm2d  # same variables, moments over all replicas


def per_example_loss(outputs, labels, *, loss, aux_weights, label_smoothing):
    """The loss of each sample (mean over its pixels for a logits map), aux heads weighted;
    its mean over the global batch is tf_impl.train.compute_loss."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if loss == "mean_square":
        return tf.add_n([tf.reduce_mean(tf.reshape(tf.square(o), [tf.shape(o)[0], -1]), axis=1) for o in outputs])
    weights = (1.0, *aux_weights)[:len(outputs)]
    terms = []
    for w, o in zip(weights, outputs):
        classes = o.shape[-1]
        target = tf.one_hot(labels, classes) * (1.0 - label_smoothing) + label_smoothing / classes
        per_position = -tf.reduce_sum(target * tf.nn.log_softmax(o, axis=-1), axis=-1)
        terms.append(w * tf.reduce_mean(tf.reshape(per_position, [tf.shape(o)[0], -1]), axis=1))
    return tf.add_n(terms)


def data_parallel_step(strategy, trainer, global_batch, returns="grads"):
    """A tf.function (x shards, label shards) -> (per-replica losses, summed gradients) that
    runs one synchronous step on every replica. `trainer`: tf_impl.train.Trainer built
    under strategy.scope() (its optimizer state is mirrored too).
    returns="logits" (training runs): the replicas' main-head outputs instead of the gradients,
    and global_batch=None scales each loss by the replicas' batch sizes at run time."""
    if trainer.clip_grad_norm is not None:
        raise NotImplementedError("global gradient clipping is not wired into the data-parallel step")

    def replica_step(x, labels):
        with tf.GradientTape() as tape:
            outputs = trainer.model(x, training=True)
            per_example = per_example_loss(outputs, labels, loss=trainer.loss, aux_weights=trainer.aux_weights,
                                           label_smoothing=trainer.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, trainer.variables)
        grads = all_reduced(grads)
        trainer.optimizer.apply(grads, trainer.variables)  # same update on every replica's copy (None: skipped)
        return loss, (grads if returns == "grads" else main_output(outputs))

    @tf.function
    def step(x, labels):
        losses, grads = strategy.run(replica_step, args=(x, labels))
        if returns == "logits":
            return strategy.experimental_local_results(losses), strategy.experimental_local_results(grads)
        return (strategy.experimental_local_results(losses),
                [strategy.experimental_local_results(g)[0] if g is not None else tf.zeros(v.shape, v.dtype)
                 for g, v in zip(grads, trainer.variables)])  # zeros where no gradient, as torch_impl reports

    step.model = trainer.model  # run_step hands the dropout masks to this model's layers
    return step


def all_reduced(grads):
    """The replicas' gradients summed; None (a variable the loss does not reach) stays None."""
    present = [g for g in grads if g is not None]
    summed = iter(tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(summed) for g in grads]


def main_output(outputs):
    """The main head's output (the first of several heads)."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def distribute(strategy, array):
    """Per-replica contiguous shards of a global numpy batch."""
    replicas = strategy.num_replicas_in_sync
    n = len(array) // replicas

    def shard(context):
        i = context.replica_id_in_sync_group
        return tf.constant(array[i * n:(i + 1) * n])
    return strategy.experimental_distribute_values_from_function(shard)


def replica_values(variable):
    """Every replica's copy of a mirrored variable, as numpy."""
    values = getattr(variable, "values", None)
    return [v.numpy() for v in values] if values is not None else [variable.numpy()]


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
