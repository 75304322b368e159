"""`parity export`: one catalogue model's graph from one framework to an ONNX file."""
from ..adapters import adapter
from ..calibrate import seeded_reference
from ..catalogue import registry
from ..console import say
from ..frameworks import MissingFramework, onnx_source_missing
from ..inputs import refuse_unfit_size
from ..weights import read_state


def register(subparsers) -> None:
    """Add export to the `parity` command line's subparsers."""
    s = subparsers.add_parser("export", help="export one model to ONNX from one framework",
                       description="Export MODEL's graph from one framework to ONNX: input 'input' (N, C, H, W), "
                                   "batch dynamic, outputs named as catalogued. The weights written are FILE's "
                                   "with --weights, else seeded random weights with BatchNorm statistics "
                                   "calibrated on random inputs (the ones `parity check` uses): not trained.")
    s.add_argument("model", help="a catalogue name (parity list)")
    s.add_argument("--framework", choices=["torch", "keras", "tf"],
                   help="whose graph is exported (default: torch, or a model of one's own's first framework)")
    s.add_argument("--out", required=True, metavar="FILE.onnx", help="the file written (whole, or not at all)")
    s.add_argument("--size", type=int, help="input height and width (default: the model's)")
    s.add_argument("--weights", metavar="FILE", help="the weights to export: .safetensors (canonical), .pt/.pth, "
                                                     ".weights.h5 or a .tfckpt directory (default: seeded, calibrated)")
    s.add_argument("--seed", type=int, default=0, help="seed of the default weights (default: 0; not with --weights)")
    s.set_defaults(func=cmd_export)


def cmd_export(args, console):
    spec = registry.get(args.model)
    args.framework = args.framework or spec.frameworks[0]
    problem = onnx_source_missing(args.framework)
    if problem:
        raise MissingFramework(f"cannot export from {args.framework} here: {problem}")
    c, h, w = spec.input_size
    h = w = args.size or h
    refuse_unfit_size(args.model, (c, h, w))
    if args.weights:
        state, source = read_state(args.model, args.weights), f"weights from {args.weights}"
    else:
        reference, made = seeded_reference(args.model, seed=args.seed, input_size=(c, h, w))
        state = adapter(reference).state_dict(made)
        source = f"seeded random weights (seed {args.seed}, BatchNorm-calibrated, not trained; --weights FILE for yours)"
    model = adapter(args.framework).build(args.model, input_size=(c, h, w))
    adapter(args.framework).load_state_dict(model, state)
    adapter(args.framework).export_onnx(model, args.out, (1, c, h, w), spec.outputs)
    say(console, f"wrote {args.out}: {args.model} from {args.framework}, {source}; "
                 f"input 'input' (N, {c}, {h}, {w}), outputs {', '.join(spec.outputs)}")
