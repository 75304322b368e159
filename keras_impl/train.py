"""One training step, the Keras 3 way: a train_step over keras.ops with an optimizer's apply().

The math (loss, clipping, optimizer updates, BatchNorm statistics) is keras.ops; only the
gradient itself is the backend's (tf.GradientTape on the tensorflow backend, as Keras'
own guide to customizing train_step does). torch's vocabulary is translated by
keras_impl/optimizers.py (torch formulas) and keras_impl/layers.TorchBatchNormalization
(torch's running variance); docs/training.md has the table.
"""
import contextlib

import keras
from keras import ops

from .optimizers import clip_by_global_norm, make_optimizer


def in_head(path, head):
    return any(path == p or path.startswith(p + ".") for p in head)


def compute_loss(outputs, labels, *, loss, aux_weights, label_smoothing):
    """Mean cross-entropy from logits (per pixel for a logits map), aux heads weighted;
    mean_square: sum over outputs of mean(out^2), for feature extractors."""
    outputs = list(outputs.values()) if isinstance(outputs, dict) else outputs
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if loss == "mean_square":
        return sum(ops.mean(ops.square(o)) for o in outputs), outputs[0]
    # from_logits=True: the default (False) would read logits as probabilities, and clip them.
    cross_entropy = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    weights = (1.0, *aux_weights)[:len(outputs)]
    total = sum(w * cross_entropy(ops.one_hot(labels, ops.shape(o)[-1]), o) for w, o in zip(weights, outputs))
    return total, outputs[0]


class Trainer:
    def __init__(self, model, *, optimizer="sgd", lr=0.01, momentum=0.0, nesterov=False, dampening=0.0,
                 weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, alpha=0.99, label_smoothing=0.0,
                 clip_grad_norm=None, bn_momentum=0.1, loss="cross_entropy", aux_weights=(), head=None,
                 dropout_masks=None, device="cpu"):
        if keras.backend.backend() != "tensorflow":
            raise NotImplementedError(f"keras_impl training runs on the tensorflow backend; "
                                      f"KERAS_BACKEND is {keras.backend.backend()!r}")
        self.model = model
        self.loss, self.aux_weights, self.label_smoothing = loss, aux_weights, label_smoothing
        self.clip_grad_norm, self.dropout_masks = clip_grad_norm, dropout_masks
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 1.0 - bn_momentum  # Keras keeps the old statistics' share
            if head is not None and layer.weights:
                layer.trainable = in_head(layer.name, head)  # a frozen BN normalizes with its moving statistics
        self.variables = list(model.trainable_variables)
        self.optimizer = make_optimizer(optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                                        dampening=dampening, weight_decay=weight_decay, betas=betas, eps=eps,
                                        alpha=alpha)
        self.optimizer.build(self.variables)
        self._compiled = _compile(self.train_step)
        self._last_grads = []

    def train_step(self, x, labels):
        outputs_loss, grads = _value_and_grad(self._forward, self.variables, x, labels)
        loss, logits = outputs_loss
        if self.clip_grad_norm is not None:
            grads = clip_by_global_norm(grads, self.clip_grad_norm)
        self.optimizer.apply(grads, self.variables)
        return loss, logits, grads

    def _forward(self, x, labels):
        return compute_loss(self.model(x, training=True), labels, loss=self.loss,
                            aux_weights=self.aux_weights, label_smoothing=self.label_smoothing)

    def step(self, x, labels):
        with injected_dropout(self.dropout_masks):
            loss, logits, grads = self._compiled(x, labels)
        self._last_grads = grads
        return float(ops.convert_to_numpy(loss)), ops.convert_to_numpy(logits)

    def gradients(self):
        return [ops.convert_to_numpy(g) for g in self._last_grads]

    def set_lr(self, lr):
        self.optimizer.learning_rate = lr


def _value_and_grad(forward, variables, *args):
    """(forward(*args), d forward[0] / d variables) with the backend's autodiff."""
    import tensorflow as tf
    with tf.GradientTape() as tape:
        result = forward(*args)
    return result, tape.gradient(result[0], variables)


def _compile(step):
    import tensorflow as tf
    return tf.function(step, jit_compile=False, reduce_retracing=True)


@contextlib.contextmanager
def injected_dropout(masks):
    """While active, Keras' Dropout multiplies by masks(shape, rate) (already scaled by
    1/(1-rate)), fetched when the step runs, instead of drawing from Keras' seed generator."""
    if masks is None:
        yield
        return
    import tensorflow as tf
    from keras.src import backend
    original = backend.random.dropout

    def dropout(inputs, rate, noise_shape=None, seed=None):
        mask = tf.numpy_function(lambda shape: masks(shape, rate), [tf.shape(inputs)], tf.float32, stateful=True)
        return inputs * tf.reshape(mask, tf.shape(inputs))

    backend.random.dropout = dropout
    try:
        yield
    finally:
        backend.random.dropout = original

