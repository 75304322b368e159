"""torch.optim's formulas as Keras 3 optimizers (keras.ops only, any backend).

Keras' own optimizers differ from torch's in ways that matter for parity (docs/training.md):
SGD keeps v = mu*v - lr*g (equal to torch only while lr is constant), Adam adds epsilon to
the uncorrected sqrt(v), RMSprop uses sqrt(v + eps), and Keras' `weight_decay` is always
decoupled. These subclasses write torch's update explicitly; weight decay is torch's
(coupled L2 for SGD/Adam/RMSprop, decoupled for AdamW) and applies to every trained
variable, BatchNorm gamma/beta included, as torch does.
"""
import keras
from keras import ops


class TorchSGD(keras.optimizers.Optimizer):
    """torch.optim.SGD: g += wd*p; b = g on the first step, else mu*b + (1-dampening)*g;
    nesterov: g += mu*b, else g = b; p -= lr*g."""

    def __init__(self, learning_rate=0.01, momentum=0.0, dampening=0.0, nesterov=False, coupled_decay=0.0,
                 name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.coupled_decay = coupled_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.buffers = [self.add_variable_from_reference(v, "momentum_buffer") for v in variables] \
            if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = _with_coupled_decay(ops.cast(gradient, variable.dtype), variable, self.coupled_decay)
        if self.momentum:
            buffer = self.buffers[self._get_variable_index(variable)]
            updated = ops.where(ops.equal(self.iterations, 0), g,
                                buffer * self.momentum + g * (1.0 - self.dampening))
            self.assign(buffer, updated)
            g = g + updated * self.momentum if self.nesterov else updated
        self.assign_sub(variable, lr * g)

    def _backend_update_step(self, grads, variables, learning_rate):
        if keras.backend.backend() != "torch":
            return super()._backend_update_step(grads, variables, learning_rate)
        import torch
        with torch.no_grad():  # in-place updates of Parameters that require grad
            _torch_sgd(self, grads, variables, learning_rate)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "coupled_decay": self.coupled_decay}


class TorchAdam(keras.optimizers.Optimizer):
    """torch.optim.Adam: m += (1-b1)(g-m); v = b2*v + (1-b2)*g^2;
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) -- eps outside the corrected sqrt."""

    decoupled = False

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, decay=0.0,
                 name="torch_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.decay_rate = beta_1, beta_2, epsilon, decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.first_moments = [self.add_variable_from_reference(v, "exp_avg") for v in variables]
        self.second_moments = [self.add_variable_from_reference(v, "exp_avg_sq") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.decoupled:
            self.assign(variable, variable * (1.0 - lr * self.decay_rate))
        else:
            g = _with_coupled_decay(g, variable, self.decay_rate)
        index = self._get_variable_index(variable)
        m, v = self.first_moments[index], self.second_moments[index]
        step = ops.cast(self.iterations + 1, variable.dtype)
        self.assign(m, m + (g - m) * (1.0 - self.beta_1))
        self.assign(v, v * self.beta_2 + g * g * (1.0 - self.beta_2))
        step_size = lr / (1.0 - ops.power(self.beta_1, step))
        denom = ops.sqrt(v) / ops.sqrt(1.0 - ops.power(self.beta_2, step)) + self.epsilon
        self.assign_sub(variable, step_size * (m / denom))

    def _backend_update_step(self, grads, variables, learning_rate):
        if keras.backend.backend() != "torch":
            return super()._backend_update_step(grads, variables, learning_rate)
        import torch
        with torch.no_grad():
            _torch_adam(self, grads, variables, learning_rate)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "decay": self.decay_rate}


class TorchAdamW(TorchAdam):
    """torch.optim.AdamW: p *= 1 - lr*wd (decoupled), then Adam's update without decay."""

    decoupled = True

    def __init__(self, learning_rate=0.001, decay=0.01, name="torch_adamw", **kwargs):
        super().__init__(learning_rate=learning_rate, decay=decay, name=name, **kwargs)


class TorchRMSprop(keras.optimizers.Optimizer):
    """torch.optim.RMSprop: v = alpha*v + (1-alpha)*g^2; avg = sqrt(v) + eps;
    momentum: b = mu*b + g/avg, p -= lr*b; else p -= lr*g/avg."""

    def __init__(self, learning_rate=0.01, alpha=0.99, epsilon=1e-8, momentum=0.0, coupled_decay=0.0,
                 name="torch_rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.alpha, self.epsilon, self.momentum, self.coupled_decay = alpha, epsilon, momentum, coupled_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.square_avgs = [self.add_variable_from_reference(v, "square_avg") for v in variables]
        self.buffers = [self.add_variable_from_reference(v, "momentum_buffer") for v in variables] \
            if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = _with_coupled_decay(ops.cast(gradient, variable.dtype), variable, self.coupled_decay)
        index = self._get_variable_index(variable)
        square_avg = self.square_avgs[index]
        self.assign(square_avg, square_avg * self.alpha + g * g * (1.0 - self.alpha))
        avg = ops.sqrt(square_avg) + self.epsilon
        if self.momentum:
            buffer = self.buffers[index]
            self.assign(buffer, buffer * self.momentum + g / avg)
            self.assign_sub(variable, lr * buffer)
        else:
            self.assign_sub(variable, lr * (g / avg))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "epsilon": self.epsilon,
                "momentum": self.momentum, "coupled_decay": self.coupled_decay}


# --- the same updates on Keras' torch backend, all variables at once ---------------------
# Keras' eager torch backend pays a Python dispatch per op per variable; its own SGD/Adam use
# torch._foreach_* there, and so do these (same formulas as update_step above).

def _torch_sgd(opt, grads, variables, learning_rate):
    import torch
    params = [v.value for v in variables]
    lr = _as_torch(learning_rate, params[0])
    g = torch._foreach_add(list(grads), params, alpha=opt.coupled_decay) if opt.coupled_decay else list(grads)
    if opt.momentum:
        buffers = [opt.buffers[opt._get_variable_index(v)].value for v in variables]
        if int(opt.iterations.value) == 0:
            torch._foreach_copy_(buffers, g)
        else:
            torch._foreach_mul_(buffers, opt.momentum)
            torch._foreach_add_(buffers, g, alpha=1.0 - opt.dampening)
        g = torch._foreach_add(g, buffers, alpha=opt.momentum) if opt.nesterov else buffers
    torch._foreach_sub_(params, torch._foreach_mul(g, lr))


def _torch_adam(opt, grads, variables, learning_rate):
    import torch
    params = [v.value for v in variables]
    lr = _as_torch(learning_rate, params[0])
    g = list(grads)
    if opt.decoupled and opt.decay_rate:
        torch._foreach_mul_(params, 1.0 - lr * opt.decay_rate)
    elif opt.decay_rate:
        g = torch._foreach_add(g, params, alpha=opt.decay_rate)
    index = [opt._get_variable_index(v) for v in variables]
    m = [opt.first_moments[i].value for i in index]
    v = [opt.second_moments[i].value for i in index]
    step = int(opt.iterations.value) + 1
    torch._foreach_add_(m, torch._foreach_mul(torch._foreach_sub(g, m), 1.0 - opt.beta_1))
    torch._foreach_mul_(v, opt.beta_2)
    torch._foreach_addcmul_(v, g, g, value=1.0 - opt.beta_2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, (1.0 - opt.beta_2 ** step) ** 0.5)
    torch._foreach_add_(denom, opt.epsilon)
    update = torch._foreach_div(m, denom)
    torch._foreach_mul_(update, lr / (1.0 - opt.beta_1 ** step))
    torch._foreach_sub_(params, update)


def _as_torch(learning_rate, like):
    """The learning rate (a Keras variable, tensor or float) as a 0-d tensor on `like`'s device, in its dtype."""
    import torch
    return torch.as_tensor(getattr(learning_rate, "value", learning_rate)).to(like.device, like.dtype)


def _with_coupled_decay(g, variable, decay):
    return g + variable * decay if decay else g


STATE_NAMES = {"buffers": "momentum_buffer", "first_moments": "exp_avg", "second_moments": "exp_avg_sq",
               "square_avgs": "square_avg"}  # attribute -> torch.optim's state name


def _slots(optimizer) -> dict:
    """{torch state name: the optimizer's list of slot variables} of the slots it keeps."""
    return {name: getattr(optimizer, attribute) for attribute, name in STATE_NAMES.items()
            if getattr(optimizer, attribute, None)}


def optimizer_state(optimizer, variables):
    """([{torch state name: array} per variable], step count) of one of the optimizers above."""
    slots = _slots(optimizer)
    index = [optimizer._get_variable_index(v) for v in variables]
    per_variable = [{name: ops.convert_to_numpy(slot[i]) for name, slot in slots.items()} for i in index]
    return per_variable, int(ops.convert_to_numpy(optimizer.iterations))


def load_optimizer_state(optimizer, variables, per_variable, steps):
    """The inverse of optimizer_state."""
    slots = _slots(optimizer)
    for variable, values in zip(variables, per_variable):
        i = optimizer._get_variable_index(variable)
        for name, value in values.items():
            slots[name][i].assign(value)
    optimizer.iterations.assign(steps)


def make_optimizer(*, optimizer, lr, momentum, nesterov, dampening, weight_decay, betas, eps, alpha):
    """torch.optim vocabulary -> the Keras optimizer with torch's formula."""
    if optimizer == "sgd":
        return TorchSGD(lr, momentum=momentum, dampening=dampening, nesterov=nesterov, coupled_decay=weight_decay)
    if optimizer in ("adam", "adamw"):
        cls = TorchAdamW if optimizer == "adamw" else TorchAdam
        return cls(learning_rate=lr, beta_1=betas[0], beta_2=betas[1], epsilon=eps, decay=weight_decay)
    if optimizer == "rmsprop":
        return TorchRMSprop(lr, alpha=alpha, epsilon=eps, momentum=momentum, coupled_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}")


def clip_by_global_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_: one norm over all gradients; each is scaled by
    min(1, max_norm / (norm + 1e-6)). (Keras' clipnorm clips each variable on its own.)"""
    total = ops.sqrt(sum(ops.sum(ops.square(g)) for g in grads))
    scale = ops.minimum(max_norm / (total + 1e-6), 1.0)
    return [g * scale for g in grads]
