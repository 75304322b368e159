"""The runs of `parity train` (and finetune): a short real training run of one model in torch, Keras and TF, side by side.

The three start from the same weights (torch's seeded initialization, transferred) and see
the same batches in the same order (parity.train.data.Loader). Each batch goes to every framework's
trainer (adapter.trainer, torch.optim vocabulary) in turn, so the running losses can be
compared step by step. Per epoch: loss, train accuracy, test loss and accuracy, examples per
second of each framework's training step. Outputs in --out (every file written atomically):

    run.json                    configuration, curves and epochs done (written last: the resume point)
    curves.json, curves.png     per-step loss and per-epoch accuracies of the three frameworks
    class_indices.json          {"0": class name, ...}
    <framework>/last.safetensors   canonical state after the last finished epoch (resume)
    <framework>/best.safetensors   the best test accuracy so far, canonical ...
    <framework>/best.pt | best.weights.h5 | best.tfckpt   ... and in the framework's own format

--resume continues from last.safetensors at the next epoch with a fresh optimizer (momentum
and Adam moments restart at zero; plain SGD resumes exactly).
"""
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..adapters import adapter
from ..adapters.step import Hyper, lr_at
from ..catalogue.registry import get
from ..frameworks import import_safely, installed
from ..io import atomic_path, load_state, read_metadata, save_state, write_json
from .data import Loader, Preprocess, open_source, parse_augment, write_class_indices
from .predict import softmax

NATIVE_FILES = {"torch": "best.pt", "keras": "best.weights.h5", "tf": "best.tfckpt"}
OPTIMIZER_FILE = "optimizer.safetensors"  # beside last.safetensors: what --resume restores
# --control: a second model of the reference framework (torch, else the first one trained),
# "<framework>-aa", whose start differs by float32 rounding (relative 1e-7); how far it drifts
# from the reference is how far any two exact implementations can drift.
CONTROL_SUFFIX, CONTROL_NOISE = "-aa", 1e-7


@dataclass
class RunConfig:
    model: str
    frameworks: list
    data: str = "digits"
    epochs: int = 3
    batch: int = 64
    size: int | None = None
    normalize: str = "half"
    augment: tuple = ()
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"
    hyper: dict = field(default_factory=dict)  # parity.adapters.step.Hyper fields
    num_classes: int | None = None  # None: the data's class count
    weights: str | None = None  # finetune: the pretrained file
    control: bool = False  # also train the reference's A/A control (CONTROL_SUFFIX)
    same_dropout: bool = False  # identical dropout masks in every framework (parity.adapters.step.DropoutMasks)


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    examples_per_s: float
    lr: float


@dataclass
class Curves:
    step_loss: list = field(default_factory=list)
    epochs: list = field(default_factory=list)  # [EpochStats as dict]
    best_epoch: int | None = None
    best_test_acc: float = -1.0
    weight_diff: float | None = None  # after the last epoch: max over tensors of max|w - w_ref| / max|w_ref|


def set_threads(threads: int | None) -> None:
    """Intra-op threads of torch and TensorFlow (TF's take effect only before its runtime starts)."""
    if not threads:
        return
    if installed("torch"):
        import_safely("torch").set_num_threads(threads)
    if installed("tf"):
        tf = import_safely("tf")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF already started in this process: its pools stay as they are
            pass


def run(config: RunConfig, console, *, resume=False, initial_state=None, freeze=None) -> dict:
    """Train every framework for config.epochs; returns {framework: Curves}.
    `initial_state(input_size, num_classes)`: the canonical state to start from (finetune);
    default: torch's seeded initialization."""
    out = Path(config.out)
    saved = _load_run(out) if resume else None
    if not resume and (out / "run.json").exists():
        raise ValueError(f"{out} already holds a run (run.json); pass --resume to continue it or choose another --out")
    if saved:
        _check_same_run(saved, config)
    data = open_data(config)
    num_classes = config.num_classes or len(data["split"].classes)
    if num_classes != len(data["split"].classes):
        raise ValueError(f"the model gets {num_classes} classes but {config.data} has {len(data['split'].classes)}")
    input_size = (data["prep"].channels, data["prep"].size, data["prep"].size)
    names = contenders(config)
    if saved:
        states = {f: _read_state(out / f / "last.safetensors") for f in names}
    else:
        state = initial_state(input_size, num_classes) if initial_state is not None else seeded_state(
            config.model, config.frameworks, input_size, num_classes, config.seed)
        states = {f: perturbed(state, config.seed) if f.endswith(CONTROL_SUFFIX) else state for f in names}
    models = {f: build_model(config.model, framework_of(f), input_size, num_classes, states[f]) for f in names}
    trainers = make_trainers(models, config, freeze)
    if saved:
        for f, trainer in trainers.items():
            restore_optimizer(trainer, out / f / OPTIMIZER_FILE)
    curves = {f: Curves(**saved["curves"][f]) for f in names} if saved else {f: Curves() for f in names}
    first = saved["epochs_done"] if saved else 0
    write_class_indices(data["split"].classes, out / "class_indices.json")
    meta = _metadata(config, data, num_classes)
    for epoch in range(first, config.epochs):
        stats = train_epoch(epoch, config, trainers, data, curves, console)
        for f in names:
            stats[f].test_loss, stats[f].test_acc = evaluate(framework_of(f), models[f], data["test"], config.device)
            curves[f].epochs.append(asdict(stats[f]))
        save_epoch(out, config, models, trainers, curves, epoch, meta)
        console.print(epoch_line(epoch, config, stats))
    return curves


def contenders(config) -> list:
    return [*config.frameworks, *([_reference(config.frameworks) + CONTROL_SUFFIX] if config.control else [])]


def framework_of(name: str) -> str:
    return name.removesuffix(CONTROL_SUFFIX)


def perturbed(state: dict, seed: int) -> dict:
    """Every weight times (1 + CONTROL_NOISE * N(0, 1)), seeded; BN statistics unchanged."""
    rng = np.random.default_rng([seed, 7])
    return {k: v if "running_" in k else (v * (1 + CONTROL_NOISE * rng.standard_normal(v.shape))).astype(v.dtype)
            for k, v in state.items()}


def open_data(config: RunConfig) -> dict:
    spec = get(config.model)
    split = open_source(config.data, seed=config.seed, limit=config.limit)
    channels = spec.input_size[0]
    size = spec.training_size(config.size or default_size(spec, split.small))
    prep = Preprocess(size, channels, config.normalize)
    augment = parse_augment(config.augment) if config.augment is not None else (() if split.small else ("crop", "flip"))
    n = len(split.classes)
    train = Loader(split.train, prep, batch_size=config.batch, shuffle=True, augment=augment, seed=config.seed,
                   num_classes=n)
    test = Loader(split.test, prep, batch_size=max(config.batch, 256), num_classes=n)
    return {"split": split, "prep": prep, "train": train, "test": test, "augment": augment}


def default_size(spec, small: bool) -> int:
    """Digit data is tiny: LeNet's 28, else 32 (or the architecture's minimum); image folders: the model's input."""
    if not small:
        return spec.input_size[1]
    return spec.input_size[1] if spec.input_size[1] <= 32 else max(32, spec.min_size, spec.train_min_size)


def seeded_state(name, frameworks, input_size, num_classes, seed) -> dict:
    """Initial weights: torch's own initialization under torch.manual_seed(seed) when torch is
    among the frameworks (the three then start identical), else the first framework's."""
    framework = "torch" if "torch" in frameworks else frameworks[0]
    if framework == "torch":
        import_safely("torch").manual_seed(seed)
    elif framework == "keras":
        import_safely("keras").utils.set_random_seed(seed)
    else:
        import_safely("tf").random.set_seed(seed)
    a = adapter(framework)
    return a.state_dict(a.build(name, input_size=input_size, num_classes=num_classes))


def build_model(name, framework, input_size, num_classes, state):
    a = adapter(framework)
    model = a.build(name, input_size=input_size, num_classes=num_classes)
    a.load_state_dict(model, state)
    return model


def make_trainers(models, config, freeze):
    hyper = Hyper(**config.hyper, freeze=freeze)
    dropout_seed = config.seed if config.same_dropout else None
    return {f: adapter(framework_of(f)).trainer(m, hyper, device=config.device, dropout_seed=dropout_seed)
            for f, m in models.items()}


def train_epoch(epoch, config, trainers, data, curves, console) -> dict:
    """One pass over the training batches; every batch goes to each framework in turn and only
    the framework's own step is timed (the loader's work is shared)."""
    lr = lr_at(Hyper(**config.hyper), epoch)
    for trainer in trainers.values():
        trainer.set_lr(lr)
    totals = {f: {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0} for f in trainers}
    with _progress(console) as bar:
        task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(data["train"]), losses="")
        for x, labels in data["train"].batches(epoch):
            for f, trainer in trainers.items():
                start = time.perf_counter()
                result = trainer.step(x, labels)
                t = totals[f]
                t["seconds"] += time.perf_counter() - start
                t["loss"] += result.loss * len(labels)
                t["correct"] += int((np.argmax(result.logits, axis=-1) == labels).sum())
                t["seen"] += len(labels)
                curves[f].step_loss.append(float(result.loss))
            running = "  ".join(f"{f} {t['loss'] / t['seen']:.4f}" for f, t in totals.items())
            bar.update(task, advance=1, losses=running)
    return {f: EpochStats(epoch + 1, t["loss"] / t["seen"], t["correct"] / t["seen"], math.nan, math.nan,
                          t["seen"] / t["seconds"], lr) for f, t in totals.items()}


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("loss {task.fields[losses]}"), console=console, transient=True,
                    disable=not console.is_terminal)


def evaluate(framework, model, loader, device="cpu"):
    """(mean cross-entropy, accuracy) in inference mode over the whole test set."""
    a = adapter(framework)
    loss, correct, seen = 0.0, 0, 0
    for x, labels in loader.batches(0):
        logits = a.run(model, x, device=device)[0]
        probs = softmax(logits)
        loss += float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300)).sum())
        correct += int((np.argmax(logits, axis=-1) == labels).sum())
        seen += len(labels)
    return loss / seen, correct / seen


def _metadata(config, data, num_classes) -> dict:
    return {"model": config.model, "num_classes": str(num_classes), "classes": json.dumps(data["split"].classes),
            **data["prep"].to_metadata()}


def save_epoch(out: Path, config, models, trainers, curves, epoch, meta) -> None:
    """Checkpoints (weights and optimizer state) first, run.json last: a run interrupted
    anywhere resumes from the last epoch whose run.json was written, and every file on disk
    is whole."""
    states = {f: adapter(framework_of(f)).state_dict(model) for f, model in models.items()}
    ref = _reference(models)
    for f, model in models.items():
        a, state = adapter(framework_of(f)), states[f]
        curves[f].weight_diff = None if f == ref else weight_difference(state, states[ref])
        stats = curves[f].epochs[-1]
        tags = {**meta, "framework": f, "epoch": str(epoch + 1), "test_acc": f"{stats['test_acc']:.6f}"}
        save_state(state, out / f / "last.safetensors", tags)
        optimizer, steps = trainers[f].optimizer_state()
        save_state(optimizer, out / f / OPTIMIZER_FILE, {**tags, "steps": str(steps)})
        if stats["test_acc"] > curves[f].best_test_acc:
            save_state(state, out / f / "best.safetensors", tags)
            a.save_native(model, out / f / NATIVE_FILES[framework_of(f)])
            curves[f].best_test_acc, curves[f].best_epoch = stats["test_acc"], epoch + 1
    payload = {"curves": {f: asdict(c) for f, c in curves.items()}, "agreement": agreement(curves)}
    write_json(out / "curves.json", payload)
    plot_curves(curves, out / "curves.png", config.model)
    write_json(out / "run.json", {"config": asdict(config), "epochs_done": epoch + 1, **payload})


def restore_optimizer(trainer, path: Path) -> None:
    """The optimizer state and step count saved with the last epoch (canonical keys
    "weight key:state name", torch layout), so that 2 + 2 epochs end where 4 do."""
    if not path.is_file():
        raise ValueError(f"--resume: {path} is missing; the run was saved without its optimizer state "
                         f"(an older cnn-parity?): start it again without --resume")
    steps = read_metadata(path).get("steps")
    if steps is None or not steps.isdigit():
        raise ValueError(f"--resume: {path} has no step count in its metadata")
    trainer.load_optimizer_state(load_state(path), int(steps))


def weight_difference(state, reference) -> float:
    """The largest normalized difference of any tensor (BN statistics included)."""
    return max(float(np.max(np.abs(state[k] - v)) / max(float(np.max(np.abs(v))), 1e-12))
               for k, v in reference.items() if v.size)


def _reference(frameworks):
    return "torch" if "torch" in frameworks else next(iter(frameworks))


def _load_run(out: Path):
    path = out / "run.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a readable run file ({exc})") from None


def _check_same_run(saved, config):
    before = saved["config"]
    for key in ("model", "data", "frameworks", "size", "normalize", "batch", "seed", "limit", "control",
                "same_dropout"):
        if before.get(key) != asdict(config).get(key):
            raise ValueError(f"--resume: {key} was {before.get(key)!r} in the saved run, now {asdict(config).get(key)!r}")


def _read_state(path):
    return load_state(path)


def plot_curves(curves, path, title) -> None:
    """Per-step training loss and per-epoch train/test accuracy, one line per framework."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    # One color and dash per framework: identical curves lie on each other and stay visible.
    styles = {"torch": ("C0", "-", "o"), "keras": ("C1", "--", "s"), "tf": ("C2", ":", "^"),
              "control": ("0.55", "-.", "d")}
    for f, c in curves.items():
        color, line, marker = styles.get("control" if f.endswith(CONTROL_SUFFIX) else f, ("C3", "-.", "d"))
        loss_ax.plot(np.arange(1, len(c.step_loss) + 1), c.step_loss, line, color=color, label=f)
        epochs = [e["epoch"] for e in c.epochs]
        acc_ax.plot(epochs, [e["train_acc"] for e in c.epochs], line, color=color, marker=marker,
                    label=f"{f} train")
        acc_ax.plot(epochs, [e["test_acc"] for e in c.epochs], line, color=color, marker=marker,
                    fillstyle="none", alpha=0.7, label=f"{f} test")
    loss_ax.set(xlabel="step", ylabel="training loss", title=f"{title}: loss per step")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy per epoch (filled: train, open: test)",
               ylim=(0, 1.02))
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.legend()
    acc_ax.legend(fontsize="small", ncol=len(curves))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


# What the two agreement columns (`train`'s table, `report --runs`) measure.
AGREEMENT = ("(same start, same batches): the largest per-step training-loss difference, and the weights "
             "after the last epoch as max over tensors of max|w - w_ref| / max|w_ref|")


def agreement(curves) -> dict:
    """Largest differences from torch (or the first framework): final loss, accuracies, and the
    per-step training loss over the whole run."""
    ref = _reference(curves)
    out = {}
    for f in curves:
        if f == ref or not curves[f].epochs:
            continue
        a, b = curves[f], curves[ref]
        steps = min(len(a.step_loss), len(b.step_loss))
        out[f] = {"reference": ref,
                  "max_step_loss_diff": float(np.max(np.abs(np.subtract(a.step_loss[:steps], b.step_loss[:steps])))),
                  "final_loss_diff": abs(a.epochs[-1]["loss"] - b.epochs[-1]["loss"]),
                  "final_test_loss_diff": abs(a.epochs[-1]["test_loss"] - b.epochs[-1]["test_loss"]),
                  "final_train_acc_diff": abs(a.epochs[-1]["train_acc"] - b.epochs[-1]["train_acc"]),
                  "final_test_acc_diff": abs(a.epochs[-1]["test_acc"] - b.epochs[-1]["test_acc"]),
                  "final_weight_diff": a.weight_diff}
    return out


def epoch_line(epoch, config, stats) -> str:
    parts = [f"{f}: loss {s.loss:.3f}, train acc {s.train_acc:.3f}, test acc {s.test_acc:.3f}, "
             f"{s.examples_per_s:,.0f} ex/s" for f, s in stats.items()]
    return f"epoch {epoch + 1}/{config.epochs}  " + " | ".join(parts)


def side_by_side_table(config, curves):
    from rich.table import Table
    table = Table(title=f"{config.model} on {config.data}: {config.epochs} epochs, batch {config.batch}, "
                        f"{config.hyper.get('optimizer')} lr {config.hyper.get('lr')}, {config.device}")
    for col in ("framework", "loss", "train acc", "test loss", "test acc", "examples/s", "best test acc (epoch)",
                "max |step loss - ref|", "weights vs ref"):
        table.add_column(col, justify="left" if col == "framework" else "right")
    diffs = agreement(curves)
    table.caption = f"differences against {_reference(curves)} {AGREEMENT}"
    for f, c in curves.items():
        last = c.epochs[-1]
        diff = diffs.get(f, {}).get("max_step_loss_diff")
        weights = "reference" if c.weight_diff is None else f"{c.weight_diff:.1e}"
        table.add_row(f, f"{last['loss']:.4f}", f"{last['train_acc']:.3f}", f"{last['test_loss']:.4f}",
                      f"{last['test_acc']:.3f}", f"{last['examples_per_s']:,.0f}",
                      f"{c.best_test_acc:.3f} ({c.best_epoch})", "reference" if diff is None else f"{diff:.1e}",
                      weights)
    return table
