"""`parity check`: one catalogue model, the torch_impl reference against every target."""
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import devices, tolerance
from ..adapters import adapter
from ..calibrate import seeded_input, seeded_reference
from ..catalogue import registry
from ..errors import InputError, ParityError
from ..frameworks import release_memory
from ..onnx.runtime import onnx_source_problem

NATIVE_TARGETS = ("keras", "tf")
ONNX_SOURCES = ("torch", "keras", "tf")


@dataclass
class TargetResult:
    target: str  # keras | tf | onnx:torch | onnx:keras | onnx:tf
    output: str
    max_abs: float
    normalized_error: float
    tolerance: float
    passed: bool
    headroom: float  # error / tolerance; 1.0 is the limit
    top1_agreement: float | None = None
    seconds: float = 0.0
    error: str | None = None  # a target that could not run at all
    skipped: str | None = None  # a target that does not apply (ONNX in float64): why; not judged
    first_divergent_layer: str | None = None  # filled for failing native targets
    likely_cause: str | None = None
    layer_errors: list | None = None  # [(layer, normalized error)] up to the divergent one


@dataclass
class ModelReport:
    model: str
    input_shape: list
    device: str
    dtype: str = "fp32"
    tf32: bool = False
    seed: int = 0
    reference_noise: float = 0.0  # torch fp32 vs torch fp64 on the same weights and input
    passed: bool = True
    results: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    error: str | None = None  # the model could not be checked at all (bad size, crash): an error row

    def to_json(self) -> dict:
        return asdict(self)


def error_report(name, exc, *, batch=1, size=None, device="cpu") -> ModelReport:
    """The row a sweep records for a model that could not be checked, so the sweep goes on."""
    spec = registry.find(name)
    c, h, w = spec.input_size if spec else (0, 0, 0)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
    return ModelReport(name, [batch, c, h, w], device, passed=False, error=f"{type(exc).__name__}: {exc}")


def exit_code(payload) -> int:
    """The documented exit code of a sweep (docs/cli.md): 0 every target passed, 1 a parity
    failure, 2 something could not be checked (a model or a target ended in an error)."""
    models = payload["models"]
    if any(m.get("error") or any(r.get("error") for r in m["results"]) for m in models):
        return 2
    return 0 if models and all(m["passed"] for m in models) else 1


def targets(frameworks=None, onnx=True):
    """The targets `check` runs here, in order (what is not installed is left out)."""
    return plan(frameworks, onnx)[0]


def plan(frameworks=None, onnx=True):
    """(targets, notes): the native frameworks asked for (default: keras and tf) and the ONNX
    exports of torch and of each of them, less what cannot run here, each left out with a note."""
    from .. import frameworks as installed
    asked = NATIVE_TARGETS if frameworks is None else tuple(frameworks)
    native, notes = [], []
    for f in asked:
        if f == "torch":
            continue
        problem = installed.missing(f)
        if problem:
            notes.append(f"{f} left out: {problem}")
        else:
            native.append(f)
    sources = []
    for source in ("torch", *native) if onnx else ():
        problem = installed.onnx_source_missing(source)
        if problem:
            notes.append(f"onnx:{source} left out: {problem}")
            continue
        problem = onnx_source_problem(source)  # e.g. Keras on a backend tf2onnx cannot trace
        if problem:
            notes.append(problem)
        else:
            sources.append(source)
    return native + [f"onnx:{f}" for f in sources], notes


def written_in(spec, planned, left_out):
    """The targets of the frameworks `spec` is written in; the others left out with a note."""
    absent = [t for t in planned if t.removeprefix("onnx:") not in spec.frameworks]
    notes = [f"{t} left out: {spec.name} has no {t.removeprefix('onnx:')} builder" for t in absent]
    return [t for t in planned if t not in absent], left_out + notes


def check(name: str, *, frameworks=None, onnx: bool = True, batch: int = 1, size=None,
          device: str = "cpu", seed: int = 0, weights=None, tf32: bool = False, workdir=None,
          on_target=None, dtype: str = "float32", onnx_files=()) -> ModelReport:
    """TF32 is off unless asked for (strict fp32); the report records the setting. `frameworks`
    defaults to keras and tf, less what is not installed (the report's notes say what was left out).
    dtype="float64": every framework builds and runs the model in float64 on the CPU, judged
    against torch float64 at the fp64 policy (no fp32 rounding left to allow for); the ONNX
    targets, float32 by the project's ONNX interface, are rows that say so."""
    from ..adapters.base import check_dtype
    exact = check_dtype(dtype) == "float64"
    spec = registry.get(name)
    c, h, w = spec.input_size
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
    shape = (batch, c, h, w)
    from ..inputs import refuse_unfit_size
    refuse_unfit_size(name, (c, h, w))
    from ..frameworks import MissingFramework, missing
    ref = spec.frameworks[0]  # torch; for a model of one's own without a torch builder, the first given
    if missing(ref):
        raise MissingFramework(f"{ref}: {missing(ref)} (the reference runs in {ref})")
    if ref != "torch" and device != "cpu":
        raise ParityError(f"{name}: with {ref} as the reference (no torch builder) the check runs on the CPU")
    planned, left_out = plan(frameworks, onnx)
    planned, left_out = written_in(spec, [t for t in planned if t != ref], left_out)
    planned += [f"file:{path}" for path in onnx_files]  # ONNX files of one's own, judged as the exports
    if not planned:
        raise ParityError(f"{name}: no target can run here ({'; '.join(left_out)})")
    frameworks = tuple(t for t in planned if ":" not in t)
    if exact and device != "cpu":
        raise ParityError(f"{name}: the float64 check runs on the CPU; got --device {device}")
    tol = tolerance.threshold("fp64" if exact else "fp32", device, tf32)
    report = ModelReport(name, list(shape), device, dtype="fp64" if exact else "fp32", tf32=tf32, seed=seed)
    if device != "cpu":
        devices.require("torch", device)
        devices.set_tf32(tf32, ("torch", *[f for f in frameworks if f != "torch"]))

    reference_model = reference_model_of(name, weights, seed, (c, h, w), ref)
    x = seeded_input(shape, seed + 1)
    if exact:
        # torch's cast in place (a float64 VGG is over a gigabyte); another framework's rebuilt
        reference_model = reference_model.double() if ref == "torch" else \
            adapter(ref).copy_in(reference_model, "float64", (c, h, w))
        x = x.astype(np.float64)
    state = adapter(ref).state_dict(reference_model)
    reference = adapter(ref).run(reference_model.to(device) if ref == "torch" else reference_model, x, device=device)
    if not exact and ref == "torch":  # a float64 reference is its own fp64 run: no noise to allow for
        report.reference_noise = tolerance.reference_noise(reference_model, x, reference)
    if ref != "torch":
        report.notes.append(f"reference: {ref}, the first framework {name} is written in (it has no torch builder)"
                            + ("" if exact else "; its own float32 noise is not measured"))
    policy, tol = tol, tolerance.effective(tol, report.reference_noise)
    if tol > policy:
        report.notes.append(f"reference noise {report.reference_noise:.1e} (torch fp32 vs fp64) exceeds the "
                            f"policy {policy:.0e}: judged at {tolerance.NOISE_FACTOR:g} x noise = {tol:.1e}")
    if unusable := tolerance.unusable_reference(policy, report.reference_noise):
        report.notes.append(unusable)
        report.passed = False
    if not all(np.isfinite(r).all() and np.abs(r).max() > 1e-6 for r in reference):
        report.notes.append("reference output is degenerate (all-zero or non-finite)")
        report.passed = False

    report.notes += left_out
    if exact and any(t.startswith("onnx:") for t in planned):
        report.notes.append("float64: the ONNX targets are skipped; the exports take and compute float32, "
                            "as the ONNX interface says (docs/onnx.md)")
    built = {ref: reference_model}  # each framework's model is built once, for its run and its export
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for target in planned:
            started = time.perf_counter()
            if exact and target.startswith(("onnx:", "file:")):
                report.results.append(TargetResult(target, "-", float("nan"), float("nan"), tol, True, 0.0,
                                                   skipped=FLOAT64_ONNX))
            else:
                try:
                    if exact:  # before the run: a float32 map into a float64 layer may break it
                        _require_float64_layers(_built(target, name, built, state, shape, device, dtype), x)
                    outputs, model = _run_target(target, name, built, state, x, Path(tmp), shape, spec, device,
                                                 tf32, dtype)
                    if exact:
                        _require_float64_outputs(outputs, spec.outputs)
                    _record(report, target, spec, outputs, reference, tol, time.perf_counter() - started)
                    if model is not None and not all(r.passed for r in report.results if r.target == target):
                        _explain(report, target, reference_model, model, x, tol)
                        if exact and (rounding := adapter(target).float64_rounding(model)):
                            report.notes.append(f"{target}: {rounding}")
                except OutputMismatch:  # the builders disagree on what the model returns: an error
                    raise
                except Exception as exc:  # a target that breaks is a failed target, not a crash
                    report.results.append(TargetResult(target, "-", float("nan"), float("inf"), tol, False,
                                                       float("inf"), error=f"{type(exc).__name__}: {exc}",
                                                       first_divergent_layer=getattr(exc, "layer", None)))
            if on_target:
                on_target(target)
    built.clear()
    release_memory()
    report.passed = report.passed and all(r.passed for r in report.results)
    return report


class Float64Error(TypeError):
    """A float64 model that computes somewhere in another dtype; `layer` where, if known."""

    def __init__(self, message, layer=None):
        super().__init__(message)
        self.layer = layer


def _require_float64_layers(model, x):
    """Every weighted layer of a float64 model takes and returns float64."""
    from .layerwise import narrowing
    narrowed = narrowing(model, x)
    if narrowed:
        layer, message = narrowed
        raise Float64Error(message, layer)


def _require_float64_outputs(outputs, names):
    for out_name, y in zip(names, outputs):
        if y.dtype != np.float64:
            raise Float64Error(f"output {out_name} is {y.dtype} in a float64 model: some op computes in {y.dtype}")


def reference_model_of(name, weights, seed, input_size, framework="torch"):
    """torch: seeded, BatchNorm-calibrated weights (or `weights`). Another framework (a model of
    one's own without a torch builder): its builder's seeded initialisation, BatchNorms
    calibrated (calibrate.seeded_reference), or `weights`."""
    from ..io import load_state
    if weights is None:
        return seeded_reference(name, seed=seed, input_size=input_size)[1]
    model = adapter(framework).build(name, input_size=input_size)
    adapter(framework).load_state_dict(model, load_state(weights))
    return model.eval() if framework == "torch" else model


FLOAT64_ONNX = "ONNX runs float32"  # the row's reason; the report's note says it whole


def _run_target(target, name, built, state, x, tmp, shape, spec, device, tf32, dtype="float32"):
    """(outputs, native model or None) for one target."""
    kind, _, source = target.partition(":")
    if kind == "file":  # an ONNX file of one's own: its weights are its own (--weights gives the reference's)
        from ..onnx.runtime import run_file
        return run_file(source, x, device, tf32), None
    model = _built(source or kind, name, built, state, shape, device, dtype)
    if kind != "onnx":
        with devices.placed(kind, device):
            return adapter(kind).run(model, x, device=device), model
    from ..onnx import runtime
    path = tmp / f"{name}.{source}.onnx"
    if source in ("keras", "tf"):  # big models in a child: an OOM kill becomes this target's error
        from ..export.guard import export_guarded
        export_guarded(source, model, name, state, path, shape, spec.outputs)
    else:
        adapter(source).export_onnx(model.cpu(), path, shape, spec.outputs)
    session = runtime.session(path, device, tf32)
    outputs = runtime.run(session, x)
    del session
    path.unlink()
    return outputs, None


def _built(framework, name, built, state, shape, device, dtype):
    """The framework's model with the reference's weights, built on first use."""
    if framework not in built:
        with devices.placed(framework, device):
            built[framework] = adapter(framework).build(name, input_size=shape[1:], dtype=dtype)
            adapter(framework).load_state_dict(built[framework], state)
    return built[framework]


def _explain(report, target, reference, model, x, tol):
    """Walk the layers of a failing native target to name where it first diverges."""
    from ..adapters import adapter_for
    from .layerwise import compare
    try:
        found = compare(reference.cpu() if adapter_for(reference).framework == "torch" else reference, model, x,
                        tolerance=tol, layerwise=True)
    except Exception as exc:  # the diagnosis must not hide the failure itself
        report.notes.append(f"{target}: layer walk failed: {type(exc).__name__}: {exc}")
        return
    for r in report.results:
        if r.target == target:
            r.first_divergent_layer, r.likely_cause = found.first_divergent_layer, found.likely_cause
            r.layer_errors = [(e.layer, e.normalized_error) for e in found.layers]
    if found.first_divergent_layer:
        report.notes.append(f"{target}: first divergent layer {found.first_divergent_layer} "
                            f"(likely {found.likely_cause}: {found.cause_detail})")


class OutputMismatch(InputError):
    """A framework's model returns other outputs (count or shapes) than the reference's."""


def _record(report, target, spec, outputs, reference, tol, seconds):
    shapes = lambda arrays: ", ".join(str(tuple(np.shape(a))) for a in arrays)  # noqa: E731
    if [np.shape(y) for y in outputs] != [np.shape(r) for r in reference]:
        raise OutputMismatch(f"{spec.name}: {target} returns {len(outputs)} output(s) {shapes(outputs)}, the "
                             f"reference (torch) {len(reference)}: {shapes(reference)}")
    for out_name, y, ref in zip(spec.outputs, outputs, reference):
        err = tolerance.measure(y, ref, classifier=spec.classifier)
        report.results.append(TargetResult(
            target, out_name, err.max_abs, err.normalized, tol, bool(err.normalized <= tol),
            err.normalized / tol, err.top1_agreement, round(seconds, 3)))
