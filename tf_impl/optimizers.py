"""torch.optim's formulas for tf_impl models, written out in TensorFlow ops.

Each optimizer keeps its state in tf.Variables built once, eagerly (`build`), so a
tf.function train step only reads and assigns them. Weight decay is torch's: coupled L2 for
SGD/Adam/RMSprop, decoupled for AdamW; BatchNorm gamma/beta are decayed like every weight.
"""
import tensorflow as tf


class TorchOptimizer(tf.Module):
    def __init__(self, lr, name):
        super().__init__(name=name)
        # float64, cast per variable: a float32 lr (0.01 -> 0.0099999998) would put every float64
        # update 2e-8 from torch's, which keeps lr as a Python float.
        self.learning_rate = tf.Variable(lr, dtype=tf.float64, trainable=False, name="learning_rate")
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.slots = {}

    def build(self, variables, names=()):
        for var in variables:
            self.slots[var.ref()] = {n: tf.Variable(tf.zeros_like(var), trainable=False) for n in names}

    def apply(self, grads, variables):
        for g, var in zip(grads, variables):  # the step's arithmetic in each variable's dtype (float64 too)
            if g is not None:  # no gradient (an unused head): left alone, as torch.optim skips it
                self.update(g, var, tf.cast(self.learning_rate, var.dtype), self.slots[var.ref()])
        self.iterations.assign_add(1)

    def state(self, variables):
        """Per variable {torch's state name: numpy array}, as torch.optim keeps it."""
        return [{n: slot.numpy() for n, slot in self.slots[var.ref()].items()} for var in variables]

    def load_state(self, variables, per_variable):
        for var, values in zip(variables, per_variable):
            for name, value in values.items():
                self.slots[var.ref()][name].assign(value)


class TorchSGD(TorchOptimizer):
    """torch.optim.SGD: g += wd*p; b = g on the first step, else mu*b + (1-dampening)*g;
    nesterov: g += mu*b, else g = b; p -= lr*g."""

    def __init__(self, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, coupled_decay=0.0):
        super().__init__(lr, "torch_sgd")
        self.momentum, self.dampening, self.nesterov, self.coupled_decay = momentum, dampening, nesterov, coupled_decay

    def build(self, variables):
        super().build(variables, ("momentum_buffer",) if self.momentum else ())

    def update(self, g, var, lr, slots):
        g = _with_coupled_decay(g, var, self.coupled_decay)
        if self.momentum:
            buffer = slots["momentum_buffer"]
            if self.dampening:  # torch's first buffer is g itself, undamped
                updated = tf.where(self.iterations == 0, g, buffer * self.momentum + g * (1.0 - self.dampening))
            else:  # the zero-initialized buffer gives that exactly, without a select per variable
                updated = buffer * self.momentum + g
            buffer.assign(updated)
            g = g + updated * self.momentum if self.nesterov else updated
        var.assign_sub(lr * g)


class TorchAdam(TorchOptimizer):
    """torch.optim.Adam: m += (1-b1)(g-m); v = b2*v + (1-b2)*g^2;
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) -- eps outside the corrected sqrt."""

    decoupled = False

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, decay=0.0, name="torch_adam"):
        super().__init__(lr, name)
        (self.beta_1, self.beta_2), self.eps, self.decay_rate = betas, eps, decay

    def build(self, variables):
        super().build(variables, ("exp_avg", "exp_avg_sq"))

    def update(self, g, var, lr, slots):
        if self.decoupled:
            var.assign(var * (1.0 - lr * self.decay_rate))
        else:
            g = _with_coupled_decay(g, var, self.decay_rate)
        m, v = slots["exp_avg"], slots["exp_avg_sq"]
        step = tf.cast(self.iterations + 1, var.dtype)
        m.assign(m + (g - m) * (1.0 - self.beta_1))
        v.assign(v * self.beta_2 + g * g * (1.0 - self.beta_2))
        # tf.constant, not tf.cast: tf.cast(0.9, tf.float64) goes through float32 (0.8999999762).
        beta_1, beta_2 = tf.constant(self.beta_1, var.dtype), tf.constant(self.beta_2, var.dtype)
        step_size = lr / (1.0 - tf.pow(beta_1, step))
        denom = tf.sqrt(v) / tf.sqrt(1.0 - tf.pow(beta_2, step)) + self.eps
        var.assign_sub(step_size * (m / denom))


class TorchAdamW(TorchAdam):
    """torch.optim.AdamW: p *= 1 - lr*wd (decoupled), then Adam's update without decay."""

    decoupled = True

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, decay=0.01):
        super().__init__(lr, betas, eps, decay, name="torch_adamw")


class TorchRMSprop(TorchOptimizer):
    """torch.optim.RMSprop: v = alpha*v + (1-alpha)*g^2; avg = sqrt(v) + eps;
    momentum: b = mu*b + g/avg, p -= lr*b; else p -= lr*g/avg."""

    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, coupled_decay=0.0):
        super().__init__(lr, "torch_rmsprop")
        self.alpha, self.eps, self.momentum, self.coupled_decay = alpha, eps, momentum, coupled_decay

    def build(self, variables):
        super().build(variables, ("square_avg", "momentum_buffer") if self.momentum else ("square_avg",))

    def update(self, g, var, lr, slots):
        g = _with_coupled_decay(g, var, self.coupled_decay)
        square_avg = slots["square_avg"]
        square_avg.assign(square_avg * self.alpha + g * g * (1.0 - self.alpha))
        avg = tf.sqrt(square_avg) + self.eps
        if self.momentum:
            buffer = slots["momentum_buffer"]
            buffer.assign(buffer * self.momentum + g / avg)
            var.assign_sub(lr * buffer)
        else:
            var.assign_sub(lr * (g / avg))


def _with_coupled_decay(g, var, decay):
    return g + var * decay if decay else g


def make_optimizer(*, optimizer, lr, momentum, nesterov, dampening, weight_decay, betas, eps, alpha):
    """torch.optim vocabulary -> the optimizer above with torch's formula."""
    if optimizer == "sgd":
        return TorchSGD(lr, momentum=momentum, dampening=dampening, nesterov=nesterov, coupled_decay=weight_decay)
    if optimizer == "adam":
        return TorchAdam(lr, betas=betas, eps=eps, decay=weight_decay)
    if optimizer == "adamw":
        return TorchAdamW(lr, betas=betas, eps=eps, decay=weight_decay)
    if optimizer == "rmsprop":
        return TorchRMSprop(lr, alpha=alpha, eps=eps, momentum=momentum, coupled_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}")


def clip_by_global_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_: one norm over all gradients; each is scaled by
    min(1, max_norm / (norm + 1e-6))."""
    total = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
    scale = tf.minimum(max_norm / (total + 1e-6), 1.0)
    return [g * scale for g in grads]
