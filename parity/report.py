"""`parity report`: a self-contained HTML page (and Markdown) for a sweep of checks.

A heatmap of models x targets coloured by headroom, a per-layer error plot for every
failing target that was walked layer by layer, the learning curves and final epoch of any
`parity train` runs named with --runs, and the environment the numbers came from.
"""
import base64
import html
import importlib.metadata
import io
import json
import platform
import re

PACKAGES = ("torch", "tensorflow", "tensorflow-cpu", "keras", "onnx", "onnxruntime", "onnxruntime-gpu",
            "tf2onnx", "numpy")


def environment() -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu": _cpu_model()}
    for package in PACKAGES:
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    env.update(_gpu_and_tf32())
    return env


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _gpu_and_tf32():
    info = {"gpu": "none"}
    try:
        import torch
    except ImportError:
        return info
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["torch TF32 (matmul, cudnn)"] = f"{torch.backends.cuda.matmul.allow_tf32}, {torch.backends.cudnn.allow_tf32}"
    return info


def headroom_grid(payload):
    """(models, targets, {(model, target): (worst headroom, passed)})."""
    models, targets, cells = [], [], {}
    for model in payload["models"]:
        models.append(model["model"])
        if model.get("error"):
            cells[(model["model"], "error")] = (float("inf"), False)
            if "error" not in targets:
                targets.append("error")
        for r in model["results"]:
            if r["target"] not in targets:
                targets.append(r["target"])
            key = (model["model"], r["target"])
            worst, ok = cells.get(key, (0.0, True))
            cells[key] = (max(worst, r["headroom"]), ok and r["passed"])
    return models, targets, cells


def heatmap_png(payload) -> bytes:
    return _png(heatmap_figure(payload))


def heatmap_figure(payload):
    """The models x targets headroom grid as a matplotlib figure (log colour scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    models, targets, cells = headroom_grid(payload)
    grid = np.full((len(models), len(targets)), np.nan)
    for (m, t), (h, _) in cells.items():
        grid[models.index(m), targets.index(t)] = min(h, 10.0) if np.isfinite(h) else 10.0
    # Room for the model names, the colorbar and its label however few targets there are.
    fig, ax = plt.subplots(figsize=(max(6.0, 3.0 + 1.3 * len(targets)), max(2.6, 1.2 + 0.42 * len(models))),
                           layout="constrained")  # constrained: makes room for the colorbar's label too
    image = ax.imshow(np.log10(np.clip(grid, 1e-3, 10)), cmap="RdYlGn_r", vmin=-3, vmax=1, aspect="auto")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(models)), models)
    for (m, t), (h, ok) in cells.items():
        ax.text(targets.index(t), models.index(m), f"{h:.2f}" if np.isfinite(h) else "err",
                ha="center", va="center", fontsize=8, fontweight="normal" if ok else "bold")
    bar = fig.colorbar(image, ax=ax, ticks=[-3, -2, -1, 0, 1])
    bar.ax.set_yticklabels(["0.001", "0.01", "0.1", "1 (fails above)", "10+"])
    bar.set_label("headroom = error / tolerance\n(log scale, lower is better)")
    ax.set_title("headroom per model and target (1.0 = at the tolerance)")
    return fig


def layer_plot_png(model, target, layer_errors, tolerance) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [name for name, _ in layer_errors]
    errors = [max(err, 1e-12) for _, err in layer_errors]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.semilogy(range(len(errors)), errors, marker="o", markersize=3)
    ax.axhline(tolerance, color="red", linestyle="--", label=f"tolerance {tolerance:.0e}")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("normalized error")
    ax.set_title(f"{model} -> {target}: error per layer, first divergent: {names[-1] if names else '-'}")
    ax.legend()
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def training_run(directory) -> dict:
    """A `parity train --out DIR` run for the report: its model, final epoch per framework and
    curves.png. A directory that is not such a run is an error naming it."""
    from pathlib import Path
    directory = Path(directory)
    try:
        run = json.loads((directory / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{directory}: not a `parity train --out` directory (run.json: {exc})") from None
    png = directory / "curves.png"
    return {"directory": str(directory), "model": run["config"]["model"], "epochs_done": run["epochs_done"],
            "final": {f: c["epochs"][-1] for f, c in run["curves"].items() if c["epochs"]},
            "agreement": run.get("agreement", {}), "png": png.read_bytes() if png.exists() else None}


TRAINING_COLUMNS = ("framework", "loss", "train acc", "test loss", "test acc", "examples/s", "max |step loss - ref|",
                    "weights vs ref")


def _training_note() -> str:
    from .train.runs import AGREEMENT
    return f"Differences against the reference framework {AGREEMENT}"


def _training_rows(run) -> list:
    """[[cell, ...] per framework] in TRAINING_COLUMNS' order."""
    return [[f, f"{e['loss']:.4f}", f"{e['train_acc']:.3f}", f"{e['test_loss']:.4f}", f"{e['test_acc']:.3f}",
             f"{e['examples_per_s']:,.0f}", *_agreement_cells(run["agreement"].get(f))]
            for f, e in run["final"].items()]


def _agreement_cells(agree) -> list:
    """The two agreement columns of one framework; the reference framework has none."""
    if not agree:
        return ["reference", "reference"]
    weights = agree.get("final_weight_diff")
    return [f"{agree['max_step_loss_diff']:.1e}", "-" if weights is None else f"{weights:.1e}"]


def _training_html(runs) -> str:
    parts = []
    header = "".join(f"<th>{html.escape(c)}</th>" for c in TRAINING_COLUMNS)
    for run in runs:
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                       for row in _training_rows(run))
        parts.append(f"<h3>{html.escape(run['model'])}: {run['epochs_done']} epochs "
                     f"({html.escape(run['directory'])})</h3>"
                     + (_img(run["png"], f"learning curves {run['model']}") if run["png"] else "")
                     + f"<table class=training><tr>{header}</tr>{rows}</table><p>{html.escape(_training_note())}</p>")
    return "".join(parts)


def _training_markdown(runs) -> list:
    lines = []
    for run in runs:
        lines += ["", f"## Training: {run['model']}, {run['epochs_done']} epochs ({run['directory']})", "",
                  "| " + " | ".join(TRAINING_COLUMNS) + " |", "| --- |" + " ---: |" * (len(TRAINING_COLUMNS) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in _training_rows(run)]
        lines += ["", _training_note() + "."]
    return lines


def render_html(payload, env=None, runs=()) -> str:
    from .frameworks import installed
    env = env or environment()
    plots = installed("matplotlib")
    verdict = "PASS" if payload["passed"] else "FAIL"
    rows = []
    for model in payload["models"]:
        if model.get("error"):
            rows.append(f"<tr class=fail><td>{html.escape(model['model'])}</td><td colspan=6>could not be checked"
                        f"</td><td>ERROR {html.escape(model['error'])}</td></tr>")
        for r in model["results"]:
            status = "ok" if r["passed"] else f"FAIL {html.escape(r.get('error') or '')}"
            rows.append(f"<tr class={'ok' if r['passed'] else 'fail'}><td>{model['model']}</td>"
                        f"<td>{r['target']}</td><td>{r['output']}</td><td>{r['max_abs']:.2e}</td>"
                        f"<td>{r['normalized_error']:.2e}</td><td>{r['tolerance']:.0e}</td>"
                        f"<td>{r['headroom']:.2f}</td><td>{status}</td></tr>")
    failures = []
    for model in payload["models"] if plots else ():
        for r in model["results"]:
            if not r["passed"] and r.get("layer_errors"):
                first = html.escape(str(r.get("first_divergent_layer")))
                failures.append(f"<h3>{model['model']} &rarr; {r['target']}, first divergent: {first}</h3>" + _img(
                    layer_plot_png(model["model"], r["target"], r["layer_errors"], r["tolerance"]),
                    f"per-layer error {model['model']} {r['target']}"))
    env_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in env.items())
    checks = bool(payload["models"])  # a report of training runs alone judges no check: no verdict
    heading = (f'cnn-parity report <span class="verdict" id="verdict">{verdict}</span>' if checks
               else "cnn-parity report: training runs")
    checks_html = f"""<p>{len(payload['models'])} model{'' if len(payload['models']) == 1 else 's'}; reference: torch_impl on the same device; error = max|y - ref| / max|ref|;
headroom = error / tolerance (lower is better, over 1 fails).</p>
<h2>Headroom</h2>
{_img(heatmap_png(payload), "headroom heatmap") if plots else "<p>plots left out: matplotlib is not installed</p>"}
<h2>Results</h2>
<table id="results"><tr><th>model</th><th>target</th><th>output</th><th>max_abs</th><th>normalized error</th>
<th>tolerance</th><th>headroom</th><th>status</th></tr>
{''.join(rows)}
</table>
<h2>Failures, layer by layer</h2>
{''.join(failures) or ('<p>none</p>' if plots else '<p>left out: matplotlib is not installed</p>')}
""" if checks else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(re.sub("<[^>]+>", "", heading))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, td:nth-child(2), th {{ text-align: left; }} tr.fail {{ background: #fdd; }}
h1 .verdict {{ color: {'#080' if payload['passed'] else '#c00'}; }}
</style></head><body>
<h1>{heading}</h1>
{checks_html}{('<h2>Training runs</h2>' + _training_html(runs)) if runs else ''}
<h2>Environment</h2>
<table id="environment">{env_rows}</table>
</body></html>
"""


def render_markdown(payload, env=None, runs=()) -> str:
    env = env or environment()
    if not payload["models"]:
        lines = ["# cnn-parity report: training runs"]
    else:
        lines = [f"# cnn-parity report: {'PASS' if payload['passed'] else 'FAIL'}", "",
                 "Headroom = error / tolerance (lower is better, over 1 fails).", "",
                 "| model | target | output | max_abs | normalized error | tolerance | headroom | status |",
                 "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for model in payload["models"]:
        if model.get("error"):
            lines.append(f"| {model['model']} | - | - | - | - | - | - | ERROR {model['error']} |")
        for r in model["results"]:
            status = "ok" if r["passed"] else "FAIL" + (f" (first divergent: {r['first_divergent_layer']})"
                                                       if r.get("first_divergent_layer") else "")
            lines.append(f"| {model['model']} | {r['target']} | {r['output']} | {r['max_abs']:.2e} | "
                         f"{r['normalized_error']:.2e} | {r['tolerance']:.0e} | {r['headroom']:.2f} | {status} |")
    lines += _training_markdown(runs)
    lines += ["", "## Environment", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def write(payload, html_path, markdown_path=None, runs=()) -> None:
    """`runs`: training_run() dicts shown after the checks."""
    from .io import atomic_path
    env = environment()
    with atomic_path(html_path) as tmp:
        tmp.write_text(render_html(payload, env, runs), encoding="utf-8")
    if markdown_path:
        with atomic_path(markdown_path) as tmp:
            tmp.write_text(render_markdown(payload, env, runs), encoding="utf-8")
