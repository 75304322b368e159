#!/usr/bin/env python
"""Side-by-side benchmarks of the hand-written models against the frameworks' own ones.

Every comparison runs in one process and is interleaved (parity.bench.interleaved_timings:
each repeat times every contender once, round-robin), so the load of a shared machine
falls on all contenders alike. Figures are medians of the repeats after a warm-up.

Sections (--sections, default all):
  torchvision         torch_impl vs torchvision (same weights, eager and channels_last)
  keras_applications  keras_impl vs keras.applications (ResNet50, ResNet50V2, VGG16, DenseNet121)
  onnx                the three ONNX exports in onnxruntime: spread and node counts per op type
  transfer            weight transfer time between every pair of frameworks (target < 0.5 s)
  bench               `parity bench` tables (every runtime of the model)
  keras_torch         keras_impl on KERAS_BACKEND=torch vs torch_impl (`parity bench` in a child process)
  precision           fp16 / bf16 parity against the fp32 torch reference

    python benchmarks/run.py --models resnet50 --batches 1,8 --repeats 5 --threads 1 \\
        --markdown benchmarks/RESULTS.md

torchvision is optional (see docs/benchmarks.md for installing it beside this venv).
--markdown replaces each run section's block in the file (between its markers), keeps the rest.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from parity.bench import interleaved_timings, ort_session  # noqa: E402
from parity.calibrate import calibrated_torch_model, seeded_input  # noqa: E402

from benchmarks.export_bench import TITLE as EXPORT_TITLE, export_section  # noqa: E402

SECTIONS = ("torchvision", "keras_applications", "onnx", "export", "transfer", "bench", "keras_torch", "precision")
MARKER = "<!-- benchmarks/run.py section {section}: {edge} -->"
# A second instance of the reference, same weights, timed with the rest: its ratio is the
# noise floor of the comparison on this machine (an A/A test).
A_A = "reference again (A/A control)"

# keras.applications constructor -> (catalogue models timed against it, the catalogue model it converts to)
KERAS_APPLICATIONS = {
    "resnet50": ("ResNet50", ("resnet50_keras", "resnet50")),
    "resnet50_v2": ("ResNet50V2", ("resnet50_v2",)),
    "vgg16": ("VGG16", ("vgg16",)),
    "densenet121": ("DenseNet121", ("densenet121_keras",)),
}
TORCHVISION_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                      "wide_resnet50_2", "vgg16", "vgg16_bn", "densenet121", "googlenet", "inception_v3",
                      "alexnet")


# --- small helpers ----------------------------------------------------------------------

def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def median_ms(seconds) -> float:
    return statistics.median(seconds) * 1e3


def timed_rows(seconds: dict, batch: int, baseline: str):
    """[(name, median ms, img/s, ratio vs baseline)] from interleaved timings."""
    base = batch / statistics.median(seconds[baseline])
    rows = []
    for name, times in seconds.items():
        throughput = batch / statistics.median(times)
        rows.append((name, f"{median_ms(times):.1f}", f"{throughput:.1f}", f"{throughput / base:.2f}"))
    return rows


def release():
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- torchvision --------------------------------------------------------------------------

def import_torchvision():
    """(torchvision or None, note). A torchvision whose C++ ops cannot load against this torch
    (e.g. the CUDA build of the matching release beside a CPU torch) fails at import while
    registering fake kernels for torchvision::nms/qnms; the models are pure Python and need
    no custom op, so declare those two schemas and import again (benchmark only)."""
    try:
        import torchvision
        return torchvision, f"torchvision {torchvision.__version__}"
    except ImportError:
        return None, ("torchvision is not installed: torch_impl vs torchvision skipped "
                      "(docs/benchmarks.md: install it beside this venv)")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch
    library = torch.library.Library("torchvision", "DEF")  # kept alive on the module below
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    torchvision._parity_schema_library = library
    return torchvision, (f"torchvision {torchvision.__version__} (its C++ ops do not load against torch "
                         f"{torch.__version__}; models are pure Python, nms/qnms schemas declared to import it)")


def torchvision_section(args):
    import copy

    import torch
    torchvision, note = import_torchvision()
    say(note)
    if torchvision is None:
        return f"_{note}_", {"note": note}
    blocks, data = [f"{note}; torch {torch.__version__}, {torch.get_num_threads()} threads."], {"note": note}
    for name in [m for m in args.models if m in TORCHVISION_MODELS]:
        impl = calibrated_torch_model(name, input_size=(3, args.size, args.size))
        reference = getattr(torchvision.models, name)(weights=None).eval()
        reference.load_state_dict(impl.state_dict(), strict=True)  # same keys, same shapes
        for batch in args.batches:
            say(f"torchvision: {name} batch {batch}")
            x = torch.from_numpy(seeded_input((batch, 3, args.size, args.size), 1))
            x_cl = x.contiguous(memory_format=torch.channels_last)
            impl_cl, reference_cl = _channels_last(impl), _channels_last(reference)
            runners = {"torch_impl": _torch_call(impl, x), "torchvision": _torch_call(reference, x),
                       A_A: _torch_call(copy.deepcopy(reference), x),
                       "torch_impl channels_last": _torch_call(impl_cl, x_cl),
                       "torchvision channels_last": _torch_call(reference_cl, x_cl)}
            difference = float((runners["torch_impl"]() - runners["torchvision"]()).abs().max())
            seconds, _ = interleaved_timings(runners, args.repeats, args.warmup)
            rows = timed_rows(seconds, batch, "torchvision")
            blocks.append(f"**{name}**, batch {batch}, {args.size}x{args.size}, max |torch_impl - torchvision| = "
                          f"{difference:.1e}\n\n" + md_table(("contender", "median ms", "img/s", "vs torchvision"), rows))
            data[f"{name}/b{batch}"] = {"rows": rows, "max_abs_difference": difference}
        del impl, reference
        release()
    return "\n\n".join(blocks), data


def _channels_last(model):
    import copy

    import torch
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def _torch_call(model, x):
    import torch

    def call():
        with torch.inference_mode():
            return model(x)
    return call


# --- keras.applications -------------------------------------------------------------------

def keras_applications_section(args):
    import keras

    from parity.adapters import adapter
    from parity.weights import from_keras_applications
    blocks = [f"keras {keras.__version__}, {_keras_backend_line()}, NHWC input."]
    data = {}
    for name in args.models:
        if name not in KERAS_APPLICATIONS:
            continue
        constructor, ours = KERAS_APPLICATIONS[name]
        application = getattr(keras.applications, constructor)(weights=None, classifier_activation=None,
                                                                input_shape=(args.size, args.size, 3))
        converted_name, state = _convert(application, from_keras_applications)
        control = getattr(keras.applications, constructor)(weights=None, classifier_activation=None,
                                                            input_shape=(args.size, args.size, 3))
        control.set_weights(application.get_weights())
        models = {f"keras.applications.{constructor}": application, A_A: control}
        same_weights = {}
        for catalogue_name in ours:
            model = adapter("keras").build(catalogue_name, input_size=(3, args.size, args.size),
                                           input_shape=(args.size, args.size, 3))  # static, as the reference
            if catalogue_name == converted_name:
                adapter("keras").load_state_dict(model, state)
            same_weights[catalogue_name] = catalogue_name == converted_name
            models[f"keras_impl.{catalogue_name}"] = model
        for batch in args.batches:
            say(f"keras.applications: {constructor} batch {batch}")
            x = keras.ops.convert_to_tensor(seeded_input((batch, args.size, args.size, 3), 1))
            runners = {label: _keras_call(model, x) for label, model in models.items()}
            seconds, _ = interleaved_timings(runners, args.repeats, args.warmup)
            rows = timed_rows(seconds, batch, f"keras.applications.{constructor}")
            agreement = _agreement(runners, constructor, same_weights)
            blocks.append(f"**{constructor}**, batch {batch}, {args.size}x{args.size}. {agreement}\n\n"
                          + md_table(("contender", "median ms", "img/s", f"vs keras.applications.{constructor}"),
                                     rows))
            data[f"{constructor}/b{batch}"] = {"rows": rows, "same_weights": same_weights}
        del models, application, control
        release()
    return "\n\n".join(blocks), data


def _convert(application, from_keras_applications):
    try:
        return from_keras_applications(application)
    except ValueError:  # no converter (VGG16): timing does not depend on the weights' values
        return None, None


def _keras_backend_line() -> str:
    import keras
    if keras.backend.backend() == "torch":
        import torch
        return f"torch {torch.__version__} backend; every model called eagerly under torch.inference_mode"
    import tensorflow as tf
    return f"TensorFlow {tf.__version__} backend; every model called through tf.function (training=False)"


def _keras_call(model, x):
    """A timed call returning numpy: tf.function on the TF backend, inference mode on torch."""
    import keras
    if keras.backend.backend() == "torch":
        import torch

        def call():
            with torch.inference_mode():
                return keras.ops.convert_to_numpy(model(x, training=False))
        return call
    import tensorflow as tf
    function = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    return lambda: function(x).numpy()


def _agreement(runners, constructor, same_weights):
    reference = runners[f"keras.applications.{constructor}"]()
    parts = []
    for catalogue_name, same in same_weights.items():
        if same:
            out = runners[f"keras_impl.{catalogue_name}"]()
            error = float(np.abs(out - reference).max() / np.abs(reference).max())
            parts.append(f"keras_impl.{catalogue_name} holds the converted weights: normalized difference "
                         f"{error:.1e}")
        else:
            parts.append(f"keras_impl.{catalogue_name}: its own initial weights (a different architecture "
                         f"or no converter; timing does not depend on the values)")
    return "; ".join(parts) + "."


# --- ONNX exports -------------------------------------------------------------------------

def onnx_section(args):
    import tempfile

    import onnx

    from parity.adapters import adapter
    from parity.bench import export_in_subprocess
    blocks, data = [], {}
    for name in args.models:
        shape = (1, 3, args.size, args.size)
        state = adapter("torch").state_dict(calibrated_torch_model(name, input_size=shape[1:]))
        with tempfile.TemporaryDirectory() as tmp:
            say(f"onnx: exporting {name} from torch, keras and tf (child process)")
            paths = export_in_subprocess(name, state, shape, ("torch", "keras", "tf"), tmp)
            failed = {source: error for source, error in paths.items() if not isinstance(error, Path)}
            if failed:
                raise RuntimeError(f"ONNX export failed: {failed}")
            graphs = {source: onnx.load(str(path)) for source, path in paths.items()}
            counts = {source: _op_counts(graph) for source, graph in graphs.items()}
            same = _node_signature(graphs["keras"]) == _node_signature(graphs["tf"])
            transposes = {s: [_transpose_context(g, n) for n in g.graph.node if n.op_type == "Transpose"]
                          for s, g in graphs.items()}
            del graphs
            blocks.append(f"**{name}: ONNX nodes per op type**\n\n" + _counts_table(counts) + "\n\n"
                          f"Keras and TF exports: {'the same' if same else 'different'} node sequence "
                          f"(op types and attributes). Transposes: "
                          + "; ".join(f"onnx:{s}: {', '.join(t) or 'none'}" for s, t in transposes.items()) + ".")
            kernels = _optimized_op_sequences(paths, Path(tmp))
            same_kernels = len({tuple(sorted(ops)) for ops in kernels.values()}) == 1
            blocks.append("After onnxruntime's own optimization (ORT_ENABLE_ALL, CPU) the three graphs "
                          + (f"run the same {len(kernels['torch'])} kernels (op types and counts)." if same_kernels else
                             "differ: " + "; ".join(f"onnx:{s}: {_count_line(o)}" for s, o in kernels.items()) + "."))
            sessions = {f"onnx:{source}": ort_session(path, threads=args.threads) for source, path in paths.items()}
            sessions[A_A] = ort_session(paths["torch"], threads=args.threads)
            repeats = max(args.repeats, 15)  # onnxruntime calls are short: more repeats, steadier medians
            for batch in args.batches:
                say(f"onnx: timing {name} batch {batch}")
                x = seeded_input((batch, *shape[1:]), 1)
                runners = {label: (lambda s=s: s.run(None, {"input": x})) for label, s in sessions.items()}
                seconds, _ = interleaved_timings(runners, repeats, args.warmup)
                medians = {label: median_ms(times) for label, times in seconds.items() if label != A_A}
                spread = (max(medians.values()) - min(medians.values())) / min(medians.values())
                control = abs(median_ms(seconds[A_A]) - medians["onnx:torch"]) / medians["onnx:torch"]
                rows = timed_rows(seconds, batch, "onnx:torch")
                blocks.append(f"**{name}**, batch {batch}, median of {repeats}: spread of the three exports "
                              f"(max-min)/min = **{spread:.1%}**; the same onnx:torch file in a second session "
                              f"differs by {control:.1%} (A/A control)\n\n"
                              + md_table(("export", "median ms", "img/s", "vs onnx:torch"), rows))
                data[f"{name}/b{batch}"] = {"rows": rows, "spread": spread, "a_a": control}
            data[f"{name}/same_kernels"] = same_kernels
            data[f"{name}/op_counts"] = counts
            del sessions
    return "\n\n".join(blocks), data


def _count_line(ops) -> str:
    return ", ".join(f"{op.split(':')[-1]} {ops.count(op)}" for op in sorted(set(ops)))


def _optimized_op_sequences(paths, directory) -> dict:
    """{source: [op type, ...]} of each export as onnxruntime optimizes it for the CPU."""
    import onnx
    import onnxruntime as ort
    sequences = {}
    for source, path in paths.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # it warns that an ENABLE_ALL graph is hardware specific: known
        options.optimized_model_filepath = str(directory / f"{source}.optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        sequences[source] = [f"{n.domain}:{n.op_type}" for n in onnx.load(options.optimized_model_filepath).graph.node]
    return sequences


def _node_signature(model) -> list:
    import onnx
    return [(n.op_type, sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in n.attribute))
            for n in model.graph.node]


def _transpose_context(model, node) -> str:
    """'Transpose(perm) -> consumer op' for a Transpose node."""
    import onnx
    perm = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "perm"), None)
    consumers = [n.op_type for n in model.graph.node if node.output[0] in n.input]
    return f"Transpose{tuple(perm) if perm else ''} -> {', '.join(consumers) or 'output'}"


def _op_counts(model) -> dict:
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _counts_table(counts: dict) -> str:
    ops = sorted({op for per_source in counts.values() for op in per_source})
    rows = [(op, *(counts[s].get(op, 0) for s in counts)) for op in ops]
    rows.append(("**total**", *(sum(counts[s].values()) for s in counts)))
    return md_table(("op type", *(f"onnx:{s}" for s in counts)), rows)


# --- weight transfer ----------------------------------------------------------------------

def transfer_section(args):
    import parity
    blocks, data = [], {}
    for name in args.models:
        say(f"transfer: building {name} in three frameworks")
        models = {f: parity.build(name, framework=f, **({"input_size": (3, args.size, args.size)}
                                                        if f == "keras" else {}))
                  for f in ("torch", "keras", "tf")}
        rows = []
        for source, source_model in models.items():
            for target, target_model in models.items():
                if source == target:
                    continue
                read, write = _transfer_seconds(source_model, target_model, max(args.repeats, 3))
                total = read + write
                rows.append((f"{source} -> {target}", f"{read:.3f}", f"{write:.3f}", f"**{total:.3f}**",
                             "yes" if total < 0.5 else "**no**"))
                data[f"{name}/{source}->{target}"] = {"state_dict_s": read, "load_state_dict_s": write}
        parameters = sum(v.size for v in parity.state_dict(models["torch"]).values())
        blocks.append(f"**{name}** ({parameters:,} values incl. running stats), median of "
                      f"{max(args.repeats, 3)} transfers\n\n"
                      + md_table(("transfer", "state_dict s", "load_state_dict s", "total s", "< 0.5 s"), rows))
        del models
        release()
    return "\n\n".join(blocks), data


def _transfer_seconds(source_model, target_model, repeats):
    import parity
    reads, writes = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        state = parity.state_dict(source_model)
        middle = time.perf_counter()
        parity.load_state_dict(target_model, state)
        reads.append(middle - began)
        writes.append(time.perf_counter() - middle)
    return statistics.median(reads), statistics.median(writes)


# --- parity bench and precision -----------------------------------------------------------

def bench_section(args):
    from parity.bench import OK, bench
    blocks, data = [], {}
    for name in args.models:
        for batch in args.batches:
            say(f"bench: {name} batch {batch}")
            result = bench(name, batch=batch, size=args.size, repeats=args.repeats, warmup=args.warmup,
                           compile=args.compile, threads=args.threads)
            rows = []
            for r in result.runtimes:
                if r.status == OK:
                    rows.append((r.runtime, f"{r.throughput:.1f}", f"{r.latency_ms:.1f}", f"{r.ratio:.2f}",
                                 f"{r.error_vs_torch:.1e}", r.note or ""))
                else:
                    rows.append((r.runtime, "-", "-", "-", "-", f"{r.status}: {r.note}"))
            spread = "-" if result.onnx_spread is None else f"{result.onnx_spread:.1%}"
            blocks.append(f"**parity bench {name} --batch {batch} --size {args.size}**: ONNX export spread "
                          f"{spread}\n\n" + md_table(("runtime", "img/s", "median ms", "vs torch", "error vs torch",
                                                      "note"), rows))
            data[f"{name}/b{batch}"] = result.to_json()
            release()
    return "\n\n".join(blocks), data


def keras_torch_section(args):
    """keras_impl on KERAS_BACKEND=torch: `parity bench --frameworks torch,keras` and keras_impl vs
    keras.applications, both on that backend. Keras picks its backend at import, so this section
    runs in a child process (this script again) when the parent is on TensorFlow."""
    if os.environ["KERAS_BACKEND"] != "torch":
        return _in_torch_backend_child(args)
    from parity.bench import OK, bench
    blocks, data = [], {}
    for name in args.models:
        for batch in args.batches:
            say(f"keras_torch: bench {name} batch {batch}")
            result = bench(name, frameworks=("torch", "keras"), batch=batch, size=args.size, repeats=args.repeats,
                           warmup=args.warmup, compile=False, threads=args.threads)
            rows = [(r.runtime + (" (Keras on torch)" if r.runtime == "keras" else ""), f"{r.throughput:.1f}",
                     f"{r.latency_ms:.1f}", f"{r.ratio:.2f}", f"{r.error_vs_torch:.1e}")
                    for r in result.runtimes if r.status == OK]
            blocks.append(f"**parity bench {name} --frameworks torch,keras --batch {batch}** (KERAS_BACKEND=torch)"
                          f"\n\n" + md_table(("runtime", "img/s", "median ms", "vs torch", "error vs torch"), rows))
            data[f"{name}/b{batch}"] = result.to_json()
            release()
    text, applications = keras_applications_section(args)
    data["keras_applications"] = applications
    return "\n\n".join(blocks + [text]), data


def _in_torch_backend_child(args):
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "keras_torch.json"
        command = [sys.executable, __file__, "--sections", "keras_torch", "--models", ",".join(args.models),
                   "--batches", ",".join(map(str, args.batches)), "--size", str(args.size),
                   "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--json", str(out)]
        command += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": "torch"})
        if done.returncode != 0:
            raise RuntimeError(f"the KERAS_BACKEND=torch child failed with exit status {done.returncode}")
        section = json.loads(out.read_text())["keras_torch"]
    return section["text"], section["data"]


def precision_section(args):
    from parity.inference.precision import check_precision
    rows, data = [], {}
    for name in args.precision_models:
        for dtype in ("bf16", "fp16"):
            say(f"precision: {name} {dtype}")
            report = check_precision(name, dtype, size=args.precision_size)
            for r in report.results:
                error = "-" if r.normalized_error is None else f"{r.normalized_error:.2e}"
                verdict = {True: "pass", False: "**FAIL**", None: r.status}[r.passed]
                timing = "-" if r.seconds is None else f"{r.seconds * 1e3:.0f}" + (
                    f" / {r.fp32_seconds * 1e3:.0f}" if r.fp32_seconds else "")
                rows.append((name, dtype, r.runtime, error, f"{r.threshold:.0e}", verdict, timing, r.note or ""))
            data[f"{name}/{dtype}"] = report.to_json()
            release()
    header = (f"Against the fp32 torch_impl output, input 1x3x{args.precision_size}x{args.precision_size}; "
              f"ms = fastest of 3 low-precision calls / the same call in fp32.")
    return header + "\n\n" + md_table(("model", "dtype", "runtime", "normalized error", "threshold", "verdict",
                                       "ms (low / fp32)", "note"), rows), data


# --- driver -------------------------------------------------------------------------------

def machine_line(args) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    threads = args.threads or "framework defaults"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
            f"load average {load} at the start; threads per runtime: {threads}; "
            f"{time.strftime('%Y-%m-%d %H:%M')}; python {platform.python_version()}")


def write_markdown(path: Path, section: str, body: str) -> None:
    """Replace `section`'s block in `path` (between its markers), or append it; the rest stays."""
    from parity.io import atomic_path
    start, end = MARKER.format(section=section, edge="start"), MARKER.format(section=section, edge="end")
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{start}\n{body}\n{end}"
    if start in old and end in old:
        text = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        text = old.rstrip("\n") + "\n\n" + block + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--models", default="resnet50", help="comma list of catalogue models")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, help="intra-op threads in every runtime (default: the frameworks' own)")
    p.add_argument("--compile", action="store_true", help="include torch.compile in the bench section (slow on CPU)")
    p.add_argument("--precision-models", default="resnet18,resnet50")
    p.add_argument("--precision-size", type=int, default=64)
    p.add_argument("--markdown", metavar="FILE.md", help="write the tables into this file (generated part)")
    p.add_argument("--json", metavar="FILE.json")
    args = p.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.models = [m for m in args.models.split(",") if m]
    args.precision_models = [m for m in args.precision_models.split(",") if m]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    return args


def apply_threads(threads):
    """Intra-op threads for torch and TensorFlow, before TF starts (onnxruntime: per session)."""
    if not threads:
        return
    import torch
    torch.set_num_threads(threads)
    if os.environ["KERAS_BACKEND"] == "torch":  # the keras_torch child needs no TensorFlow
        return
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def main(argv=None) -> int:
    args = parse(argv)
    apply_threads(args.threads)
    runners = {"torchvision": torchvision_section, "keras_applications": keras_applications_section,
               "onnx": onnx_section, "export": export_section, "transfer": transfer_section, "bench": bench_section,
               "keras_torch": keras_torch_section, "precision": precision_section}
    titles = {"torchvision": "torch_impl vs torchvision", "keras_applications": "keras_impl vs keras.applications",
              "onnx": "The three ONNX exports in onnxruntime", "export": EXPORT_TITLE, "transfer": "Weight transfer",
              "bench": "parity bench (every runtime)", "keras_torch": "Keras on the torch backend",
              "precision": "fp16 / bf16 parity"}
    payload = {}
    for section in args.sections:
        machine, began = machine_line(args), time.perf_counter()
        text, data = runners[section](args)
        seconds = time.perf_counter() - began
        say(f"{section} done in {seconds:.0f} s")
        body = f"### {titles[section]}\n\n_Machine: {machine}; section took {seconds:.0f} s._\n\n{text}"
        payload[section] = {"machine": machine, "seconds": seconds, "text": text, "data": data}
        print(f"\n{body}\n", flush=True)
        if args.markdown:
            write_markdown(Path(args.markdown), section, body)
    if args.json:
        from parity.io import atomic_path
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(payload, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
