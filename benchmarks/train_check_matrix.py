#!/usr/bin/env python
"""`parity train-check` over every family's representative x optimizers x frozen backbone.

Each run is a child process (`parity train-check ... --json`), so memory is returned after
every model and one failure or timeout is recorded as that row's error; rows are appended to
--out as they finish (JSON lines), and a rerun skips the rows already there (resume).

    python benchmarks/train_check_matrix.py --out benchmarks/results/train_check_matrix.jsonl
    python benchmarks/train_check_matrix.py --out ... --markdown    # the table for RESULTS.md
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (model, size, batch): the representatives of tests/test_training.py
REPRESENTATIVES = [("lenet", 28, 4), ("alexnet", 64, 4), ("vgg11_bn", 32, 4), ("nin", 67, 4), ("googlenet", 64, 4),
                   ("inception_v3", 299, 2), ("resnet18", 64, 4), ("resnet50", 64, 4), ("resnet18_v2", 64, 4),
                   ("densenet121", 64, 4), ("unet", 32, 4), ("resnet18_fpn", 64, 4)]
RUNS = [("sgd", False), ("adam", False), ("adamw", False), ("sgd", True)]
CATEGORIES = ("loss", "grad", "later loss", "weight", "buffer")


def key(model, optimizer, frozen, onednn_off=False):
    return f"{model}/{optimizer}/{'frozen' if frozen else 'all'}" + ("/onednn-off" if onednn_off else "")


def run_one(model, size, batch, optimizer, frozen, timeout, onednn_off=False):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "parity", "train-check", model, "--optimizer", optimizer, "--size", str(size),
                   "--batch", str(batch), "--json", str(out)] + (["--freeze-backbone"] if frozen else [])
        began = time.perf_counter()
        try:
            env = {**os.environ, **({"TF_ENABLE_ONEDNN_OPTS": "0"} if onednn_off else {})}
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
            error = None if out.exists() else (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout} s"
        row = {"key": key(model, optimizer, frozen, onednn_off), "onednn_off": onednn_off, "model": model, "optimizer": optimizer, "frozen": frozen,
               "size": size, "batch": batch, "seconds": round(time.perf_counter() - began, 1), "error": error}
        if out.exists():
            row["result"] = json.loads(out.read_text())
        return row


def markdown(rows) -> str:
    lines = ["| model | optimizer | backbone | framework | first grads / tol | weights / tol | buffers / tol | verdict | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        head = (f"| {row['model']} ({row['size']} px){', oneDNN off' if row.get('onednn_off') else ''} | "
                f"{row['optimizer']} | {'frozen' if row['frozen'] else 'trained'}")
        if "result" not in row:
            lines.append(f"{head} | - | | | | error: {row['error']} | {row['seconds']} |")
            continue
        for r in row["result"]["results"]:
            if r["error"]:
                lines.append(f"{head} | {r['framework']} | | | | error: {r['error'][:120]} | {row['seconds']} |")
                continue
            cells = [f"{r['errors'][c]:.1e} / {r['tolerances'][c]:.0e}" for c in ("grad", "weight", "buffer")]
            verdict = "pass" if r["passed"] else f"FAIL at {r['first_divergence']}"
            lines.append(f"{head} | {r['framework']} | {' | '.join(cells)} | {verdict} | {row['seconds']} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSON lines, appended per run (and resumed from)")
    p.add_argument("--models", help="comma list (default: the 12 representatives)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per run")
    p.add_argument("--markdown", action="store_true", help="print the table of --out and stop")
    p.add_argument("--onednn-off", action="store_true", help="children run with TF_ENABLE_ONEDNN_OPTS=0")
    p.add_argument("--redo", help="comma list of row keys to run again (their old rows are dropped)")
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if args.markdown:
        print(markdown(rows))
        return 0
    if args.redo:
        redo = set(args.redo.split(","))
        rows = [r for r in rows if r["key"] not in redo]
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = {r["key"] for r in rows}
    wanted = set(args.models.split(",")) if args.models else None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for model, size, batch in REPRESENTATIVES:
        if wanted and model not in wanted:
            continue
        for optimizer, frozen in RUNS:
            if key(model, optimizer, frozen, args.onednn_off) in done:
                continue
            row = run_one(model, size, batch, optimizer, frozen, args.timeout, args.onednn_off)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            verdicts = [r["passed"] for r in row.get("result", {}).get("results", [])]
            print(f"{row['key']}: {row['error'] or ('pass' if verdicts and all(verdicts) else 'FAIL')} "
                  f"({row['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
