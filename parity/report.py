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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    models, targets, cells = headroom_grid(payload)
    grid = np.full((len(models), len(targets)), np.nan)
    for (m, t), (h, _) in cells.items():
        grid[models.index(m), targets.index(t)] = min(h, 10.0) if np.isfinite(h) else 10.0
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(targets), 0.9 + 0.42 * len(models)))
    image = ax.imshow(np.log10(np.clip(grid, 1e-3, 10)), cmap="RdYlGn_r", vmin=-3, vmax=1, aspect="auto")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(models)), models)
    for (m, t), (h, ok) in cells.items():
        ax.text(targets.index(t), models.index(m), f"{h:.2f}" if np.isfinite(h) else "err",
                ha="center", va="center", fontsize=8, fontweight="normal" if ok else "bold")
    fig.colorbar(image, ax=ax, label="log10 headroom (error / tolerance)")
    ax.set_title("headroom per model and target (1.0 = at the tolerance)")
    return _png(fig)


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
            "png": png.read_bytes() if png.exists() else None}


def _training_html(runs) -> str:
    parts = []
    for run in runs:
        rows = "".join(f"<tr><td>{html.escape(f)}</td><td>{e['loss']:.4f}</td><td>{e['train_acc']:.3f}</td>"
                       f"<td>{e['test_acc']:.3f}</td><td>{e['examples_per_s']:,.0f}</td></tr>"
                       for f, e in run["final"].items())
        parts.append(f"<h3>{html.escape(run['model'])}: {run['epochs_done']} epochs "
                     f"({html.escape(run['directory'])})</h3>"
                     + (_img(run["png"], f"learning curves {run['model']}") if run["png"] else "")
                     + "<table class=training><tr><th>framework</th><th>loss</th><th>train acc</th><th>test acc</th>"
                     f"<th>examples/s</th></tr>{rows}</table>")
    return "".join(parts)


def _training_markdown(runs) -> list:
    lines = []
    for run in runs:
        lines += ["", f"## Training: {run['model']}, {run['epochs_done']} epochs ({run['directory']})", "",
                  "| framework | loss | train acc | test acc | examples/s |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {f} | {e['loss']:.4f} | {e['train_acc']:.3f} | {e['test_acc']:.3f} | {e['examples_per_s']:,.0f} |"
                  for f, e in run["final"].items()]
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
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cnn-parity report: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, td:nth-child(2), th {{ text-align: left; }} tr.fail {{ background: #fdd; }}
h1 .verdict {{ color: {'#080' if payload['passed'] else '#c00'}; }}
</style></head><body>
<h1>cnn-parity report <span class="verdict" id="verdict">{verdict}</span></h1>
<p>{len(payload['models'])} models; reference: torch_impl on the same device; error = max|y - ref| / max|ref|.</p>
<h2>Headroom</h2>
{"" if not payload["models"] else _img(heatmap_png(payload), "headroom heatmap") if plots else "<p>plots left out: matplotlib is not installed</p>"}
<h2>Results</h2>
<table id="results"><tr><th>model</th><th>target</th><th>output</th><th>max_abs</th><th>normalized error</th>
<th>tolerance</th><th>headroom</th><th>status</th></tr>
{''.join(rows)}
</table>
<h2>Failures, layer by layer</h2>
{''.join(failures) or ('<p>none</p>' if plots else '<p>left out: matplotlib is not installed</p>')}
{('<h2>Training runs</h2>' + _training_html(runs)) if runs else ''}
<h2>Environment</h2>
<table id="environment">{env_rows}</table>
</body></html>
"""


def render_markdown(payload, env=None, runs=()) -> str:
    env = env or environment()
    lines = [f"# cnn-parity report: {'PASS' if payload['passed'] else 'FAIL'}", "",
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
