"""The training commands: `parity train-check`, `train`, `finetune` and `predict`, each a
register_* (its options) and a cmd_* (its handler). `--replicas N` is chosen here, in one
place (add_replicas), for `train` and `train-check`: one process, or data-parallel."""
import functools
import json
from dataclasses import asdict
from pathlib import Path

from ..catalogue.registry import get
from ..console import say
from ..errors import unknown_choice
from ..frameworks import missing
from ..io import atomic_path, write_json
from . import check
from .check import train_check
from .data import read_class_indices
from .finetune import finetune_state
from .judge import DEFAULT_HYPER
from .parallel import check as parallel_check
from .parallel import runs as parallel_runs
from .parallel.check import RULES, distributed_check
from .parallel.engines import FRAMEWORKS
from .parallel.runs import summary, train_data_parallel
from .predict import predict, read_weights, select_frameworks
from .runs import CONTROL_NOISE, RunConfig, agreement, run, set_threads, side_by_side_table


def add_replicas(parser, single, data_parallel, help) -> None:
    """`--replicas N` on a command that runs data-parallel when N > 1: the one place where
    `train` and `train-check` choose between their one-process and data-parallel handlers."""
    parser.add_argument("--replicas", type=int, default=1, help=help)
    parser.set_defaults(func=functools.partial(by_replicas, single, data_parallel))


def by_replicas(single, data_parallel, args, console) -> int:
    return (data_parallel if args.replicas > 1 else single)(args, console)


def register(subparsers) -> None:
    """Add train-check, predict, train and finetune to the `parity` command line's subparsers."""
    for add in (register_train_check, register_predict, register_train, register_finetune):
        add(subparsers)


# --- train-check ----------------------------------------------------------------------

def register_train_check(subparsers) -> None:
    """Add `parity train-check` to the `parity` command line's subparsers."""
    s = subparsers.add_parser("train-check", help="train K steps in torch, keras and tf from identical weights "
                                                  "and batches; compare losses, gradients, weights, BN statistics")
    s.add_argument("model")
    s.add_argument("--optimizer", default="sgd", choices=list(DEFAULT_HYPER))
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--frameworks",
                   help="comma list of keras, tf, and torch (torch_impl on --device; the judge is torch fp64 on the "
                        "CPU); default: the model's frameworks but its reference (keras,tf for the catalogue)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the frameworks train")
    s.add_argument("--freeze-backbone", action="store_true", help="train only the catalogue's head")
    s.add_argument("--size", type=int, help="input height and width (default: the model's first test size)")
    s.add_argument("--batch", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dtype",  # checked by cmd_train_check: a bad value is one line, exit 2
                   help="both (default on the CPU): the float64 check gives the verdict, the float32 one shows the "
                        "rounding a port lives with; float64 or float32 alone; float32 is the only one on CUDA")
    s.add_argument("--json", metavar="FILE", help="write the result as JSON")
    add_replicas(s, cmd_train_check, cmd_distributed_check,
                 "N > 1: data-parallel on each framework's engine (torch DDP, tf.distribute) compared with one "
                 "process; --frameworks then takes torch,keras,tf")
    s.add_argument("--sync-bn", action="store_true",
                   help="with --replicas: synchronized BatchNorm where the engine has it on the device")


DTYPE_RUNS = {"both": ("float64", "float32"), "float64": ("float64",), "float32": ("float32",)}


def refuse_unknown_dtype(args) -> None:
    if args.dtype is not None and args.dtype not in DTYPE_RUNS:
        raise ValueError(f"--dtype must be both, float64 or float32; got {args.dtype!r}")


def cmd_train_check(args, console) -> int:
    refuse_unknown_dtype(args)
    asked = args.frameworks if args.frameworks is not None else ",".join(get(args.model).ports)
    frameworks = [f.strip() for f in asked.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in ("torch", "keras", "tf")]
    if unknown:
        raise ValueError(f"--frameworks: {unknown_choice('framework', unknown[0], ('torch', 'keras', 'tf'))}; "
                         "choose from torch, keras, tf")
    if not frameworks:
        raise ValueError(f"--frameworks takes torch, keras and/or tf; got {args.frameworks!r}")
    dtype = args.dtype or ("both" if args.device == "cpu" else "float32")
    results = [train_check(args.model, optimizer=args.optimizer, steps=args.steps, frameworks=frameworks,
                           freeze=args.freeze_backbone, size=args.size, batch=args.batch, seed=args.seed,
                           device=args.device, dtype=d) for d in DTYPE_RUNS[dtype]]
    verdict = results[0]
    for result in results:
        role = None if len(results) == 1 else "the verdict" if result is verdict else "the rounding a port lives with"
        console.print(check.table(result, role))
        for r in result.results:
            if r.first_divergence:
                console.print(f"{r.label} ({result.dtype}): first divergence at [bold]{r.first_divergence}[/bold]; "
                              f"likely cause: {r.likely_cause}")
    if args.json:
        check.write_json(verdict, args.json, also=results[1:])
    if any(r.error for result in results for r in result.results):
        return 2
    return 0 if verdict.passed else 1


def cmd_distributed_check(args, console) -> int:
    """`parity train-check MODEL --replicas N` (parallel/check.py)."""
    refuse_unknown_dtype(args)
    frameworks = [f.strip() for f in (args.frameworks or "keras,tf").split(",") if f.strip()]
    if "torch" not in frameworks and "torch" in get(args.model).frameworks:
        frameworks = ["torch", *frameworks]  # torch is always checked, as in train-check
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"--frameworks: {unknown_choice('framework', unknown[0], FRAMEWORKS)}; "
                         f"choose from {', '.join(FRAMEWORKS)}")
    result = distributed_check(args.model, replicas=args.replicas, frameworks=frameworks, sync_bn=args.sync_bn,
                               steps=max(args.steps, 2), size=args.size, batch=args.batch if args.batch != 4 else None,
                               seed=args.seed, optimizer=args.optimizer)
    console.print(parallel_check.table(result))
    for rule in dict.fromkeys(r.rule for r in result.rows if r.rule):
        console.print(f"{rule}: {RULES[rule]}")
    for row in result.rows:
        if row.error:
            say(console, f"{row.framework}: {row.error}")
        if row.note:
            say(console, f"{row.framework}: {row.note}")
    if args.json:
        write_json(args.json, {**asdict(result), "passed": result.passed})
    if any(r.error for r in result.rows):
        return 2
    return 0 if result.passed else 1

# --- train ----------------------------------------------------------------------------

def register_train(subparsers) -> None:
    s = subparsers.add_parser("train", help="short training of one model in torch, keras and tf, side by side",
                              description="Data: 'digits' (scikit-learn's bundled 8x8 digits, no download), "
                                          "mnist:DIR / fashion-mnist:DIR (IDX .gz files) or an ImageFolder DIR.")
    s.add_argument("model")
    add_training_arguments(s)
    add_replicas(s, cmd_train, cmd_train_replicas, "N > 1: train data-parallel on each framework's engine "
                 "(torch DDP, MirroredStrategy), 1 and N replicas side by side (parity/train/parallel/runs.py)")


NORMALIZE_HELP = {"unit": "x", "half": "(x-0.5)/0.5", "imagenet": "ImageNet mean and std"}


def add_training_arguments(s, *, lr=0.003, normalize="half", out_help="runs/MODEL") -> None:
    s.add_argument("--frameworks", help="comma list (default: those installed of the model's, torch, keras, tf)")
    s.add_argument("--data", default="digits", metavar="SOURCE", help="digits | mnist:DIR | fashion-mnist:DIR | DIR")
    s.add_argument("--epochs", type=int, default=3)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--lr", type=float, default=lr)
    s.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw", "rmsprop"],
                   help="torch.optim's optimizer and meaning, in every framework (default adam)")
    s.add_argument("--momentum", type=float, help="sgd/rmsprop momentum (default: 0.9 for sgd, 0 for rmsprop)")
    s.add_argument("--weight-decay", type=float, default=0.0)
    s.add_argument("--schedule", choices=["step", "cosine"], help="per-epoch learning-rate schedule")
    s.add_argument("--size", type=int, help="input height and width (default: 28 for LeNet, 32 for others on digit "
                                            "data, the model's input on image folders)")
    s.add_argument("--normalize", choices=["unit", "half", "imagenet"], default=normalize,
                   help=f"pixel normalization (default: {normalize}, {NORMALIZE_HELP[normalize]})")
    s.add_argument("--augment", help="crop,flip | none (default: crop,flip on image folders, none on digit data)")
    s.add_argument("--limit", type=int, help="use at most N training and N test examples (seeded subset)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--threads", type=int, help="intra-op threads of torch and TF (default: each framework's own; "
                                               "1 helps on a busy machine, where two thread pools fight)")
    s.add_argument("--out", metavar="DIR", help=f"output directory (default: {out_help})")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    s.add_argument("--control", action="store_true",
                   help=f"also train torch-aa: torch (or the first framework) from weights perturbed by "
                        f"{CONTROL_NOISE:g} (relative), the "
                        f"drift any two exact implementations show (chaotic runs: ResNets at a high lr)")
    s.add_argument("--same-dropout", action="store_true",
                   help="draw the same dropout masks in every framework (slower; by default each framework "
                        "uses its own RNG, so runs of models with dropout drift apart from the first step)")
    s.add_argument("--json", metavar="FILE", help="also write the final table as JSON")


def config_from_args(args, **extra) -> RunConfig:
    if not get(args.model).classifier:
        raise ValueError(f"{args.model} is not a classifier (its outputs are maps); parity train and finetune "
                         f"train classifiers on labelled images; use parity train-check for it")
    set_threads(args.threads)
    frameworks, _ = select_frameworks(args.frameworks, args.model)
    if args.epochs < 1 or args.batch < 1:
        raise ValueError("--epochs and --batch must be at least 1")
    hyper = {"optimizer": args.optimizer, "lr": args.lr, "weight_decay": args.weight_decay,
             "schedule": args.schedule, "epochs": args.epochs}
    if args.optimizer in ("sgd", "rmsprop"):
        hyper["momentum"] = args.momentum if args.momentum is not None else 0.9 if args.optimizer == "sgd" else 0.0
    elif args.momentum is not None:
        raise ValueError(f"--momentum does not apply to {args.optimizer} (its betas play that role)")
    return RunConfig(model=args.model, frameworks=frameworks, data=args.data, epochs=args.epochs, batch=args.batch,
                     size=args.size, normalize=args.normalize, augment=args.augment, limit=args.limit,
                     seed=args.seed, device=args.device, out=args.out or str(Path("runs") / args.model),
                     hyper=hyper, control=args.control, same_dropout=args.same_dropout, **extra)


def cmd_train(args, console) -> int:
    _, notes = select_frameworks(args.frameworks, args.model)
    for note in notes:
        say(console, note, "yellow")
    config = config_from_args(args)
    curves = run(config, console, resume=args.resume)
    finish(config, curves, console, args.json)
    return 0


def finish(config, curves, console, json_path):
    console.print(side_by_side_table(config, curves))
    out = Path(config.out)
    say(console, f"wrote {out / 'run.json'}, {out / 'curves.png'}, best checkpoints in "
                 + ", ".join(str(out / f) for f in config.frameworks))
    if json_path:
        write_json(json_path, {"model": config.model, "frameworks": config.frameworks,
                               "final": {f: c.epochs[-1] for f, c in curves.items()},
                               "agreement": agreement(curves)})


def cmd_train_replicas(args, console) -> int:
    """`parity train MODEL --replicas N` (parallel/runs.py)."""
    refused = [flag for flag, on in (("--resume", args.resume), ("--control", args.control),
                                     ("--same-dropout", args.same_dropout)) if on]
    if refused:
        raise ValueError(f"--replicas does not take {', '.join(refused)}")
    wanted = [f for f in (args.frameworks or "").split(",") if f]
    args.frameworks = ",".join(f for f in wanted if f != "jax") or None
    config = config_from_args(args)
    config.frameworks = with_keras_on_jax(config.frameworks, args.frameworks, "jax" in wanted, console)
    runs = train_data_parallel(config, args.replicas, console)
    console.print(parallel_runs.table(config, runs, args.replicas))
    for replica_run in runs:
        if replica_run.error:
            say(console, f"{replica_run.framework} x{replica_run.replicas}: {replica_run.error}", "red")
    out = Path(config.out)
    say(console, f"wrote {out / 'replicas.json'} and the final checkpoints in "
                 + ", ".join(str(out / f / f"replicas-{n}") for f in config.frameworks for n in (1, args.replicas)))
    if args.json:
        write_json(args.json, summary(config, runs, args.replicas))
    return 2 if any(r.error for r in runs) else 0


def with_keras_on_jax(frameworks, asked, jax, console) -> list:
    """The frameworks to run: parity train's (with their notes), plus "jax" (Keras on JAX) where
    asked for and installed. --frameworks jax alone runs Keras on JAX only."""
    for note in select_frameworks(asked)[1]:
        say(console, note, "yellow")
    if not jax:
        return frameworks
    frameworks = frameworks if asked else []
    absent = missing("jax") or missing("keras")
    if absent and not frameworks:
        raise RuntimeError(f"no framework to run: jax left out: {absent}")
    if absent:
        say(console, f"jax left out: {absent}", "yellow")
    return frameworks + ([] if absent else ["jax"])

# --- finetune -------------------------------------------------------------------------

def register_finetune(subparsers) -> None:
    s = subparsers.add_parser("finetune", help="replace the head with N classes and train from pretrained weights",
                              description="Weights: canonical .safetensors, torchvision .pth or a keras.applications "
                                          "model file (.keras/.h5). The run's files are those of parity train.")
    s.add_argument("model")
    s.add_argument("--weights", required=True, metavar="FILE")
    s.add_argument("--classes", type=int, metavar="N", help="classes of the new head (default: the data's)")
    s.add_argument("--freeze-backbone", action="store_true", help="train only the head (ModelSpec.head)")
    add_training_arguments(s, lr=0.001, normalize="imagenet", out_help="runs/MODEL-finetune")
    s.set_defaults(func=cmd_finetune)


def cmd_finetune(args, console) -> int:
    spec = get(args.model)
    if args.freeze_backbone and not spec.head:
        raise ValueError(f"{args.model}: the catalogue declares no head, so there is no backbone to freeze")
    _, notes = select_frameworks(args.frameworks, args.model)
    for note in notes:
        say(console, note, "yellow")
    if args.out is None:
        args.out = str(Path("runs") / f"{args.model}-finetune")
    config = config_from_args(args, num_classes=args.classes, weights=str(args.weights))
    pretrained, _ = read_weights(args.weights, args.model)
    curves = run(config, console, resume=args.resume, freeze="backbone" if args.freeze_backbone else None,
                 initial_state=lambda input_size, n: finetune_state(config, pretrained, input_size, n))
    finish(config, curves, console, args.json)
    return 0

# --- predict --------------------------------------------------------------------------

def register_predict(subparsers) -> None:
    s = subparsers.add_parser("predict", help="top-k of images in each framework, with one set of weights",
                              description="Weights: canonical .safetensors (from parity train/convert), a torch "
                                          ".pth (loaded with weights_only=True) or a keras.applications model file. "
                                          "Preprocessing comes from the weight file's metadata when parity train "
                                          "wrote it, else from --size/--normalize (default: the model's input, "
                                          "imagenet normalization for 3 channels).")
    s.add_argument("model")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("--weights", required=True, metavar="FILE")
    s.add_argument("--classes", metavar="class_indices.json", help="class names (as parity train writes them)")
    s.add_argument("--frameworks", help="comma list (default: those installed of the model's, torch, keras, tf)")
    s.add_argument("--top", type=int, default=5, metavar="K")
    s.add_argument("--size", type=int, help="input height and width")
    s.add_argument("--normalize", choices=["unit", "half", "imagenet"])
    s.add_argument("--json", metavar="FILE", help="write the predictions as JSON")
    s.set_defaults(func=cmd_predict)


def cmd_predict(args, console) -> int:
    from rich.markup import escape
    from rich.table import Table

    get(args.model)
    if args.top < 1:
        raise ValueError(f"--top must be at least 1; got {args.top}")
    frameworks, notes = select_frameworks(args.frameworks, args.model)
    for note in notes:
        say(console, note, "yellow")
    classes = read_class_indices(args.classes) if args.classes else None
    results, prep, classes = predict(args.model, args.images, args.weights, frameworks=frameworks,
                                     classes=classes, top=args.top, size=args.size, normalize=args.normalize)
    for p in results:
        table = Table(title=f"{p.image}  ({args.model}, {prep.channels}x{prep.size}x{prep.size}, {prep.normalize})")
        table.add_column("rank", justify="right")
        for framework in frameworks:
            table.add_column(framework)
        for rank in range(len(p.top[frameworks[0]])):
            table.add_row(str(rank + 1), *(f"{p.top[f][rank][0]}  {p.top[f][rank][1]:.4f}" for f in frameworks))
        verdict = "[green]agree[/green]" if p.agree else "[red]DISAGREE[/red]"
        table.caption = f"{escape(p.preprocessing)}\n" \
                        f"frameworks {verdict} on the top-{len(p.top[frameworks[0]])}; largest probability " \
                        f"difference {p.max_prob_diff:.1e}"
        console.print(table)
    agree = all(p.agree for p in results)
    if args.json:
        payload = {"model": args.model, "frameworks": frameworks, "agree": agree, "classes": classes,
                   "preprocess": prep.to_metadata(),
                   "images": [{"image": p.image, "preprocessing": p.preprocessing, "agree": p.agree,
                               "max_prob_diff": p.max_prob_diff,
                               "top": {f: [{"class": c, "probability": v} for c, v in t] for f, t in p.top.items()}}
                              for p in results]}
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(payload, indent=2))
    return 0 if agree else 1
