"""Parity in your own test suite: a pytest plugin (entry point pytest11 `parity`) and three
assertions that answer "is my port the same function, and does it train the same?".

    assert_same_function(reference, candidate, inputs=None, *, tolerance=None)
    assert_same_training_step(reference, candidate, batches=None, *, optimizer="sgd", steps=3, **hyper)
    assert_onnx_matches(model, path=None, inputs=None, *, tolerance=None)

Models of any framework (torch, Keras, tf.Module), and for the first, an ONNX file as the
candidate. A failure's message is the table the command line prints: the first divergent
layer and its likely cause. Fixtures: `parity_inputs(shape, seed=0)` (seeded NCHW float32),
`calibrated_state(name, input_size=None, seed=0)` (seeded, BatchNorm-calibrated canonical
weights of a registered model), `parity_ports(name, frameworks, seed=0)` (its ports holding
those weights) and `parity_tolerance` (`--parity-tolerance`, else None: the policy). docs/own-model.md shows them in a user's tests.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from . import tolerance as policy
from .adapters import adapter, adapter_for
from .calibrate import seeded_input, seeded_reference
from .catalogue import registry
from .inference.layerwise import compare
from .train import judge
from .train.loop import train_steps

_OPTION = {"tolerance": None}  # --parity-tolerance, read when pytest configures


def assert_same_function(reference, candidate, inputs=None, *, tolerance=None) -> None:
    """`candidate` (a model, or the path of an ONNX file) computes what `reference` does on
    `inputs` (NCHW float32; default: two seeded images of a registered model's input size),
    within `tolerance` (default: --parity-tolerance, else the fp32 policy)."""
    if isinstance(candidate, (str, os.PathLike)):
        return assert_onnx_matches(reference, candidate, inputs, tolerance=tolerance)
    inputs = _inputs_for(reference, inputs)
    result = compare(reference, candidate, inputs, tolerance=_tolerance(tolerance), layerwise=None)
    if not result.passed:
        raise AssertionError(_comparison_table(result))


def assert_onnx_matches(model, path=None, inputs=None, *, tolerance=None) -> None:
    """The ONNX file at `path` (default: `model` exported now, as `parity export` does) computes
    in onnxruntime what `model` does natively."""
    from .onnx.runtime import run, session
    inputs = _inputs_for(model, inputs)
    native = adapter_for(model)
    with tempfile.TemporaryDirectory() as folder:
        if path is None:
            spec = native.spec(model)
            path = Path(folder) / "model.onnx"
            native.export_onnx(model, path, inputs.shape, spec.outputs if spec else ("logits",))
        outputs = run(session(str(path)), inputs)
    expected = native.run(model, inputs)
    limit = _tolerance(tolerance) or policy.threshold("fp32")
    if len(outputs) != len(expected):
        raise AssertionError(f"{path}: {len(outputs)} output(s), the model {len(expected)}")
    errors = [policy.measure(y, r).normalized for y, r in zip(outputs, expected)]
    if max(errors) > limit:
        rows = "\n".join(f"  output {i}: error {e:.1e}{'  > tolerance' if e > limit else ''}"
                         for i, e in enumerate(errors))
        raise AssertionError(f"{path} in onnxruntime differs from the {native.framework} model "
                             f"(tolerance {limit:.0e}):\n{rows}")


def assert_same_training_step(reference, candidate, batches=None, *, optimizer="sgd", steps=3, **hyper) -> None:
    """`candidate`, started from the `reference`'s weights, trains as it does: the same
    losses, first-step gradients, weights and BatchNorm statistics after `steps` steps on
    `batches` ((NCHW float32, int labels) pairs; default: seeded, for a registered model).
    As in train-check, the judge is a float64 copy of the reference (torch's, or a registered
    Keras or TF model's, rebuilt). The candidate's float32 run is held to the float32
    policies, or NOISE_FACTOR times the reference float32's own distance from the judge (from
    its weights and nudged copies) where that is larger; and
    where the candidate is a registered model, its float64 build is held to FLOAT64_POLICY in
    the step-1 categories, where a bug stands orders of magnitude above rounding. The
    candidate is trained in place."""
    initial = adapter_for(reference).state_dict(reference)
    adapter_for(candidate).load_state_dict(candidate, initial)
    batches = batches if batches is not None else _batches_for(reference, steps)
    verdicts = [_float32_verdict(reference, candidate, initial, batches, optimizer, hyper),
                _float64_verdict(reference, candidate, initial, batches, optimizer, hyper)]
    failed = [v for v in verdicts if v is not None and v.failed]
    if failed:
        title = (f"{adapter_for(candidate).framework} does not train as {adapter_for(reference).framework} does "
                 f"({optimizer}, {len(batches)} steps)")
        raise AssertionError("\n".join([title, *(v.table() for v in failed)]))


class _Verdict:
    """Per category: the worst error, its key and the tolerance; the first divergence and its cause."""

    def __init__(self, dtype, per_key, errors, worst, limits, cause_of):
        self.dtype, self.errors, self.worst, self.limits = dtype, errors, worst, limits
        self.failed = any(errors[c] > limits[c] for c in limits)
        self.first, self.cause = cause_of(per_key, limits, frozen_keys=set()) if self.failed else (None, None)

    def table(self) -> str:
        rows = [f"  {c:<11} {self.errors[c]:8.1e} {self.limits[c]:8.0e}  {self.worst[c] or '-'}"
                + ("  <- over" if self.errors[c] > self.limits[c] else "") for c in self.limits]
        return "\n".join([f"  {self.dtype}: {'category':<11} {'error':>8} {'tol':>8}  worst key", *rows,
                          f"  first divergence: {self.first or '-'}; likely cause: {self.cause or 'not recognised'}"])


def _float32_verdict(reference, candidate, initial, batches, optimizer, hyper):
    judge_model = adapter_for(reference).copy_in(reference, "float64", batches[0][0].shape[1:])
    exact = train_steps(judge_model, batches, optimizer=optimizer, **hyper)
    limits = judge.policies()
    undetermined = judge.sign_undetermined(exact.grads, limits["grad"]) if optimizer in judge.ADAPTIVE else {}
    noise = _reference_noise(reference, initial, batches, exact, undetermined, optimizer=optimizer, **hyper)
    limits = {c: max(limit, policy.NOISE_FACTOR * noise[c]) for c, limit in limits.items()}  # as train-check does
    ran = train_steps(candidate, batches, optimizer=optimizer, **hyper)
    return _Verdict("float32", *judge.compare(ran, exact, initial, undetermined), limits, judge.likely_cause)


def _float64_verdict(reference, candidate, initial, batches, optimizer, hyper):
    """The candidate rebuilt in float64 (a registered model only: an instance cannot be widened)
    against the float64 judge, in the categories of step 1 (the later ones drift with depth and
    size by summation order alone: train-check's reorder rule, docs/training.md)."""
    native = adapter_for(candidate)
    spec = native.spec(candidate)
    if spec is None:
        return None
    size = batches[0][0].shape[1:]
    wide = native.build(spec.name, input_size=size, dtype="float64")  # the candidate has trained: from `initial`
    native.load_state_dict(wide, initial)
    batches = [(np.asarray(x, np.float64), y) for x, y in batches]
    exact, ran = (train_steps(model, batches, optimizer=optimizer, with_first_step=True, **hyper)
                  for model in (adapter_for(reference).copy_in(reference, "float64", size), wide))
    adaptive = optimizer in judge.ADAPTIVE
    undetermined = judge.sign_undetermined(exact.grads, judge.FLOAT64_SIGN) if adaptive else {}
    limits = {c: float("inf") if c in judge.LATER  # not judged here (the float32 verdict holds them)
              else judge.FLOAT64_ADAPTIVE.get(c, judge.FLOAT64_POLICY) if adaptive else judge.FLOAT64_POLICY
              for c in judge.FLOAT64_CATEGORIES}
    verdict = _Verdict("float64", *judge.compare_float64(ran, exact, initial, undetermined), limits,
                       judge.likely_cause_float64)
    if verdict.failed and (rounding := native.float64_rounding(wide)):
        verdict.cause = f"{rounding}. Otherwise: {verdict.cause}"
    return verdict


def _reference_noise(reference, initial, batches, exact, undetermined, **hyper) -> dict:
    """The reference float32's own distance from the float64 judge, per category: from its
    weights and from PERTURBED_RUNS nudged copies of them, the worst, as train-check measures
    it (a ReLU input within rounding of zero flips in one run and not in another)."""
    model = adapter_for(reference).copy_in(reference, "float32", batches[0][0].shape[1:])
    noise = dict.fromkeys(judge.CATEGORIES, 0.0)
    starts = [initial] + [judge.nudged(initial, np.random.default_rng((0, run))) for run in range(judge.PERTURBED_RUNS)]
    for start in starts:
        adapter_for(model).load_state_dict(model, start)
        _, errors, _ = judge.compare(train_steps(model, batches, **hyper), exact, initial, undetermined)
        noise = {c: max(noise[c], errors[c]) for c in noise}
    return noise


def calibrated_state_of(name: str, input_size=None, seed: int = 0) -> dict:
    """Seeded weights with BatchNorm statistics calibrated on random inputs, as `parity check`
    uses them, of a registered model (catalogue or one's own), as canonical state: torch's,
    or without a torch builder its first framework's."""
    framework, model = seeded_reference(name, seed=seed, input_size=input_size)
    return adapter(framework).state_dict(model)


def ports_of(name: str, frameworks=None, seed: int = 0) -> dict:
    """{framework: the registered model `name` built there (default: in every framework it is
    written in)}, all holding the same calibrated weights."""
    state = calibrated_state_of(name, seed=seed)
    frameworks = frameworks or registry.get(name).frameworks
    models = {framework: adapter(framework).build(name) for framework in frameworks}
    for framework, model in models.items():
        adapter(framework).load_state_dict(model, state)
    return models


def _tolerance(given):
    return given if given is not None else _OPTION["tolerance"]


def _inputs_for(model, inputs):
    if inputs is not None:
        return np.asarray(inputs)
    return seeded_input((2, *_registered_spec(model, "inputs= (an NCHW float32 batch)").input_size))


def _batches_for(model, steps):
    spec = _registered_spec(model, "batches= ([(NCHW float32, int labels), ...])")
    classes = adapter_for(model).run(model, seeded_input((1, *spec.input_size)))[0].shape[1]
    return judge.make_batches(spec, classes, steps=steps, size=spec.input_size[1], batch=4, seed=0)


def _registered_spec(model, what_to_give):
    """The model's ModelSpec, or an error asking for what the defaults would have drawn from it."""
    spec = adapter_for(model).spec(model)
    if spec is None:
        raise ValueError(f"{adapter_for(model).model_name(model)}: not a registered model; give {what_to_give}")
    return spec


def _comparison_table(result) -> str:
    """What `parity diagnose` prints: the verdict, the layers up to the first divergent one."""
    lines = [f"{result.candidate} differs from {result.reference}: error {result.normalized_error:.1e} "
             f"> tolerance {result.tolerance:.1e}"]
    if result.first_divergent_layer:
        cause = f"; likely cause: {result.likely_cause}" if result.likely_cause else ""
        detail = f" ({result.cause_detail})" if result.cause_detail else ""
        lines.append(f"first divergent layer: {result.first_divergent_layer}{cause}{detail}")
    if result.layers:
        lines.append(f"  {'layer':<24} {'error':>8} {'tol':>8}")
        lines += [f"  {row.layer:<24} {row.normalized_error:8.1e} {row.tolerance:8.0e}"
                  + ("  <- first divergent" if row.layer == result.first_divergent_layer else "")
                  for row in result.layers]
    return "\n".join(lines)


# --- the pytest plugin ------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--parity-tolerance", type=float, default=None,
                     help="cnn-parity: the tolerance assert_same_function and assert_onnx_matches judge by "
                          "(default: the fp32 policy, 1e-5 on the CPU)")


def pytest_configure(config):
    _OPTION["tolerance"] = config.getoption("--parity-tolerance", None)


@pytest.fixture
def parity_tolerance():
    return _OPTION["tolerance"]


@pytest.fixture
def parity_inputs():
    """parity_inputs(shape, seed=0): a seeded NCHW float32 batch."""
    return lambda shape, seed=0: seeded_input(tuple(shape), seed)


@pytest.fixture
def parity_ports():
    """parity_ports(name, frameworks=None, seed=0): the ports of a registered model (in every
    framework it is written in, by default) holding the same seeded, BatchNorm-calibrated
    weights, by framework."""
    return ports_of


@pytest.fixture
def calibrated_state():
    """calibrated_state(name, input_size=None, seed=0): canonical, BatchNorm-calibrated weights."""
    return calibrated_state_of
