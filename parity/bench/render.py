"""A bench result as a rich table, a JSON file and a bar chart."""
from __future__ import annotations

from pathlib import Path

from .result import OK, SKIPPED, UNSUPPORTED, BenchResult


def table(result: BenchResult):
    from rich.table import Table
    shape = "x".join(map(str, result.input_shape))
    t = Table(title=f"{result.model}  input {shape}  {result.device} {result.dtype}  "
                    f"median of {result.repeats} interleaved repeats (warm-up {result.warmup})")
    for col in ("runtime", "img/s", "median ms", "min-max ms", f"vs {result.baseline}", "error vs torch",
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
    import json

    from ..io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2, default=float))


def plot(result: BenchResult, path) -> None:
    """A horizontal bar chart of throughput per runtime, the baseline marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    measured = [r for r in result.runtimes if r.status == OK]
    colours = {"torch": "#ee4c2c", "keras": "#d00000", "tf": "#ff8f00", "onnx": "#005ced"}
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(measured) + 1.6))
    names = [r.runtime for r in measured][::-1]
    values = [r.throughput for r in measured][::-1]
    ax.barh(names, values, color=[colours[n.split(":")[0]] for n in names])
    for y, r in enumerate(measured[::-1]):
        label = f"{r.throughput:,.1f}" + (f"  ({r.ratio:.2f}x)" if r.ratio is not None else "")
        ax.text(r.throughput, y, " " + label, va="center", fontsize=8)
    base = next((r for r in measured if r.runtime == result.baseline), None)
    if base is not None:
        ax.axvline(base.throughput, color="grey", linestyle="--", linewidth=1)
    shape = "x".join(map(str, result.input_shape))
    ax.set_title(f"{result.model} {shape} {result.device} {result.dtype}: images/s (median)", fontsize=10)
    ax.set_xlabel("images per second")
    ax.set_xlim(0, max(values, default=1) * 1.35)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
