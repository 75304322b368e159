"""`parity list` (the catalogue), `parity summary` (a model's canonical weights) and
`parity convert` (a model's weights between canonical safetensors and native files)."""
from ..adapters import adapter
from ..catalogue import registry
from ..console import say
from ..frameworks import import_safely, missing
from ..io import load_state, save_state, write_json
from . import from_tutorial, read_state, weight_format


def register(subparsers) -> None:
    """Add list, convert and summary to the `parity` command line's subparsers."""
    s = subparsers.add_parser("list", help="the catalogue: name, frameworks, parameters, default input")
    s.add_argument("--family")
    s.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    s.set_defaults(func=cmd_list)
    s = subparsers.add_parser("convert", help="convert weights between canonical safetensors and native files",
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
    s = subparsers.add_parser("summary", help="canonical weight names and shapes of a model")
    s.add_argument("model")
    s.add_argument("--framework", choices=["torch", "keras", "tf"],
                   help="default: torch, else the first of keras, tf that is installed")
    s.set_defaults(func=cmd_summary)


def cmd_list(args, console):
    from rich.table import Table

    if missing("torch"):
        say(console, f"parameters left out: {missing('torch')} (they are counted on torch_impl)", "dim")
    rows = []
    for name in registry.names(args.family):
        spec = registry.get(name)
        rows.append({"model": name, "family": spec.family, "frameworks": list(spec.frameworks),
                     "parameters": count_parameters(name), "published": spec.published_params,
                     "input": list(spec.input_size), "outputs": list(spec.outputs), "tutorial": spec.tutorial,
                     "origin": spec.origin})
    registered = any(r["origin"] != "catalogue" for r in rows)  # models of one's own: say where they came from
    table = Table(title="cnn-parity catalogue")
    for col in ("model", "family", "frameworks", "parameters", "default input", "tutorial") + ("origin",) * registered:
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for r in rows:
        tutorial = r["tutorial"].split(":")[0] if r["tutorial"] else ""  # "seed 004"; whole in --json
        parameters = "-" if r["parameters"] is None else f"{r['parameters']:,}"
        if r["published"] not in (None, r["parameters"]) and r["parameters"] is not None:
            parameters += " [red](published {:,})[/red]".format(r["published"])
        table.add_row(r["model"], r["family"], ",".join(r["frameworks"]), parameters, "x".join(map(str, r["input"])),
                      tutorial, *([r["origin"]] if registered else []))
    console.print(table)
    for problem in registry.LOAD_PROBLEMS:
        say(console, f"not loaded: {problem}", "red")
    if args.json:
        write_json(args.json, rows)


def count_parameters(name: str) -> int | None:
    """Parameters of the torch_impl model, built on the meta device (no memory, no init time);
    None where torch is not installed or the model has no torch builder (one of one's own)."""
    if missing("torch") or "torch" not in registry.get(name).frameworks:
        return None
    torch = import_safely("torch")

    with torch.device("meta"):
        model = adapter("torch").build(name)
    return sum(p.numel() for p in model.parameters())


def cmd_convert(args, console):
    options = {k: v for k, v in (("num_classes", args.num_classes), ("in_channels", args.in_channels)) if v is not None}
    kind = weight_format(args.destination)
    if args.from_tutorial:
        if weight_format(args.source) != "torch":
            raise ValueError(f"{args.source}: --from-tutorial reads the tutorial's torch state dict (.pt/.pth)")
        state = from_tutorial(args.model, load_state(args.source), **options)
    else:
        state = read_state(args.model, args.source, options)
    if kind == "canonical":
        save_state(state, args.destination, {"model": args.model})
    else:
        model = adapter(kind).build(args.model, **options)
        adapter(kind).load_state_dict(model, state)
        adapter(kind).save_native(model, args.destination)
    say(console, f"{args.model}: {len(state)} tensors, {args.source} -> {args.destination}")


def cmd_summary(args, console):
    from rich.table import Table

    written_in = registry.get(args.model).frameworks
    framework = args.framework or next((f for f in written_in if not missing(f)), written_in[0])
    state = adapter(framework).state_dict(adapter(framework).build(args.model))
    table = Table(title=f"{args.model} ({framework}): canonical weights")
    for col in ("key", "shape", "values"):
        table.add_column(col, justify="right" if col == "values" else "left")
    for key, value in state.items():
        table.add_row(key, str(tuple(value.shape)), f"{value.size:,}")
    table.caption = f"{len(state)} tensors, {sum(v.size for v in state.values()):,} values (running stats included)"
    console.print(table)
