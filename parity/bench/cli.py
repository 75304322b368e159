"""`parity bench` on the command line."""
from __future__ import annotations

import contextlib

from .measure import bench
from .render import plot, table, write_json
from .result import DTYPES, RUNTIMES


def register_cli(subparsers) -> None:
    """Add `parity bench` to the `parity` command line's subparsers."""
    s = subparsers.add_parser("bench", help="throughput and latency of every runtime, interleaved on one input",
                              description="Runtimes: " + ", ".join(RUNTIMES) + ". --frameworks takes families "
                                          "(torch, keras, tf, onnx) and/or runtime names.")
    s.add_argument("model")
    s.add_argument("--frameworks", default=None,
                   help="comma list of families or runtimes (default: every runtime whose packages are "
                        "installed; the others are named under the table)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    s.add_argument("--size", type=int, help="input height and width (default: the model's)")
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--baseline", choices=list(RUNTIMES),
                   help="the runtime ratios are against (default: torch, or a model of one's own's first framework)")
    tf32 = s.add_mutually_exclusive_group()
    tf32.add_argument("--tf32", dest="tf32", action="store_const", const=True, default=None,
                      help="allow TF32 in every runtime (default: each framework's own default, recorded)")
    tf32.add_argument("--strict", dest="tf32", action="store_const", const=False,
                      help="TF32 off in every runtime")
    s.add_argument("--no-compile", action="store_true", help="leave torch.compile out (slow to compile on a CPU)")
    s.add_argument("--threads", type=int, help="intra-op threads in every runtime (default: each framework's own)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", metavar="FILE", help="write the result as JSON")
    s.add_argument("--plot", metavar="FILE.png", help="write a bar chart of throughput")
    s.set_defaults(func=cmd_bench)


def cmd_bench(args, console) -> int:
    from rich.status import Status
    with Status("preparing", console=console) if console.is_terminal else contextlib.nullcontext() as status:
        result = bench(args.model, frameworks=args.frameworks, device=args.device, batch=args.batch,
                       dtype=args.dtype, size=args.size, repeats=args.repeats, warmup=args.warmup,
                       baseline=args.baseline, tf32=args.tf32, compile=not args.no_compile,
                       threads=args.threads, seed=args.seed,
                       on_progress=(lambda m: status.update(m)) if status is not None else None)
    console.print(table(result))
    if args.json:
        write_json(result, args.json)
    if args.plot:
        plot(result, args.plot)
    if result.failed:
        console.print("[red]not measured:[/red] " + ", ".join(f"{t.runtime} ({t.status})" for t in result.failed))
        return 1
    return 0
