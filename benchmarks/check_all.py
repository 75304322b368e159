#!/usr/bin/env python
"""`parity check --all` with its wall time and the memory of each model, sampled from /proc.

Runs `parity check --all --json F --resume` as a child and samples, twice a second, the
resident memory of the check process and of its largest child (the ONNX export children of
Keras and tf_impl). The check rewrites F after every model, so each sample is charged to the
model being checked: the one after those already in F. Writes F.memory.json beside F:
{model: {"seconds", "peak_rss_mb" (check process), "peak_child_rss_mb"}} and the wall time.

    python benchmarks/check_all.py --json benchmarks/results/check_all.json [-- extra check options]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def rss_mb(pid) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return 0.0


def children(pid) -> list:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found + [g for c in found for g in children(c)]


def models_done(path) -> list:
    try:
        return [m["model"] for m in json.loads(Path(path).read_text())["models"]]
    except (OSError, ValueError, KeyError):
        return []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True)
    p.add_argument("extra", nargs="*", help="more `parity check` options (after --)")
    args = p.parse_args(argv)
    memory_path = Path(args.json + ".memory.json")
    memory = json.loads(memory_path.read_text()) if memory_path.exists() else {"models": {}, "wall_s": 0.0}
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "parity", "check", "--all", "--json", args.json, "--resume",
                                *args.extra])
    done = models_done(args.json)
    current = {"peak_rss_mb": 0.0, "peak_child_rss_mb": 0.0, "started": time.perf_counter()}
    while process.poll() is None:
        time.sleep(0.5)
        current["peak_rss_mb"] = max(current["peak_rss_mb"], rss_mb(process.pid))
        current["peak_child_rss_mb"] = max([current["peak_child_rss_mb"]] + [rss_mb(c) for c in children(process.pid)])
        now = models_done(args.json)
        for name in now[len(done):]:  # finished since the last sample: charge what was seen to it
            memory["models"][name] = {"seconds": round(time.perf_counter() - current["started"], 1),
                                      "peak_rss_mb": round(current["peak_rss_mb"]),
                                      "peak_child_rss_mb": round(current["peak_child_rss_mb"])}
            current = {"peak_rss_mb": 0.0, "peak_child_rss_mb": 0.0, "started": time.perf_counter()}
            memory["wall_s"] = round(memory.get("wall_s", 0.0) + 0.0, 1)
            memory_path.write_text(json.dumps(memory, indent=1))
        done = now
    memory["wall_s"] = round(memory.get("wall_s", 0.0) + time.perf_counter() - began, 1)
    memory["exit_code"] = process.returncode
    memory_path.write_text(json.dumps(memory, indent=1))
    print(f"parity check --all: exit {process.returncode}, {memory['wall_s']} s, "
          f"{len(memory['models'])} models measured -> {memory_path}")
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
