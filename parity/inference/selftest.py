"""`parity selftest`: inject known bugs into a correctly transferred model and prove the
comparison catches each one and names the mutated layer.

A weight bug is injected into the canonical state before transfer; a structural bug
(epsilon, a missing ReLU, pool padding, off-by-one padding, flatten order) is made on the
Keras or TF model itself. The expected layer is where the bug first shows at weighted-layer
granularity: the mutated layer, or for a ReLU or a pool the next weighted layer in the
reference's execution order.

A model of one's own without a torch builder is mutated in its other framework (TF) and
judged against its first (Keras): the weight mutations and the BN epsilon as above; the
ReLU and pool mutations need torch's modules to find their target and are left out, said so.
"""
import contextlib
import functools
from dataclasses import dataclass

import numpy as np

from ..adapters import adapter
from ..calibrate import seeded_input, seeded_reference
from ..catalogue import registry
from .layerwise import compare

MUTATIONS = ("flipped kernel", "transposed kernel", "swapped output channels", "wrong BN epsilon",
             "BN running mean +1%", "missing ReLU", "pool padding zero vs -inf", "off-by-one padding",
             "permuted flatten")


TORCH_MODULES_NEEDED = "not run: its target is found among torch's modules, and this model has no torch builder"


@dataclass
class Detection:
    model: str
    framework: str
    mutation: str
    expected_layer: str | None
    caught: bool | None  # None: not applicable to this architecture
    named_layer: str | None = None
    likely_cause: str | None = None
    normalized_error: float | None = None
    note: str = ""

    @property
    def ok(self):
        return self.caught is None or (self.caught and self.named_layer == self.expected_layer)


class _Context:
    """What every mutation needs: the reference, its canonical state and execution order
    (torch's module calls; for a Keras reference, its weighted layers in graph order alone)."""

    def __init__(self, name, framework, size, seed):
        self.name, self.framework, self.spec = name, framework, registry.get(name)
        c, h, w = self.spec.input_size
        size = size or self.spec.test_sizes[0]
        self.reference_framework, self.reference = seeded_reference(name, seed=seed, input_size=(c, size, size))
        if framework not in self.spec.ports:
            raise ValueError(f"{name}: selftest mutates a port judged against {self.reference_framework}: "
                             f"{', '.join(self.spec.ports)}; got {framework}")
        self.state = adapter(self.reference_framework).state_dict(self.reference)
        self.x = seeded_input((1, c, size, size), seed + 1)
        if self.reference_framework == "torch":
            self.order, self.events, self.pool_inputs, self.relu_after = _torch_execution_order(self.reference, self.x)
        else:
            layers = adapter(self.reference_framework).layer_outputs(self.reference, self.x)
            self.order = [layer for layer in layers if self.kind(layer) != "other"]
            self.events, self.pool_inputs, self.relu_after = list(self.order), {}, {}

    @property
    def torch_reference(self):
        return self.reference_framework == "torch"

    def kind(self, layer):
        if f"{layer}.running_mean" in self.state:
            return "norm"
        w = self.state.get(f"{layer}.weight")
        return "conv" if w is not None and w.ndim == 4 else "linear" if w is not None else "other"

    def middle(self, layers):
        return layers[len(layers) // 2] if layers else None

    def convs(self, min_kernel=1, square=False):
        found = []
        for layer in self.order:
            if self.kind(layer) == "conv":
                kh, kw = self.state[f"{layer}.weight"].shape[2:]
                if min(kh, kw) >= min_kernel and (not square or kh == kw):
                    found.append(layer)
        return found

    def norms(self):
        return [layer for layer in self.order if self.kind(layer) == "norm"]

    def next_weighted_after(self, event):
        i = self.events.index(event)
        return next((e for e in self.events[i + 1:] if e in self.order), None)

    @functools.cached_property
    def faithful(self):
        """The port holding the reference's weights, unmutated (read, never changed)."""
        return self.candidate()

    @functools.cached_property
    def faithful_outputs(self):
        return adapter(self.framework).run(self.faithful, self.x)

    def candidate(self, state=None):
        model = adapter(self.framework).build(self.name, input_size=self.x.shape[1:])
        adapter(self.framework).load_state_dict(model, self.state if state is None else state)
        return model


def _torch_execution_order(model, x):
    """Weighted layers in execution order, every module call in order, the smallest input
    each max-pool sees, and which BatchNorms feed a ReLU directly (by tensor identity)."""
    import torch
    from torch import nn
    events, pool_inputs, hooks, produced, relu_after = [], {}, [], {}, {}
    weighted = [p for p, m in model.named_modules() if p and (list(m.parameters(False)) or list(m.buffers(False)))]

    def hook(path, module):
        def record(_m, inputs, out):
            events.append(path)  # every call: a shared ReLU module fires many times
            if isinstance(module, nn.MaxPool2d):
                pool_inputs.setdefault(path, float(inputs[0].min()))
            if isinstance(module, nn.ReLU) and id(inputs[0]) in produced:
                relu_after.setdefault(produced[id(inputs[0])], path)
            produced[id(out)] = path
        return record

    for path, module in model.named_modules():
        if path and (path in weighted or isinstance(module, (nn.MaxPool2d, nn.ReLU))):
            hooks.append(module.register_forward_hook(hook(path, module)))
    try:
        with torch.inference_mode():
            model(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    order = list(dict.fromkeys(e for e in events if e in weighted))
    return order, events, pool_inputs, relu_after


# --- weight mutations: made on the canonical state -------------------------------------

def _mutate_weight(ctx, layer, fn, also_bias=False):
    state = dict(ctx.state)
    state[f"{layer}.weight"] = np.ascontiguousarray(fn(state[f"{layer}.weight"]))
    if also_bias and f"{layer}.bias" in state:
        state[f"{layer}.bias"] = np.ascontiguousarray(fn(state[f"{layer}.bias"]))
    return ctx.candidate(state), layer, contextlib.nullcontext()


def flipped_kernel(ctx):
    layer = ctx.middle(ctx.convs(min_kernel=3))
    return None if layer is None else _mutate_weight(ctx, layer, lambda w: w[:, :, ::-1, ::-1])


def transposed_kernel(ctx):
    layer = ctx.middle(ctx.convs(min_kernel=3, square=True))
    return None if layer is None else _mutate_weight(ctx, layer, lambda w: w.transpose(0, 1, 3, 2))


def swapped_output_channels(ctx):
    layer = ctx.middle(ctx.convs())
    return None if layer is None else _mutate_weight(ctx, layer, lambda w: w[[1, 0, *range(2, len(w))]], also_bias=True)


def bn_running_mean(ctx):
    norms = ctx.norms()
    if not norms:
        return None
    layer = max(norms, key=lambda n: np.abs(ctx.state[f"{n}.running_mean"]).max()
                / np.sqrt(ctx.state[f"{n}.running_var"].max()))
    state = dict(ctx.state)
    state[f"{layer}.running_mean"] = ctx.state[f"{layer}.running_mean"] * np.float32(1.01)
    return ctx.candidate(state), layer, contextlib.nullcontext()


# --- structural mutations: made on the Keras or TF model -----------------------------------

def _tf_layer(model, path):
    return dict(adapter("tf").layer_types().named_layers(model))[path]


def bn_epsilon(ctx):
    norms = ctx.norms()
    if not norms:
        return None
    layer = min(norms, key=lambda n: float(np.median(ctx.state[f"{n}.running_var"])))
    # Keras' default 1e-3, or torch's 1e-5 where the model already uses 1e-3 (Inception)
    given = dict(ctx.reference.named_modules())[layer].eps if ctx.torch_reference else \
        ctx.reference.get_layer(layer).epsilon
    wrong = 1e-5 if given == 1e-3 else 1e-3
    model = ctx.candidate()
    target = model.get_layer(layer) if ctx.framework == "keras" else _tf_layer(model, layer)
    setattr(target, "epsilon" if ctx.framework == "keras" else "eps", wrong)
    return model, layer, contextlib.nullcontext()


def off_by_one_padding(ctx):
    layer = ctx.middle([c for c in ctx.convs(min_kernel=3) if _padding_of(ctx, c) > 0])
    if layer is None:
        return None
    p = _padding_of(ctx, layer)
    shifted = ((p + 1, p - 1), (p + 1, p - 1))  # same output size, window shifted by one
    if ctx.framework == "tf":
        model = ctx.candidate()
        _tf_layer(model, layer).pads = [[0, 0], list(shifted[0]), list(shifted[1]), [0, 0]]
        return model, layer, contextlib.nullcontext()
    from keras import layers
    model = ctx.candidate()
    if f"{layer}_pad" in {lyr.name for lyr in model.layers}:
        model = _keras_replace(ctx, model, f"{layer}_pad", lambda old: layers.ZeroPadding2D(shifted, name=old.name))
    else:  # the conv pads itself ("same"): swap it for one that pads shifted first
        model = _keras_replace(ctx, model, layer, lambda old: _shifted_pad_conv(old, shifted))
    return None if model is None else (model, layer, contextlib.nullcontext())


def _shifted_pad_conv(conv, pads):
    """A Conv2D named and weighted like `conv` that zero-pads `pads` ((top, bottom), (left, right)),
    then convolves VALID."""
    from keras import layers, ops

    class ShiftedPadConv2D(layers.Conv2D):
        def call(self, x):
            return super().call(ops.pad(x, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]]))

        def compute_output_shape(self, shape):
            grow = lambda n, a, b: None if n is None else n + a + b  # noqa: E731
            padded = (shape[0], grow(shape[1], *pads[0]), grow(shape[2], *pads[1]), shape[3])
            return super().compute_output_shape(padded)

    return ShiftedPadConv2D(**{**conv.get_config(), "padding": "valid"})


def _padding_of(ctx, conv_path):
    if not ctx.torch_reference:  # the TF port's own (it is the one mutated), torch's (ph, pw)
        return _tf_layer(ctx.faithful, conv_path).padding[0]
    module = dict(ctx.reference.named_modules())[conv_path]
    return module.padding[0] if isinstance(module.padding, tuple) else 0


def missing_relu(ctx):
    """Drop the ReLU that directly follows a BatchNorm in the middle of the network."""
    if not ctx.torch_reference:
        return "unmapped", None, TORCH_MODULES_NEEDED
    layer = ctx.middle([n for n in ctx.norms() if n in ctx.relu_after])  # a ReLU takes its very output
    if layer is None:
        return None
    expected = ctx.order[ctx.order.index(layer) + 1]
    if ctx.framework == "keras":
        from keras import layers
        model = ctx.candidate()
        relu = _keras_consumer(model, layer, layers.ReLU)
        if relu is None:
            return None
        model = _keras_replace(ctx, model, relu.name, lambda old: layers.Identity(name=old.name))
        return None if model is None else (model, expected, contextlib.nullcontext())
    model = ctx.candidate()
    return model, expected, _tf_relu_skipped_after(model, layer)


@contextlib.contextmanager
def _tf_relu_skipped_after(model, norm_path):
    """While active, tf.nn.relu passes the output of one BatchNorm through unchanged."""
    import tensorflow as tf
    BatchNorm2d = adapter("tf").layer_types().BatchNorm2d
    target, relu, norm_forward, marked = _tf_layer(model, norm_path), tf.nn.relu, BatchNorm2d.forward, []

    def forward_and_mark(self, *args, **kwargs):
        out = norm_forward(self, *args, **kwargs)
        if self is target:
            marked.append(out)
        return out

    def skipping_relu(x, name=None):
        return x if any(x is m for m in marked) else relu(x, name=name)

    BatchNorm2d.forward, tf.nn.relu = forward_and_mark, skipping_relu
    try:
        yield
    finally:
        BatchNorm2d.forward, tf.nn.relu = norm_forward, relu


def pool_padding(ctx):
    """Swap a padded max-pool's padding between zero and -inf (whichever the reference uses)."""
    if not ctx.torch_reference:
        return "unmapped", None, TORCH_MODULES_NEEDED
    pools = [p for p, v in ctx.pool_inputs.items() if _pool_pads(ctx, p)]
    if not pools:
        return None
    pool = pools[0]
    expected = ctx.next_weighted_after(pool)
    if ctx.pool_inputs[pool] >= 0:
        return "benign", expected, "pool input is non-negative here: zero and -inf padding agree"
    if ctx.framework == "keras":
        from keras import layers
        NegInfPadding2D = adapter("keras").layer_types().NegInfPadding2D
        model = ctx.candidate()
        pad = next((lyr for lyr in model.layers if isinstance(lyr, (NegInfPadding2D, layers.ZeroPadding2D))
                    and lyr.name.startswith(pool)), None)
        if pad is None:
            return None
        swap = (lambda old: layers.ZeroPadding2D(((old.top, old.bottom), (old.left, old.right)), name=old.name)) \
            if isinstance(pad, NegInfPadding2D) else \
            (lambda old: NegInfPadding2D(old.padding, name=old.name))
        model = _keras_replace(ctx, model, pad.name, swap)
        return None if model is None else (model, expected, contextlib.nullcontext())
    return ctx.candidate(), expected, _tf_swap_pool_padding()


@contextlib.contextmanager
def _tf_swap_pool_padding():
    """While active, every -inf padding becomes zero padding (and max_pool2d's zero-pads -inf)."""
    import tensorflow as tf
    original = tf.pad

    def pad(tensor, paddings, mode="CONSTANT", constant_values=0, name=None):
        value = 0.0 if np.isneginf(constant_values) else constant_values
        return original(tensor, paddings, mode=mode, constant_values=value, name=name)

    tf.pad = pad
    try:
        yield
    finally:
        tf.pad = original


def _pool_pads(ctx, pool):
    module = dict(ctx.reference.named_modules())[pool]
    padding = module.padding if isinstance(module.padding, int) else max(module.padding)
    return padding > 0 or module.ceil_mode


def permuted_flatten(ctx):
    # a declared flatten Linear that this model builds and runs (aux heads may be off)
    layer = next((p for p in ctx.spec.flatten_linear if p in ctx.order), None)
    if layer is None:
        return None
    model = ctx.candidate()
    canonical = ctx.state[f"{layer}.weight"]
    var = model.get_layer(layer).kernel if ctx.framework == "keras" else _tf_layer(model, layer).weight
    var.assign(np.ascontiguousarray(canonical.T))  # (C, H, W) order where (H, W, C) is read
    return model, layer, contextlib.nullcontext()


def _keras_consumer(model, layer_name, layer_type):
    producer = model.get_layer(layer_name)
    for candidate in model.layers:
        source = getattr(candidate.input, "_keras_history", None) if isinstance(candidate, layer_type) else None
        if source is not None and source.operation is producer:
            return candidate
    return None


def _keras_replace(ctx, model, layer_name, make):
    """A clone of `model` with one layer swapped for `make(old_layer)`, weights reloaded."""
    import keras
    names = {layer.name for layer in model.layers}
    if layer_name not in names:
        return None

    def clone(layer):
        return make(layer) if layer.name == layer_name else layer.__class__.from_config(layer.get_config())

    mutated = keras.models.clone_model(model, clone_function=clone)
    adapter("keras").load_state_dict(mutated, ctx.state)
    return mutated


_MUTATORS = dict(zip(MUTATIONS, (flipped_kernel, transposed_kernel, swapped_output_channels, bn_epsilon,
                                 bn_running_mean, missing_relu, pool_padding, off_by_one_padding,
                                 permuted_flatten)))


def selftest(name: str, framework: str = "keras", *, size=None, seed: int = 0, mutations=MUTATIONS):
    ctx = _Context(name, framework, size, seed)
    return [_detect(ctx, mutation) for mutation in mutations]


def _changes_outputs(ctx, model, faithful) -> bool:
    """Whether the mutated model, run while its mutation is active, computes anything else than
    the faithful port did."""
    return any(not np.array_equal(a, b) for a, b in zip(adapter(ctx.framework).run(model, ctx.x), faithful))


def _detect(ctx, mutation):
    made = _MUTATORS[mutation](ctx)
    if made is None:
        return Detection(ctx.name, ctx.framework, mutation, None, None, note="not applicable to this architecture")
    model, expected, context = made
    if isinstance(model, str):  # a mutation that cannot change this model's output
        return Detection(ctx.name, ctx.framework, mutation, expected, None, note=context)
    faithful = ctx.faithful_outputs  # before the mutation's context patches anything
    with context:
        result = compare(ctx.reference, model, ctx.x, layerwise=True)
        reached = _changes_outputs(ctx, model, faithful)
    if not reached:  # e.g. a ReLU held as a function object, which patching tf.nn.relu cannot reach
        return Detection(ctx.name, ctx.framework, mutation, expected, None,
                         note="the mutation did not reach this model's code: not a test of the check")
    return Detection(ctx.name, ctx.framework, mutation, expected, not result.passed or
                     result.first_divergent_layer is not None, result.first_divergent_layer,
                     result.likely_cause, result.normalized_error)
