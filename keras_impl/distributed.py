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
import time

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
        summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]
        return strategy.experimental_local_results(losses), summed

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
    with injected_dropout(masks, per_replica=True):
        losses, values = step(distribute(strategy, x), distribute(strategy, labels))
    return float(sum(loss.numpy() for loss in losses)), [v.numpy() for v in values]


def run_steps(strategy, trainer, batches, masks=None):
    """Train one step per global (x_nhwc, labels) batch; [(loss, gradients)] per step."""
    step = data_parallel_step(strategy, trainer, len(batches[0][0]))
    return [run_step(strategy, step, x, labels, masks, i) for i, (x, labels) in enumerate(batches)]



# --- Keras on JAX: keras.distribution.DataParallel -------------------------------------
# The step is written for the global batch; the inputs are sharded over the device mesh's
# batch axis and the variables replicated, and XLA's SPMD partitioner inserts the
# all-reduces. So the loss is the plain global mean, and BatchNorm's batch statistics are
# the global batch's (synchronized by construction; there is no per-replica BN here).

def jax_data_parallel(replicas):
    """DataParallel over the first `replicas` devices (on CPU: start the process with
    XLA_FLAGS=--xla_force_host_platform_device_count=N)."""
    devices = keras.distribution.list_devices()
    if len(devices) < replicas:
        raise RuntimeError(f"DataParallel over {replicas} devices: JAX sees {len(devices)} "
                           f"(XLA_FLAGS=--xla_force_host_platform_device_count={replicas} on CPU)")
    return keras.distribution.DataParallel(devices=devices[:replicas])


def jax_trainer_parts(model, *, optimizer, lr, momentum, nesterov, dampening, weight_decay, betas, eps, alpha,
                      bn_momentum=0.1, **_):
    """The torch-formula Keras optimizer and torch's BN momentum, as keras_impl.train sets them."""
    from .optimizers import make_optimizer
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 1.0 - bn_momentum
    return make_optimizer(optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
                          weight_decay=weight_decay, betas=betas, eps=eps, alpha=alpha)


def jax_run_steps(model, optimizer, batches, *, loss, aux_weights, label_smoothing, distribution=None):
    """One jitted, stateless train step per global (x_nhwc, labels) batch; with a
    distribution the batch is sharded over its devices. Returns [(loss, gradients, seconds)] and
    writes the trained values back into the model's variables."""
    step = JaxStep(model, optimizer, loss=loss, aux_weights=aux_weights, label_smoothing=label_smoothing,
                   distribution=distribution)
    results = [step(x, labels) for x, labels in batches]
    step.write_back()
    return results


class JaxStep:
    """The jitted, stateless train step of Keras on JAX, built once: call(x_nhwc, labels) ->
    (loss, gradients or, with returns="logits", the main head's output, seconds). The values
    live in the step until write_back() puts them into the model's variables."""

    def __init__(self, model, optimizer, *, loss, aux_weights, label_smoothing, distribution=None,
                 returns="grads"):
        import jax
        self.model, self.optimizer, self.distribution = model, optimizer, distribution
        optimizer.build(model.trainable_variables)

        def compute(trainable_values, non_trainable_values, x, labels):
            outputs, non_trainable_values = model.stateless_call(trainable_values, non_trainable_values, x,
                                                                 training=True)
            per_example = per_example_loss(outputs, labels, loss=loss, aux_weights=aux_weights,
                                           label_smoothing=label_smoothing)
            return ops.mean(per_example), (non_trainable_values, main_output(outputs))

        grad_fn = jax.value_and_grad(compute, has_aux=True)

        @jax.jit
        def step(trainable_values, non_trainable_values, optimizer_values, x, labels):
            (value, (non_trainable_values, logits)), grads = grad_fn(trainable_values, non_trainable_values, x,
                                                                    labels)
            trainable_values, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable_values)
            return value, grads if returns == "grads" else logits, trainable_values, non_trainable_values, \
                optimizer_values

        self._step = step
        self.read_values()

    def read_values(self):
        groups = (self.model.trainable_variables, self.model.non_trainable_variables, self.optimizer.variables)
        self.values = tuple([v.value for v in group] for group in groups)
        if self.distribution is not None:  # DataParallel replicates every variable
            import jax
            # the optimizer's state is created on one device; fed that, the step would compile twice
            replicated = self.values[0][0].sharding
            if isinstance(replicated, jax.sharding.NamedSharding):
                replicated = jax.sharding.NamedSharding(replicated.mesh, jax.sharding.PartitionSpec())
            self.values = tuple([jax.device_put(v, replicated) for v in group] for group in self.values)

    def __call__(self, x, labels):
        if self.distribution is not None:
            x = keras.distribution.distribute_tensor(x, self.distribution.get_data_layout(x.shape))
            labels = keras.distribution.distribute_tensor(labels, self.distribution.get_data_layout(labels.shape))
            devices = len(self.distribution.device_mesh.devices.flatten())
            if len(x.sharding.device_set) != devices:
                raise RuntimeError(f"the batch is on {len(x.sharding.device_set)} devices, not the mesh's {devices}")
        started = time.perf_counter()
        value, out, *values = self._step(*self.values, x, labels)
        loss = float(value)  # waits for the step
        self.values = tuple(values)
        out = [ops.convert_to_numpy(g) for g in out] if isinstance(out, (list, tuple)) else ops.convert_to_numpy(out)
        return loss, out, time.perf_counter() - started

    def write_back(self):
        for variables, new in zip((self.model.trainable_variables, self.model.non_trainable_variables,
                                   self.optimizer.variables), self.values):
            for variable, value in zip(variables, new):
                variable.assign(value)

    def set_lr(self, lr):
        self.write_back()
        self.optimizer.learning_rate = lr
        self.read_values()
