"""A bench result as a rich table, a JSON file and a bar chart."""
from __future__ import annotations

from pathlib import Path

from .result import OK, SKIPPED, UNSUPPORTED, BenchResult


def table(result: BenchResult):
    from rich.table import Table
    shape = "x".join(map(str, result.input_shape))
    t = Table(title=f"{result.model}  input {shape}  {result.device} {result.dtype}  "
                    f"median of {result.repeats} interleaved repeats (warm-up {result.warmup})")
    for col in ("runtime", "img/s", "median ms", "min-max ms", f"vs {result.baseline}", f"error vs {result.reference}",
                "setup s", "note"):
        t.add_column(col, justify="left" if col in ("runtime", "note") else "right")
    for r in result.runtimes:
        if r.status != OK:
            colour = "dim" if r.status in (SKIPPED, UNSUPPORTED) else "red"
            t.add_row(r.runtime, "-", "-", "-", "-", "-", "-", f"[{colour}]{r.status}: {r.note}[/{colour}]")
            continue
        error = "-" if r.error_vs_torch is None else f"{r.error_vs_torch:.1e}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        t.add_row(r.runtime, f"{r.throughput:,.1f}", f"{r.latency_ms:.2f}", f"{r.min_ms:.1f}-{r.max_ms:.1f}",
                  ratio, error, f"{r.setup_s:.1f}", r.note or "")
    caption = []
    if result.onnx_spread is not None:
        caption.append(f"ONNX export spread (max-min)/min: {result.onnx_spread:.1%}")
    caption.append(f"TF32: {result.tf32}" + ("" if result.device == "cuda" else " (not used on CPU)"))
    caption += result.notes
    t.caption = "\n".join(caption)
    return t


def write_json(result: BenchResult, path) -> None:
    from .. import io
    io.write_json(path, result.to_json())


COLOURS = {"torch": ("#ee4c2c", "torch_impl (PyTorch eager)"), "keras": ("#d00000", "keras_impl (Keras 3)"),
           "tf": ("#ff8f00", "tf_impl (TensorFlow 2)"), "onnx": ("#005ced", "ONNX export in onnxruntime")}


def plot(result: BenchResult, path) -> None:
    """figure(result) written to `path` (PNG, SVG or PDF by its suffix)."""
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    fig = figure(result)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def figure(result: BenchResult):
    """A horizontal bar chart of throughput per runtime on a log scale (runtimes can differ 100x),
    each bar labelled with its value and ratio to the baseline, a legend for the colours."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    measured = [r for r in result.runtimes if r.status == OK][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(measured) + 2.2))
    families = [r.runtime.split(":")[0] for r in measured]
    ax.barh([r.runtime for r in measured], [r.throughput for r in measured],
            color=[COLOURS.get(f, ("grey", f))[0] for f in families])
    for y, r in enumerate(measured):
        label = f"{r.throughput:,.1f}" + (f"  ({r.ratio:.2f}x)" if r.ratio is not None else "")
        ax.text(r.throughput * 1.05, y, label, va="center", fontsize=8)
    handles = [Patch(color=COLOURS[f][0], label=COLOURS[f][1]) for f in COLOURS if f in families]
    base = next((r for r in measured if r.runtime == result.baseline), None)
    if base is not None:
        handles.append(ax.axvline(base.throughput, color="grey", linestyle="--", linewidth=1,
                                  label=f"baseline: {result.baseline} (ratios in brackets)"))
    ax.set_xscale("log")
    values = [r.throughput for r in measured] or [1.0]
    ax.set_xlim(min(values) / 2, max(values) * 6)  # room for the labels right of the longest bar
    shape = "x".join(map(str, result.input_shape))
    ax.set_title(f"{result.model} {shape} {result.device} {result.dtype}: images/s (median)", fontsize=10)
    ax.set_xlabel("images per second (log scale)")
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
