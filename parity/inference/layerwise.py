"""Compare two models of any frameworks, down to the first layer that diverges
(`parity.compare`).

Both models see the same NCHW input (the adapters handle layouts). Layers are matched by
canonical name and visited in the reference's execution order; the first whose output
leaves its tolerance is the first divergent layer, and its error pattern names a likely
cause. A torch reference is also run in float64: each layer (and each output) is judged at
the policy or NOISE_FACTOR x its own fp32-vs-fp64 noise, whichever is larger, so rounding
that a deep random network amplifies is not mistaken for a bug, nor hides one upstream.
"""
from dataclasses import dataclass, field

import numpy as np

from .. import tolerance as tol_policy
from ..adapters import adapter_for

CAUSES = ("layout", "padding", "epsilon", "pooling", "weights")


@dataclass
class LayerError:
    layer: str
    normalized_error: float
    max_abs: float
    tolerance: float = 0.0  # the policy, or NOISE_FACTOR x this layer's reference noise


@dataclass
class Comparison:
    reference: str
    candidate: str
    passed: bool
    normalized_error: float
    max_abs: float
    tolerance: float
    headroom: float
    first_divergent_layer: str | None = None
    likely_cause: str | None = None  # one of CAUSES
    cause_detail: str | None = None
    layers: list = field(default_factory=list)  # LayerError up to the first divergent one
    reference_noise: float = 0.0  # worst output: torch fp32 vs fp64 (0 for a non-torch reference)


def compare(reference, candidate, inputs: np.ndarray, *, tolerance: float | None = None,
            layerwise: bool | None = None) -> Comparison:
    """Run both models on the NCHW float32 `inputs`; `tolerance` is the policy (fp32 CPU by
    default, fp64's when both models are float64). `layerwise=None` walks the layers only when
    the outputs disagree."""
    ref_adapter, cand_adapter = adapter_for(reference), adapter_for(candidate)
    both_float64 = ref_adapter.dtype(reference) == cand_adapter.dtype(candidate) == "float64"
    policy = tolerance if tolerance is not None else tol_policy.threshold("fp64" if both_float64 else "fp32")
    exact = _float64_twin(reference)
    ref_outputs = ref_adapter.run(reference, inputs)
    noise = _noise(ref_outputs, ref_adapter.run(exact, inputs)) if exact is not None else [0.0] * len(ref_outputs)
    tol = tol_policy.effective(policy, max(noise))
    errors = [tol_policy.measure(y, r) for y, r in zip(cand_adapter.run(candidate, inputs), ref_outputs)]
    worst = max(errors, key=lambda e: e.normalized)
    result = Comparison(ref_adapter.framework, cand_adapter.framework, worst.normalized <= tol,
                        worst.normalized, worst.max_abs, tol, worst.normalized / tol, reference_noise=max(noise))
    if layerwise or (layerwise is None and not result.passed):
        _walk_layers(result, reference, candidate, inputs, policy, exact)
    if both_float64:
        _judge_float64_throughout(result, reference, candidate, inputs)
    return result


def _judge_float64_throughout(result, reference, candidate, inputs):
    """Two float64 models are judged in float64 only if they compute in float64 everywhere."""
    for model in (reference, candidate):
        narrowed = narrowing(model, inputs)
        if narrowed:
            result.passed = False
            result.first_divergent_layer, result.cause_detail = narrowed
            return


def narrowing(model, inputs) -> tuple[str, str] | None:
    """(layer, what happened) where a float64 model first leaves float64, in execution order,
    else None. Sees an op that hands a narrower dtype from one layer to the next (TF's
    bilinear resize returns float32 whatever its input); one that computes in float32 and
    casts back (Keras' bilinear UpSampling2D) only the numbers show."""
    for layer, given, returned in adapter_for(model).layer_dtypes(model, inputs):
        if given != "float64":
            return layer, f"{given} enters {layer} in a float64 model: an op before it computes in {given}"
        if returned not in (None, "float64"):
            return layer, f"{layer} returns {returned} in a float64 model"
    return None


def _float64_twin(reference):
    """A float64 copy of a torch reference that takes float32 inputs, or None."""
    if adapter_for(reference).framework != "torch":
        return None
    import copy

    import torch
    exact = copy.deepcopy(reference).cpu().double().eval()
    exact.register_forward_pre_hook(lambda _m, args: tuple(a.to(torch.float64) for a in args))
    return exact


def _noise(fp32_outputs, fp64_outputs):
    return [tol_policy.measure(a, b).normalized for a, b in zip(fp32_outputs, fp64_outputs, strict=True)]


def _walk_layers(result, reference, candidate, inputs, policy, exact=None):
    ref_adapter, cand_adapter = adapter_for(reference), adapter_for(candidate)
    ref_layers = ref_adapter.layer_outputs(reference, inputs)
    exact_layers = ref_adapter.layer_outputs(exact, inputs) if exact is not None else {}
    cand_layers = cand_adapter.layer_outputs(candidate, inputs)
    state_kinds = _layer_kinds(ref_adapter.state_dict(reference))
    spec = ref_adapter.spec(reference)
    flatten = spec.flatten_linear if spec else {}
    for name, ref in ref_layers.items():
        if name not in cand_layers:
            continue
        out = cand_layers[name]
        if out.shape != ref.shape:
            result.layers.append(LayerError(name, float("inf"), float("inf"), policy))
            result.first_divergent_layer, result.likely_cause = name, "padding"
            result.cause_detail = f"output shape {out.shape} differs from the reference's {ref.shape}"
            return
        noise = tol_policy.measure(ref, exact_layers[name]).normalized if name in exact_layers else 0.0
        tol = tol_policy.effective(policy, noise)
        err = tol_policy.measure(out, ref)
        result.layers.append(LayerError(name, err.normalized, err.max_abs, tol))
        if err.normalized > tol:
            result.first_divergent_layer = name
            result.likely_cause, result.cause_detail = likely_cause(
                ref, out, state_kinds.get(name, "other"), tol, name in flatten)
            return


def _layer_kinds(state):
    kinds = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        if param == "running_mean":
            kinds[layer] = "norm"
        elif param == "weight" and layer not in kinds:
            kinds[layer] = {4: "conv", 2: "linear"}.get(value.ndim, "other")
    return kinds


def likely_cause(ref: np.ndarray, out: np.ndarray, kind: str, tol: float, after_flatten: bool = False):
    """(cause class, detail) from the pattern of the error at the first divergent layer."""
    diff = np.abs(out.astype(np.float64) - ref)
    limit = tol * max(np.abs(ref).max(), 1e-12)
    if after_flatten:
        return "layout", "a Linear fed by a spatial flatten: (C, H, W) vs (H, W, C) feature order"
    if ref.ndim == 4 and min(ref.shape[2:]) > 2:
        interior = diff[:, :, 1:-1, 1:-1].max()
        if interior <= limit:
            return "padding", "error only on the border rows/columns: padding, or a padded pooling before this layer"
        if kind == "norm":
            return _norm_cause(ref, out, diff, limit)
        bad = np.flatnonzero(diff.max(axis=(0, 2, 3)) > limit)
        if len(bad) <= 2 < ref.shape[1]:
            return "weights", f"only output channels {bad.tolist()} differ: swapped or corrupted filters"
        return "layout", "every output channel differs inside the map: kernel layout (flip, transpose) or wrong weights"
    if kind == "norm":
        return _norm_cause(ref, out, diff, limit)
    return "weights", "a dense layer's output differs everywhere"


def _norm_cause(ref, out, diff, limit):
    """BatchNorm in eval is per-channel affine: out = a*ref + b. Epsilon changes a; a moved
    running mean changes b."""
    channels = ref.shape[1]
    r = np.moveaxis(ref, 1, 0).reshape(channels, -1).astype(np.float64)
    o = np.moveaxis(out, 1, 0).reshape(channels, -1).astype(np.float64)
    centred = r - r.mean(1, keepdims=True)
    scale = (centred * (o - o.mean(1, keepdims=True))).sum(1) / np.maximum((centred ** 2).sum(1), 1e-30)
    offset = o.mean(1) - scale * r.mean(1)
    scale_off = np.abs(scale - 1) * np.abs(r).max(1)
    if scale_off.max() > np.abs(offset).max():
        return "epsilon", f"per-channel scale off by up to {np.abs(scale - 1).max():.1e}: BN epsilon or variance"
    bad = np.flatnonzero(np.abs(offset) > limit)
    return "weights", f"per-channel offset in {len(bad)} channels: BN running mean or bias"
