"""The `parity` command line: list, check, export, convert, summary."""
import argparse
import json
import os
import sys

from . import __version__
from .console import say
from .errors import unknown_choice
from .io import write_json

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# Exit codes (docs/cli.md): every command, every sweep.
EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
_KNOWN_ERRORS = (KeyError, ValueError, FileNotFoundError, RuntimeError, ImportError, MemoryError, OSError)


def main(argv=None) -> int:
    """0: everything checked passed; 1: a parity failure; 2: an error (bad usage, a missing
    framework that was asked for, a model or target that could not run, a crash)."""
    from . import frameworks
    args = _parse(_parser(), sys.argv[1:] if argv is None else list(argv))  # usage errors exit 2 here
    frameworks.set_quiet(not (args.verbose or frameworks.verbose_requested()))
    from rich.console import Console
    # soft_wrap: a message stays one line whatever the width (tables still fit it); redirected
    # output gets 120 columns for its tables.
    console = Console(width=None if sys.stdout.isatty() else 120, soft_wrap=True)
    try:
        return args.func(args, console) or EXIT_PASS
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a crash must exit 2, never 1 (a parity failure)
        err = Console(stderr=True, soft_wrap=True)
        if args.verbose or not isinstance(exc, _KNOWN_ERRORS):
            import traceback
            err.print(traceback.format_exc(), markup=False, highlight=False)
        from rich.text import Text  # the message as written: "[data]" in a hint is not markup
        err.print(Text.assemble(("error:", "red"), " ", _describe(exc)), highlight=False)
        return EXIT_ERROR


def _parse(parser, argv):
    """argparse, plus: no command prints the help (exit 0), and an unknown option is reported by
    the subcommand's own usage, with the closest of its options."""
    if not argv:
        parser.print_help()
        raise SystemExit(EXIT_PASS)
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = _subcommands(parser)[args.command]
        options = [o for action in sub._actions for o in action.option_strings]
        bad_options = [unknown_choice("option", e.split("=")[0], options) for e in extra if e.startswith("-")]
        sub.error("; ".join(bad_options) or f"unexpected arguments {' '.join(extra)}")  # an option's value: not news
    return args


def _subcommands(parser) -> dict:
    """{name: the subcommand's parser}."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _describe(exc) -> str:
    if type(exc) is KeyError and exc.args:  # KeyError's str() is the repr of its message
        return str(exc.args[0])
    return str(exc) if isinstance(exc, _KNOWN_ERRORS) and str(exc) else f"{type(exc).__name__}: {exc}"


def _parser():
    p = argparse.ArgumentParser(prog="parity", description="Prove three hand-written CNN implementations equal.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="keep TensorFlow's start-up log lines (also PARITY_VERBOSE=1)")
    p.add_argument("--version", action="version", version=f"parity (cnn-parity) {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="the catalogue: name, frameworks, parameters, default input")
    s.add_argument("--family")
    s.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("check", help="compare keras, tf and ONNX exports against the torch reference")
    s.add_argument("models", nargs="*")
    s.add_argument("--all", action="store_true", help="every catalogue model")
    s.add_argument("--family", help="every model of one family")
    s.add_argument("--frameworks", help="comma list of native targets (default: keras,tf, those installed)")
    s.add_argument("--no-onnx", action="store_true", help="skip the three ONNX exports")
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

    s = sub.add_parser("export", help="export one model to ONNX from one framework",
                       description="Export MODEL's graph from one framework to ONNX: input 'input' (N, C, H, W), "
                                   "batch dynamic, outputs named as catalogued. The weights written are FILE's "
                                   "with --weights, else seeded random weights with BatchNorm statistics "
                                   "calibrated on random inputs (the ones `parity check` uses): not trained.")
    s.add_argument("model", help="a catalogue name (parity list)")
    s.add_argument("--framework", default="torch", choices=["torch", "keras", "tf"],
                   help="whose graph is exported (default: torch)")
    s.add_argument("--out", required=True, metavar="FILE.onnx", help="the file written (whole, or not at all)")
    s.add_argument("--size", type=int, help="input height and width (default: the model's)")
    s.add_argument("--weights", metavar="FILE", help="the weights to export: .safetensors (canonical), .pt/.pth, "
                                                     ".weights.h5 or a .tfckpt directory (default: seeded, calibrated)")
    s.add_argument("--seed", type=int, default=0, help="seed of the default weights (default: 0; not with --weights)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("convert", help="convert weights between canonical safetensors and native files",
                       description="Formats by file name: .safetensors (canonical), .pt/.pth (torch), "
                                   ".weights.h5 (keras), .tfckpt directory (tf_impl).")
    s.add_argument("model")
    s.add_argument("source")
    s.add_argument("destination")
    s.add_argument("--from-tutorial", action="store_true",
                   help="SOURCE is a .pth state dict saved by the model's source tutorial's own code "
                        "(d2l's nn.Sequential indices, seed 004's names; docs/tutorials.md)")
    s.add_argument("--num-classes", type=int, help="build the model with this many classes (as the weights have)")
    s.add_argument("--in-channels", type=int, help="build the model for this many input channels")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("diagnose", help="layer-by-layer errors against torch, down to the first divergent layer")
    s.add_argument("model")
    s.add_argument("--frameworks", help="comma list (default: keras,tf, those installed)")
    s.add_argument("--size", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--weights", metavar="FILE", help="candidate weights (canonical); the reference keeps seeded ones")
    s.set_defaults(func=cmd_diagnose)

    s = sub.add_parser("selftest", help="inject known bugs and prove each is caught at the mutated layer")
    s.add_argument("models", nargs="*")
    s.add_argument("--all", action="store_true")
    s.add_argument("--family")
    s.add_argument("--frameworks", help="comma list (default: keras,tf, those installed)")
    s.add_argument("--size", type=int)
    s.add_argument("--json", metavar="FILE")
    s.set_defaults(func=cmd_selftest)

    s = sub.add_parser("report", help="an HTML (and Markdown) report of a sweep: heatmap, failures, environment")
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

    from .bench import register_cli as register_bench
    register_bench(sub)
    from .train.commands import register as register_training
    register_training(sub)

    s = sub.add_parser("summary", help="canonical weight names and shapes of a model")
    s.add_argument("model")
    s.add_argument("--framework", choices=["torch", "keras", "tf"],
                   help="default: torch, else the first of keras, tf that is installed")
    s.set_defaults(func=cmd_summary)
    return p


# --- list -----------------------------------------------------------------------------

def cmd_list(args, console):
    from rich.table import Table

    from . import registry
    from .frameworks import missing
    if missing("torch"):
        say(console, f"parameters left out: {missing('torch')} (they are counted on torch_impl)", "dim")
    rows = []
    for name in registry.names(args.family):
        spec = registry.get(name)
        rows.append({"model": name, "family": spec.family, "frameworks": ["torch", "keras", "tf"],
                     "parameters": count_parameters(name), "published": spec.published_params,
                     "input": list(spec.input_size), "outputs": list(spec.outputs), "tutorial": spec.tutorial})
    table = Table(title="cnn-parity catalogue")
    for col in ("model", "family", "frameworks", "parameters", "default input", "tutorial"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for r in rows:
        tutorial = r["tutorial"].split(":")[0] if r["tutorial"] else ""  # "seed 004"; whole in --json
        if r["parameters"] is None:
            table.add_row(r["model"], r["family"], ",".join(r["frameworks"]), "-", "x".join(map(str, r["input"])),
                          tutorial)
            continue
        mark = "" if r["published"] in (None, r["parameters"]) else " [red](published {:,})[/red]".format(r["published"])
        table.add_row(r["model"], r["family"], ",".join(r["frameworks"]), f"{r['parameters']:,}{mark}",
                      "x".join(map(str, r["input"])), tutorial)
    console.print(table)
    if args.json:
        write_json(args.json, rows)


def count_parameters(name: str) -> int | None:
    """Parameters of the torch_impl model, built on the meta device (no memory, no init time);
    None where torch is not installed."""
    from .frameworks import import_safely, missing
    if missing("torch"):
        return None
    torch = import_safely("torch")

    from .adapters import adapter
    with torch.device("meta"):
        model = adapter("torch").build(name)
    return sum(p.numel() for p in model.parameters())


# --- check ----------------------------------------------------------------------------

def cmd_check(args, console):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .adapters.base import check_dtype
    from .checker import check, plan
    from .frameworks import MissingFramework, missing
    check_dtype(args.dtype)
    names = _model_names(args)
    if missing("torch"):
        raise MissingFramework(f"torch: {missing('torch')} (the reference runs in torch_impl)")
    frameworks = _asked_frameworks(args.frameworks)
    planned, left_out = plan(frameworks, not args.no_onnx)
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
                         dtype=args.dtype, on_target=lambda _t: bar.advance(task))

        payload = _sweep(names, one, bar.console, args, done)
    return _finish(payload, console)


def _asked_frameworks(text):
    """The --frameworks list, or None for the default (what is installed); asking for a
    framework that is not installed is an error, not a silent omission."""
    if text is None:
        return None
    from .frameworks import MissingFramework, missing
    asked = tuple(f for f in text.split(",") if f)
    for f in asked:
        if f not in ("torch", "keras", "tf"):
            raise ValueError(f"{unknown_choice('framework', f, ('torch', 'keras', 'tf'))}; choose from torch, keras, tf")
        if missing(f):
            raise MissingFramework(f"--frameworks {text}: {f} cannot run here: {missing(f)}")
    return asked


def _model_names(args):
    from . import registry
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
    from . import registry
    _, c, h, w = entry["input_shape"]
    spec = registry.get(entry["model"])
    want = (c, args.size, args.size) if args.size else tuple(spec.input_size)
    dtype = {"float32": "fp32", "float64": "fp64"}.get(getattr(args, "dtype", "float32"))
    return (entry["input_shape"][0] == args.batch and (c, h, w) == want and entry["device"] == args.device
            and entry.get("dtype", "fp32") == dtype)


def _sweep(names, run_one, console, args, done=None):
    """Check each model; one that cannot be checked becomes an error row and the sweep goes
    on. With --json the file is rewritten (atomically) after every model, so a sweep that is
    killed loses only the model it was on."""
    from .checker import error_report
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


def _finish(payload, console) -> int:
    from .checker import exit_code
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
                   "top-1: same top class as torch; time in s")


# --- export, convert, summary ---------------------------------------------------------

def cmd_export(args, console):
    from . import export_onnx, registry
    from .adapters import adapter
    from .calibrate import calibrated_torch_model
    from .frameworks import MissingFramework, onnx_source_missing
    problem = onnx_source_missing(args.framework)
    if problem:
        raise MissingFramework(f"cannot export from {args.framework} here: {problem}")
    spec = registry.get(args.model)
    c, h, w = spec.input_size
    h = w = args.size or h
    from .inputs import refuse_unfit_size
    refuse_unfit_size(args.model, (c, h, w))
    if args.weights:
        state, source = _read_weights(args.model, args.weights), f"weights from {args.weights}"
    else:
        state = adapter("torch").state_dict(calibrated_torch_model(args.model, seed=args.seed, input_size=(c, h, w)))
        source = f"seeded random weights (seed {args.seed}, BatchNorm-calibrated, not trained; --weights FILE for yours)"
    model = adapter(args.framework).build(args.model, input_size=(c, h, w))
    adapter(args.framework).load_state_dict(model, state)
    export_onnx(model, args.out, (1, c, h, w))
    say(console, f"wrote {args.out}: {args.model} from {args.framework}, {source}; "
                 f"input 'input' (N, {c}, {h}, {w}), outputs {', '.join(spec.outputs)}")


def cmd_convert(args, console):
    from .io import load_state, save_state
    options = {k: v for k, v in (("num_classes", args.num_classes), ("in_channels", args.in_channels)) if v is not None}
    kind = _weight_format(args.destination)
    if args.from_tutorial:
        from .weights import from_tutorial
        if _weight_format(args.source) != "torch":
            raise ValueError(f"{args.source}: --from-tutorial reads the tutorial's torch state dict (.pt/.pth)")
        state = from_tutorial(args.model, load_state(args.source), **options)
    else:
        state = _read_weights(args.model, args.source, options)
    if kind == "canonical":
        save_state(state, args.destination, {"model": args.model})
    else:
        from .adapters import adapter
        model = adapter(kind).build(args.model, **options)
        adapter(kind).load_state_dict(model, state)
        adapter(kind).save_native(model, args.destination)
    say(console, f"{args.model}: {len(state)} tensors, {args.source} -> {args.destination}")


def _weight_format(path: str) -> str:
    path = str(path).rstrip("/")
    if path.endswith(".safetensors"):
        return "canonical"
    if path.endswith((".pt", ".pth", ".bin")):
        return "torch"
    if path.endswith(".weights.h5"):
        return "keras"
    if path.endswith(".tfckpt"):
        return "tf"
    raise ValueError(f"{path}: unknown weight format; use .safetensors, .pt/.pth, .weights.h5 or a .tfckpt directory")


def _read_weights(name, path, options=None):
    from .adapters import adapter
    from .io import load_state
    kind = _weight_format(path)
    if kind in ("canonical", "torch"):
        return load_state(path)
    model = adapter(kind).build(name, **(options or {}))
    adapter(kind).load_native(model, path)
    return adapter(kind).state_dict(model)


def cmd_diagnose(args, console):
    from rich.table import Table

    from . import registry
    from .adapters import adapter
    from .calibrate import calibrated_torch_model, seeded_input
    from .inputs import refuse_unfit_size
    from .io import load_state
    from .layerwise import compare
    spec = registry.get(args.model)
    c, h, w = spec.input_size
    h = w = args.size or h
    refuse_unfit_size(args.model, (c, h, w))
    reference = calibrated_torch_model(args.model, seed=args.seed, input_size=(c, h, w))
    state = load_state(args.weights) if args.weights else adapter("torch").state_dict(reference)
    x = seeded_input((1, c, h, w), args.seed + 1)
    failed = errors = False
    for framework in _native_frameworks(args.frameworks, console):
        try:
            model = adapter(framework).build(args.model, input_size=(c, h, w))
            adapter(framework).load_state_dict(model, state)
            result = compare(reference, model, x, layerwise=True)
        except Exception as exc:  # noqa: BLE001 - the next framework still gets diagnosed
            say(console, f"{args.model}: torch -> {framework} could not run: {_describe(exc)}", "red")
            errors = True
            continue
        failed |= not result.passed or result.first_divergent_layer is not None
        table = Table(title=f"{args.model}: torch -> {framework}, input 1x{c}x{h}x{w}")
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


def _native_frameworks(text, console) -> list:
    """--frameworks as asked, or keras and tf less what is not installed (said on the console)."""
    asked = _asked_frameworks(text)
    if asked is not None:
        return [f for f in asked if f != "torch"]
    from .frameworks import missing
    for f in ("keras", "tf"):
        if missing(f):
            say(console, f"{f} left out: {missing(f)}", "dim")
    return [f for f in ("keras", "tf") if not missing(f)]


def cmd_selftest(args, console):
    from rich.table import Table

    from . import registry
    from .frameworks import release_memory
    from .inputs import refuse_unfit_size
    from .selftest import selftest
    names = _model_names(args)
    native = _native_frameworks(args.frameworks, console)
    rows, errors = [], []
    for name in names:
        for framework in native:
            try:
                if args.size:
                    refuse_unfit_size(name, (registry.get(name).input_size[0], args.size, args.size))
                rows += selftest(name, framework, size=args.size)
            except Exception as exc:  # noqa: BLE001 - one bad model must not end the sweep
                errors.append({"model": name, "framework": framework, "error": _describe(exc)})
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


def _write_selftest_json(path, rows, errors):
    from dataclasses import asdict
    applicable = [d for d in rows if d.caught is not None]
    write_json(path, {"detected": sum(d.ok for d in applicable), "applicable": len(applicable),
                      "rows": [asdict(d) for d in rows], "errors": errors})


def cmd_report(args, console):
    from . import report
    from .checker import check, exit_code
    runs = [report.training_run(d) for d in args.runs]  # a bad directory fails before any sweep
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
        names = _model_names(args)
        payload = _sweep(names, lambda n: check(n, size=args.size, batch=args.batch, onnx=not args.no_onnx),
                         console, args)
    report.write(payload, args.out, args.markdown, runs)
    say(console, f"wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""))
    return exit_code(payload) if payload["models"] else 0


def cmd_summary(args, console):
    from rich.table import Table

    from . import build, state_dict
    from .frameworks import missing
    framework = args.framework or next((f for f in ("torch", "keras", "tf") if not missing(f)), "torch")
    state = state_dict(build(args.model, framework=framework))
    table = Table(title=f"{args.model} ({framework}): canonical weights")
    for col in ("key", "shape", "values"):
        table.add_column(col, justify="right" if col == "values" else "left")
    for key, value in state.items():
        table.add_row(key, str(tuple(value.shape)), f"{value.size:,}")
    table.caption = f"{len(state)} tensors, {sum(v.size for v in state.values()):,} values (running stats included)"
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
