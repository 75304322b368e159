"""The inference commands: `parity check` (a sweep of models, resumable, one table each),
`parity diagnose` (layer by layer, down to the first divergent layer), `parity selftest`
(planted bugs, each caught at its layer) and `parity report` (a sweep as HTML and Markdown).
register() adds them; the handlers are cmd_*."""
import json
import os

from .. import tolerance as policy
from ..adapters import adapter, adapter_for
from ..adapters.base import check_dtype
from ..calibrate import seeded_input
from ..catalogue import registry
from ..console import say
from ..errors import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, describe, unknown_choice
from ..frameworks import MissingFramework, missing, release_memory
from ..inputs import refuse_unfit_size
from ..io import load_state, write_json
from ..report import training_run
from ..report import write as write_report
from .check import check, error_report, exit_code, plan, reference_model_of
from .layerwise import compare
from .selftest import selftest


def register(subparsers) -> None:
    """Add check, diagnose, selftest and report to the `parity` command line's subparsers."""
    s = subparsers.add_parser("check", help="compare keras, tf and ONNX exports against the torch reference")
    s.add_argument("models", nargs="*")
    s.add_argument("--all", action="store_true", help="every catalogue model")
    s.add_argument("--family", help="every model of one family")
    s.add_argument("--frameworks", help="comma list of native targets (default: keras,tf, those installed)")
    s.add_argument("--no-onnx", action="store_true", help="skip the three ONNX exports")
    s.add_argument("--onnx", nargs="+", metavar="FILE", default=[], dest="onnx_files",
                   help="ONNX files of one's own to judge against the reference as the exports are (one model; "
                        "the reference holds --weights FILE, else the seeded weights `parity export` writes)")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--size", type=int, help="input height and width (default: the model's)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--tf32", action="store_true", help="allow TF32 on GPU (default: strict fp32 everywhere)")
    s.add_argument("--dtype", default="float32",  # checked by cmd_check: a bad value is one line, exit 2
                   help="float32 (default) or float64: every framework in float64 on the CPU, judged at the fp64 "
                        "policy (no ONNX)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--weights", metavar="FILE", help="canonical .safetensors or torch .pth instead of seeded weights")
    s.add_argument("--json", metavar="FILE", help="write the results as JSON, rewritten after every model")
    s.add_argument("--resume", action="store_true",
                   help="skip the models the --json file already holds (an interrupted sweep)")
    s.set_defaults(func=cmd_check)

    s = subparsers.add_parser("diagnose", help="layer-by-layer errors against torch, down to the first divergent layer")
    s.add_argument("model")
    s.add_argument("--frameworks", help="comma list (default: keras,tf, those installed)")
    s.add_argument("--size", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--weights", metavar="FILE", help="candidate weights (canonical); the reference keeps seeded ones")
    s.add_argument("--onnx", metavar="FILE", help="diagnose this ONNX file of one's own instead: its tensors mapped "
                                                   "to layers by name (--weights FILE: the reference's weights)")
    s.set_defaults(func=cmd_diagnose)

    s = subparsers.add_parser("selftest", help="inject known bugs and prove each is caught at the mutated layer")
    s.add_argument("models", nargs="*")
    s.add_argument("--all", action="store_true")
    s.add_argument("--family")
    s.add_argument("--frameworks", help="comma list (default: keras,tf, those installed)")
    s.add_argument("--size", type=int)
    s.add_argument("--json", metavar="FILE")
    s.set_defaults(func=cmd_selftest)

    s = subparsers.add_parser("report", help="an HTML (and Markdown) report of a sweep: heatmap, failures, environment")
    s.add_argument("models", nargs="*")
    s.add_argument("--all", action="store_true")
    s.add_argument("--family")
    s.add_argument("--from", dest="source", metavar="RESULTS.json", help="render a `parity check --json` file")
    s.add_argument("--out", default="parity-report.html", metavar="FILE.html")
    s.add_argument("--markdown", metavar="FILE.md")
    s.add_argument("--size", type=int)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--no-onnx", action="store_true")
    s.add_argument("--runs", nargs="+", metavar="DIR", default=[],
                   help="also show these `parity train --out` runs: learning curves and final epoch")
    s.set_defaults(func=cmd_report)


def cmd_check(args, console):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    check_dtype(args.dtype)
    names = model_names(args)
    if missing("torch") and any(registry.get(n).frameworks[0] == "torch" for n in names):
        raise MissingFramework(f"torch: {missing('torch')} (the reference runs in torch_impl)")
    frameworks = asked_frameworks(args.frameworks)
    planned, left_out = plan(frameworks, not args.no_onnx)
    if args.onnx_files and len(names) != 1:
        raise ValueError(f"--onnx judges files against one model; got {len(names)} models")
    planned += args.onnx_files
    if not planned:
        why = "; ".join(left_out) or "torch is the reference; name keras or tf, or drop --no-onnx"
        raise RuntimeError(f"nothing to compare against the torch reference here ({why})")
    done = _resumed(args, names)
    todo = [n for n in names if n not in done]
    if done:
        say(console, f"resuming {args.json}: {len(done)} models already checked, {len(todo)} to go")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("checking", total=len(todo) * len(planned))

        def one(name):
            bar.update(task, description=f"checking {name}")
            return check(name, frameworks=frameworks, onnx=not args.no_onnx, batch=args.batch, size=args.size,
                         device=args.device, seed=args.seed, weights=args.weights, tf32=args.tf32,
                         dtype=args.dtype, on_target=lambda _t: bar.advance(task), onnx_files=args.onnx_files)

        payload = sweep(names, one, bar.console, args, done)
    return finish_sweep(payload, console)


def asked_frameworks(text):
    """The --frameworks list, or None for the default (what is installed); asking for a
    framework that is not installed is an error, not a silent omission."""
    if text is None:
        return None
    asked = tuple(f for f in text.split(",") if f)
    for f in asked:
        if f not in ("torch", "keras", "tf"):
            raise ValueError(f"{unknown_choice('framework', f, ('torch', 'keras', 'tf'))}; choose from torch, keras, tf")
        if missing(f):
            raise MissingFramework(f"--frameworks {text}: {f} cannot run here: {missing(f)}")
    return asked


def model_names(args):
    names = registry.names() if args.all else registry.names(args.family) if args.family else args.models
    if not names:
        raise ValueError("name at least one model, or use --all / --family")
    for name in names:
        registry.get(name)  # unknown names fail before any work starts
    return names


def _resumed(args, names) -> dict:
    """{model: its JSON entry} from the --json file of an interrupted sweep (with --resume).
    Entries that ended in an error, or were taken at another input shape, device or dtype, run again."""
    if not getattr(args, "resume", False):
        return {}
    if not args.json:
        raise ValueError("--resume needs --json FILE (the file the interrupted sweep wrote)")
    if not os.path.exists(args.json):
        return {}
    with open(args.json) as f:
        previous = json.load(f)
    return {m["model"]: m for m in previous.get("models", [])
            if m["model"] in names and not m.get("error") and _same_setup(m, args)}


def _same_setup(entry, args) -> bool:
    _, c, h, w = entry["input_shape"]
    spec = registry.get(entry["model"])
    want = (c, args.size, args.size) if args.size else tuple(spec.input_size)
    dtype = {"float32": "fp32", "float64": "fp64"}.get(getattr(args, "dtype", "float32"))
    return (entry["input_shape"][0] == args.batch and (c, h, w) == want and entry["device"] == args.device
            and entry.get("dtype", "fp32") == dtype)


def sweep(names, run_one, console, args, done=None):
    """Check each model; one that cannot be checked becomes an error row and the sweep goes
    on. With --json the file is rewritten (atomically) after every model, so a sweep that is
    killed loses only the model it was on."""
    done = dict(done or {})
    entries = []
    for name in names:
        if name in done:
            entries.append(done[name])
        else:
            try:
                report = run_one(name)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad model must not end the sweep
                report = error_report(name, exc, batch=getattr(args, "batch", 1), size=args.size,
                                      device=getattr(args, "device", "cpu"))
            console.print(report_table(report))
            entries.append(report.to_json())
        if getattr(args, "json", None):
            write_json(args.json, _payload(entries, complete=len(entries) == len(names)))
    return _payload(entries, complete=True)


def _payload(entries, complete):
    return {"passed": bool(entries) and all(m["passed"] for m in entries), "complete": complete,
            "models": entries}


def finish_sweep(payload, console) -> int:
    models = payload["models"]
    if len(models) > 1:
        errors = sum(bool(m.get("error")) for m in models)
        console.print(f"{sum(m['passed'] for m in models)}/{len(models)} models passed"
                      + (f", {errors} could not be checked" if errors else ""))
    return exit_code(payload)


def report_table(report):
    from rich.markup import escape
    from rich.table import Table
    shape = "x".join(map(str, report.input_shape))
    if report.error:
        table = Table(title=f"{report.model}  input {shape}  {report.device}  [red]ERROR[/red]")
        table.add_column("could not be checked")
        table.add_row(report.error)
        return table
    verdict = "[green]PASS[/green]" if report.passed else "[red]FAIL[/red]"
    table = Table(title=f"{report.model}  input {shape}  {report.device} {report.dtype}  {verdict}")
    multi = len({r.output for r in report.results if r.output != "-"}) > 1
    # Short headers so the table fits 80 columns; target names are never cut (no_wrap).
    columns = ["target", *(["output"] if multi else []), "max abs", "error", "tol", "headroom", "top-1", "time",
               "status"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("target", "output", "status") else "right",
                         no_wrap=col in ("target", "output"))
    for r in report.results:
        if r.skipped:  # the reason is the row's in the JSON and a note under the table
            table.add_row(r.target, *(["-"] if multi else []), *["-"] * 6, "[yellow]skipped[/yellow]")
            continue
        ok = "[green]ok[/green]" if r.passed else f"[red]FAIL[/red] {r.error or ''}"
        top1 = "-" if r.top1_agreement is None else f"{r.top1_agreement:.0%}"
        row = [r.target, *([r.output] if multi else []), f"{r.max_abs:.2e}", f"{r.normalized_error:.2e}",
               f"{r.tolerance:.0e}", f"{r.headroom:.2f}", top1, f"{r.seconds:.1f}", ok]
        table.add_row(*row)
    table.caption = "\n".join([*map(escape, report.notes), HEADROOM_LEGEND])
    return table


HEADROOM_LEGEND = ("error = max|y - ref| / max|ref|; headroom = error / tol, lower is better, over 1 fails; "
                   "top-1: same top class as the reference (torch); time in s")


def cmd_diagnose(args, console):
    from rich.table import Table

    spec = registry.get(args.model)
    c, h, w = spec.input_size
    h = w = args.size or h
    refuse_unfit_size(args.model, (c, h, w))
    ref = spec.frameworks[0]  # torch; without a torch builder, the first framework given (as check)
    reference = reference_model_of(args.model, None, args.seed, (c, h, w), ref)
    if args.onnx:
        return diagnose_file(args, reference, seeded_input((1, c, h, w), args.seed + 1), console)
    state = load_state(args.weights) if args.weights else adapter(ref).state_dict(reference)
    x = seeded_input((1, c, h, w), args.seed + 1)
    failed = errors = False
    for framework in [f for f in native_frameworks(args.frameworks, console) if f in spec.frameworks and f != ref]:
        try:
            model = adapter(framework).build(args.model, input_size=(c, h, w))
            adapter(framework).load_state_dict(model, state)
            result = compare(reference, model, x, layerwise=True)
        except Exception as exc:  # noqa: BLE001 - the next framework still gets diagnosed
            say(console, f"{args.model}: {ref} -> {framework} could not run: {describe(exc)}", "red")
            errors = True
            continue
        failed |= not result.passed or result.first_divergent_layer is not None
        table = Table(title=f"{args.model}: {ref} -> {framework}, input 1x{c}x{h}x{w}")
        for col in ("layer", "normalized error", "max_abs"):
            table.add_column(col, justify="left" if col == "layer" else "right")
        shown = result.layers if result.first_divergent_layer else sorted(
            result.layers, key=lambda e: -e.normalized_error)[:8]
        for e in shown:
            style = "red" if e.layer == result.first_divergent_layer else None
            table.add_row(e.layer, f"{e.normalized_error:.2e}", f"{e.max_abs:.2e}", style=style)
        table.caption = (f"first divergent layer: {result.first_divergent_layer} (likely {result.likely_cause}: "
                         f"{result.cause_detail})" if result.first_divergent_layer else
                         f"no layer leaves {result.tolerance:.0e}; output error {result.normalized_error:.2e} "
                         f"(the {len(shown)} worst of {len(result.layers)} layers shown)")
        console.print(table)
    return EXIT_ERROR if errors else EXIT_FAIL if failed else EXIT_PASS


def diagnose_file(args, reference, x, console):
    """`diagnose --onnx FILE`: the file's tensors that its names map to layers, against the reference."""
    from rich.table import Table

    from .onnxwise import compare_file
    if args.weights:
        adapter_for(reference).load_state_dict(reference, load_state(args.weights))
    result = compare_file(args.onnx, reference, x)
    table = Table(title=f"{args.model}: {adapter_for(reference).framework} -> {args.onnx}, input {'x'.join(map(str, x.shape))}")
    for col in ("layer", "normalized error"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer, error, _ in result.rows:
        shown = f"{error:.2e}" if error is not None else "other shape"
        table.add_row(layer, shown, style="red" if layer == result.first_divergent_layer else None)
    table.caption = (f"first divergent layer: {result.first_divergent_layer}" if result.first_divergent_layer
                     else f"no mapped layer leaves {policy.threshold('fp32'):.0e}")
    console.print(table)
    if result.unmapped:
        say(console, f"no tensor of the file is named for: {', '.join(result.unmapped)} (a conv folded into its "
                     f"BatchNorm shows as the BatchNorm)")
    if not result.rows:
        raise ValueError(f"{args.onnx}: none of its node or tensor names maps to a layer of {args.model}")
    return EXIT_FAIL if result.first_divergent_layer else EXIT_PASS


def native_frameworks(text, console) -> list:
    """--frameworks as asked, or keras and tf less what is not installed (said on the console)."""
    asked = asked_frameworks(text)
    if asked is not None:
        return [f for f in asked if f != "torch"]
    for f in ("keras", "tf"):
        if missing(f):
            say(console, f"{f} left out: {missing(f)}", "dim")
    return [f for f in ("keras", "tf") if not missing(f)]


def cmd_selftest(args, console):
    from rich.table import Table

    names = model_names(args)
    native = native_frameworks(args.frameworks, console)
    rows, errors = [], []
    for name in names:
        for framework in _ports_of(name, native):
            try:
                if args.size:
                    refuse_unfit_size(name, (registry.get(name).input_size[0], args.size, args.size))
                rows += selftest(name, framework, size=args.size)
            except Exception as exc:  # noqa: BLE001 - one bad model must not end the sweep
                errors.append({"model": name, "framework": framework, "error": describe(exc)})
        release_memory()  # `selftest --all` grew to 24 GB and was OOM-killed without this
        if args.json:  # after every model: a sweep that dies keeps what it found
            _write_selftest_json(args.json, rows, errors)
    table = Table(title="selftest: injected bugs")
    for col in ("model", "framework", "mutation", "expected layer", "named layer", "cause", "result"):
        table.add_column(col)
    for d in rows:
        verdict = ("[dim]n/a[/dim] " + d.note) if d.caught is None else \
            "[green]caught, named[/green]" if d.ok else "[red]missed[/red]" if not d.caught else "[red]wrong layer[/red]"
        table.add_row(d.model, d.framework, d.mutation, d.expected_layer or "-", d.named_layer or "-",
                      d.likely_cause or "-", verdict)
    for e in errors:
        table.add_row(e["model"], e["framework"], "-", "-", "-", "-", f"[red]error[/red] {e['error']}")
    applicable = [d for d in rows if d.caught is not None]
    good = sum(d.ok for d in applicable)
    table.caption = f"{good}/{len(applicable)} applicable mutations caught at the mutated layer " \
                    f"({100 * good / max(len(applicable), 1):.0f}%)"
    console.print(table)
    return EXIT_ERROR if errors else EXIT_PASS if good == len(applicable) else EXIT_FAIL


def _ports_of(name, frameworks):
    """The frameworks asked for that `name` is written in, but its reference (torch, or without
    a torch builder the first framework: selftest mutates a port, not its reference)."""
    return [f for f in frameworks if f in registry.get(name).ports]


def _write_selftest_json(path, rows, errors):
    from dataclasses import asdict
    applicable = [d for d in rows if d.caught is not None]
    write_json(path, {"detected": sum(d.ok for d in applicable), "applicable": len(applicable),
                      "rows": [asdict(d) for d in rows], "errors": errors})


def cmd_report(args, console):
    runs = [training_run(d) for d in args.runs]  # a bad directory fails before any sweep
    if args.source:
        with open(args.source) as f:
            try:
                payload = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{args.source}: not a `parity check --json` file ({exc})") from None
    elif runs and not (args.models or args.all or args.family):
        payload = {"models": [], "passed": True}  # a report of training runs alone
    else:
        if not (args.models or args.all or args.family):
            raise ValueError("name models, --all, --family, --from RESULTS.json or --runs DIR")
        names = model_names(args)
        payload = sweep(names, lambda n: check(n, size=args.size, batch=args.batch, onnx=not args.no_onnx),
                        console, args)
    write_report(payload, args.out, args.markdown, runs)
    say(console, f"wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""))
    return exit_code(payload) if payload["models"] else 0
