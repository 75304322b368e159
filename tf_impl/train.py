"""One training step, the TensorFlow way: tf.GradientTape inside a tf.function.

torch's vocabulary is translated by tf_impl/optimizers.py (torch's formulas, explicit) and
tf_impl/layers.BatchNorm2d (torch's running-statistics rule); docs/training.md has the table.
"""
import contextlib

import numpy as np
import tensorflow as tf

from .layers import BatchNorm2d, dropout_layers, named_layers
from .optimizers import clip_by_global_norm, make_optimizer

_TRAINABLE = ("weight", "bias")


def in_head(path, head):
    return any(path == p or path.startswith(p + ".") for p in head)


def compute_loss(outputs, labels, *, loss, aux_weights, label_smoothing):
    """Mean cross-entropy from logits (per pixel for a logits map), aux heads weighted;
    mean_square: sum over outputs of mean(out^2), for feature extractors."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if loss == "mean_square":
        return tf.add_n([tf.reduce_mean(tf.square(o)) for o in outputs]), outputs[0]
    weights = (1.0, *aux_weights)[:len(outputs)]
    total = tf.add_n([w * cross_entropy(o, labels, label_smoothing) for w, o in zip(weights, outputs)])
    return total, outputs[0]


def cross_entropy(logits, labels, label_smoothing=0.0):
    """torch's F.cross_entropy: mean over samples (and pixels) of -sum(target * log_softmax),
    target = (1-s)*one_hot + s/K."""
    if not label_smoothing:  # the same sum, without building the one-hot target
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    classes = logits.shape[-1]
    target = tf.one_hot(labels, classes) * (1.0 - label_smoothing) + label_smoothing / classes
    return tf.reduce_mean(-tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1))


class Trainer:
    def __init__(self, model, *, optimizer="sgd", lr=0.01, momentum=0.0, nesterov=False, dampening=0.0,
                 weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, alpha=0.99, label_smoothing=0.0,
                 clip_grad_norm=None, bn_momentum=0.1, loss="cross_entropy", aux_weights=(), head=None,
                 dropout_masks=None, device="cpu"):
        self.model = model
        self.loss, self.aux_weights, self.label_smoothing = loss, aux_weights, label_smoothing
        self.clip_grad_norm, self.dropout_masks = clip_grad_norm, dropout_masks
        self.variables = []
        for path, layer in named_layers(model):
            trained = head is None or in_head(path, head)
            if isinstance(layer, BatchNorm2d):
                layer.momentum, layer.frozen = bn_momentum, not trained
            if trained:
                self.variables += [v for v in (getattr(layer, p, None) for p in _TRAINABLE) if v is not None]
        self.optimizer = make_optimizer(optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                                        dampening=dampening, weight_decay=weight_decay, betas=betas, eps=eps,
                                        alpha=alpha)
        self.optimizer.build(self.variables)
        self._compiled = tf.function(self.train_step, reduce_retracing=True)
        self._last_grads = []

    def train_step(self, x, labels):
        with tf.GradientTape() as tape:
            loss, logits = compute_loss(self.model(x, training=True), labels, loss=self.loss,
                                        aux_weights=self.aux_weights, label_smoothing=self.label_smoothing)
        grads = tape.gradient(loss, self.variables)
        if self.clip_grad_norm is not None:
            grads = clip_by_global_norm(grads, self.clip_grad_norm)
        self.optimizer.apply(grads, self.variables)
        return loss, logits, grads

    def step(self, x, labels):
        with injected_dropout(self.model, self.dropout_masks):
            loss, logits, grads = self._compiled(tf.constant(x), tf.constant(labels))
        self._last_grads = grads
        return float(loss.numpy()), logits.numpy()

    def gradients(self):
        """Zeros where a variable got no gradient (an unused head), as torch_impl reports it."""
        return [g.numpy() if g is not None else np.zeros(v.shape, v.dtype.as_numpy_dtype)
                for g, v in zip(self._last_grads, self.variables)]

    def optimizer_state(self):
        """Per variable {torch state name: array} (momentum_buffer, exp_avg, ...), and the step count."""
        return self.optimizer.state(self.variables), int(self.optimizer.iterations.numpy())

    def load_optimizer_state(self, per_variable, steps):
        self.optimizer.load_state(self.variables, per_variable)
        self.optimizer.iterations.assign(steps)

    def reset_optimizer(self):
        """The optimizer as built: every slot zero, step 0."""
        per_variable, _ = self.optimizer_state()
        self.load_optimizer_state([{name: np.zeros_like(value) for name, value in slots.items()}
                                   for slots in per_variable], 0)

    def set_lr(self, lr):
        self.optimizer.learning_rate.assign(lr)


@contextlib.contextmanager
def injected_dropout(model, masks, per_replica=False):
    """While active, the Dropouts of `model` (only those) take their masks from `masks`; it must
    be active while a compiled step traces and while it runs. Nothing of TF is replaced."""
    layers = list(dropout_layers(model)) if masks is not None else []
    for layer in layers:
        layer.masks, layer.per_replica = masks, per_replica
    try:
        yield
    finally:
        for layer in layers:
            layer.masks, layer.per_replica = None, False
