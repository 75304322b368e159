"""One training step, the Keras 3 way: a train_step over keras.ops with an optimizer's apply().

The math (loss, clipping, optimizer updates, BatchNorm statistics) is keras.ops; only the
gradient and the compilation are the backend's, as in Keras' own guides to customizing
train_step: tf.GradientTape in a tf.function (tensorflow), autograd in eager mode (torch),
and on JAX a jitted stateless step (jax.value_and_grad over model.stateless_call, then
optimizer.stateless_apply). torch's vocabulary is translated by keras_impl/optimizers.py
(torch formulas) and keras_impl/layers.TorchBatchNormalization (torch's running variance);
docs/training.md has the table.
"""
import contextlib

import keras
import numpy as np
from keras import ops

from .layers import dropout_layers, dtype_of, floatx, mean
from .optimizers import clip_by_global_norm, load_optimizer_state, make_optimizer, optimizer_state


def in_head(path, head):
    return any(path == p or path.startswith(p + ".") for p in head)


def compute_loss(outputs, labels, *, loss, aux_weights, label_smoothing):
    """Mean cross-entropy from logits (per pixel for a logits map), aux heads weighted;
    mean_square: sum over outputs of mean(out^2), for feature extractors."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if loss == "mean_square":
        return sum(mean(ops.square(o)) for o in outputs), outputs[0]
    # from_logits=True: the default (False) would read logits as probabilities, and clip them.
    # dtype: a Loss computes in floatx (float32) unless told, which would round a float64 step.
    dtype = keras.backend.standardize_dtype(outputs[0].dtype)
    # reduction=None, then mean: the Loss's own reduction computes a float64 loss in float32
    # on the torch and JAX backends (keras_impl.layers.mean)
    cross_entropy = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing,
                                                         dtype=dtype, reduction=None)
    weights = (1.0, *aux_weights)[:len(outputs)]
    total = sum(w * mean(cross_entropy(ops.one_hot(labels, ops.shape(o)[-1], dtype=dtype), o))
                for w, o in zip(weights, outputs))
    return total, outputs[0]


class Trainer:
    def __init__(self, model, *, optimizer="sgd", lr=0.01, momentum=0.0, nesterov=False, dampening=0.0,
                 weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, alpha=0.99, label_smoothing=0.0,
                 clip_grad_norm=None, bn_momentum=0.1, loss="cross_entropy", aux_weights=(), head=None,
                 dropout_masks=None, device="cpu"):
        self.model = model
        self.loss, self.aux_weights, self.label_smoothing = loss, aux_weights, label_smoothing
        self.clip_grad_norm, self.dropout_masks = clip_grad_norm, dropout_masks
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 1.0 - bn_momentum  # Keras keeps the old statistics' share
            if head is not None and layer.weights:
                layer.trainable = in_head(layer.name, head)  # a frozen BN normalizes with its moving statistics
        self.variables = list(model.trainable_variables)
        with floatx(dtype_of(model)):  # the learning rate in the model's dtype (a float32 0.01 is 2e-8 off)
            self.optimizer = make_optimizer(optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                                            dampening=dampening, weight_decay=weight_decay, betas=betas, eps=eps,
                                            alpha=alpha)
            self.optimizer.build(self.variables)
        self._compiled = BACKEND_STEPS[keras.backend.backend()](self)
        self._last_grads = []

    def train_step(self, x, labels):
        """The step on the tensorflow and torch backends (JAX's is stateless: jax_step)."""
        (loss, logits), grads = value_and_grad(self._forward, self.variables, x, labels)
        # torch.optim skips a parameter without a gradient (a head the loss does not reach): no
        # decay, no momentum; so does the optimizer here, given only the variables that have one
        present = [(g, v) for g, v in zip(grads, self.variables) if g is not None]
        with outside_autodiff():
            updates = [g for g, _ in present]
            if self.clip_grad_norm is not None:
                updates = clip_by_global_norm(updates, self.clip_grad_norm)
            self.optimizer.apply(updates, [v for _, v in present])
        return loss, logits, grads

    def _forward(self, x, labels):
        return compute_loss(self.model(x, training=True), labels, loss=self.loss,
                            aux_weights=self.aux_weights, label_smoothing=self.label_smoothing)

    def step(self, x, labels):
        # floatx in the model's dtype while the step runs or is traced: Keras' type promotion
        # resolves float64 with float64 to floatx on the torch backend (ops.matmul)
        with injected_dropout(self.model, self.dropout_masks), floatx(dtype_of(self.model)):
            loss, logits, grads = self._compiled(x, labels)
        self._last_grads = grads
        return float(ops.convert_to_numpy(loss)), ops.convert_to_numpy(logits)

    def gradients(self):
        """Zeros where a variable got no gradient (an unused head), as torch_impl reports it."""
        return [ops.convert_to_numpy(g) if g is not None else np.zeros(v.shape, v.dtype)
                for g, v in zip(self._last_grads, self.variables)]

    def optimizer_state(self):
        """Per variable {torch state name: array} (momentum_buffer, exp_avg, ...), and the step count."""
        return optimizer_state(self.optimizer, self.variables)

    def load_optimizer_state(self, per_variable, steps):
        load_optimizer_state(self.optimizer, self.variables, per_variable, steps)

    def reset_optimizer(self):
        """The optimizer as built: every slot zero, step 0."""
        per_variable, _ = self.optimizer_state()
        self.load_optimizer_state([{name: np.zeros_like(value) for name, value in slots.items()}
                                   for slots in per_variable], 0)

    def set_lr(self, lr):
        self.optimizer.learning_rate = lr


def value_and_grad(forward, variables, *args):
    """(forward(*args), d forward[0] / d variables) with the backend's autodiff, eagerly or
    inside the backend's compiled step (tensorflow, torch)."""
    if keras.backend.backend() == "torch":
        import torch
        loss, logits = forward(*args)
        values = [v.value for v in variables]
        grads = torch.autograd.grad(loss, values, allow_unused=True)  # None: the loss does not reach it
        return (loss.detach(), logits.detach()), list(grads)
    import tensorflow as tf
    with tf.GradientTape() as tape:
        result = forward(*args)
    return result, tape.gradient(result[0], variables)


def outside_autodiff():
    """The update is not differentiated: on torch, whose variables are Parameters that require
    grad, the optimizer's arithmetic would otherwise build an autograd graph every step."""
    if keras.backend.backend() == "torch":
        import torch
        return torch.no_grad()
    return contextlib.nullcontext()


def tensorflow_step(trainer):
    import tensorflow as tf
    return tf.function(trainer.train_step, jit_compile=False, reduce_retracing=True)


def torch_step(trainer):
    """Eager, as Keras' own torch trainer runs unless jit_compile is asked for."""
    def step(x, labels):
        return trainer.train_step(ops.convert_to_tensor(x), ops.convert_to_tensor(labels))
    return step


def jax_step(trainer):
    """A jitted stateless step; the new values are written back into the Keras variables
    after each call, so the model, checkpoints and set_lr see the current state. Built under
    a keras.distribution.DataParallel scope, it shards each global batch over the mesh and
    replicates the values, and XLA's SPMD partitioner inserts the all-reduces (the loss stays
    the global mean, BatchNorm's statistics the global batch's)."""
    import jax
    model, optimizer = trainer.model, trainer.optimizer
    groups = (model.trainable_variables, model.non_trainable_variables, optimizer.variables)
    distribution = keras.distribution.distribution()

    def compute(trainable, non_trainable, x, labels):
        outputs, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        loss, logits = compute_loss(outputs, labels, loss=trainer.loss, aux_weights=trainer.aux_weights,
                                    label_smoothing=trainer.label_smoothing)
        return loss, (logits, non_trainable)

    @jax.jit
    def compiled(trainable, non_trainable, optimizer_values, x, labels):
        (loss, (logits, non_trainable)), grads = jax.value_and_grad(compute, has_aux=True)(
            trainable, non_trainable, x, labels)
        if trainer.clip_grad_norm is not None:
            grads = clip_by_global_norm(grads, trainer.clip_grad_norm)
        trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
        return loss, logits, grads, (trainable, non_trainable, optimizer_values)

    def step(x, labels):
        values = [[v.value for v in group] for group in groups]
        if distribution is not None:
            x, labels, values = data_parallel_inputs(distribution, x, labels, values)
        loss, logits, grads, new_values = compiled(*values, x, labels)
        for group, new in zip(groups, new_values):
            for variable, value in zip(group, new):
                variable.assign(value)
        return loss, logits, grads
    return step


def data_parallel_inputs(distribution, x, labels, values):
    """The global batch split over the mesh's batch axis, every value replicated on the mesh
    (the optimizer's state is created on one device: fed that, the step would compile twice)."""
    import jax
    x, labels = (keras.distribution.distribute_tensor(a, distribution.get_data_layout(a.shape)) for a in (x, labels))
    devices = len(distribution.device_mesh.devices.flatten())
    if len(x.sharding.device_set) != devices:
        raise RuntimeError(f"the batch is on {len(x.sharding.device_set)} devices, not the mesh's {devices}")
    replicated = jax.sharding.NamedSharding(x.sharding.mesh, jax.sharding.PartitionSpec())
    return x, labels, [[jax.device_put(v, replicated) for v in group] for group in values]


BACKEND_STEPS = {"tensorflow": tensorflow_step, "torch": torch_step, "jax": jax_step}


@contextlib.contextmanager
def injected_dropout(model, masks, per_replica=False):
    """While active, the Dropouts of `model` (only those: keras_impl.layers.Dropout) take their
    masks from `masks`; it must be active while a compiled step traces (tensorflow, JAX) and
    while it runs. Nothing of Keras is replaced."""
    layers = list(dropout_layers(model)) if masks is not None else []
    for layer in layers:
        layer.masks, layer.per_replica = masks, per_replica
    try:
        yield
    finally:
        for layer in layers:
            layer.masks, layer.per_replica = None, False
