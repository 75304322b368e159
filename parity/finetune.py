"""`parity finetune`: pretrained weights, a new N-class head, training in the three frameworks.

The pretrained file is canonical safetensors, a torchvision-format .pth (weights_only) or a
keras.applications model file. The layers whose shape depends on the class count (found by
building the model for N and N+1 classes) start from torch's seeded initialization; every
other weight comes from the file. The three frameworks start from that same state.
--freeze-backbone trains only the catalogue's head (ModelSpec.head) with the trainer's
freeze="backbone": frozen BatchNorm statistics stay put in every framework.
"""
from pathlib import Path

from .console import say


def register(subparsers) -> None:
    from .train_cli import add_training_arguments
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
    from .predict import read_weights, select_frameworks
    from .registry import get
    from .train_cli import _finish, config_from_args, run
    spec = get(args.model)
    if args.freeze_backbone and not spec.head:
        raise ValueError(f"{args.model}: the catalogue declares no head, so there is no backbone to freeze")
    _, notes = select_frameworks(args.frameworks)
    for note in notes:
        say(console, note, "yellow")
    if args.out is None:
        args.out = str(Path("runs") / f"{args.model}-finetune")
    config = config_from_args(args, num_classes=args.classes, weights=str(args.weights))
    pretrained, _ = read_weights(args.weights, args.model)
    curves = run(config, console, resume=args.resume, freeze="backbone" if args.freeze_backbone else None,
                 initial_state=lambda input_size, n: finetune_state(config, pretrained, input_size, n))
    _finish(config, curves, console, args.json)
    return 0


def finetune_state(config, pretrained: dict, input_size, num_classes: int) -> dict:
    """Pretrained weights with fresh (seeded) class-dependent layers."""
    from .errors import StateDictError
    from .train_cli import seeded_state
    fresh = seeded_state(config.model, config.frameworks, input_size, num_classes, config.seed)
    replaced = class_dependent_keys(config.model, config.frameworks[0], input_size, num_classes)
    kept = {k: v for k, v in pretrained.items() if k not in replaced}
    missing = [k for k in fresh if k not in replaced and k not in kept]
    unexpected = [k for k in kept if k not in fresh]
    mismatched = [(k, fresh[k].shape, kept[k].shape) for k in kept if k in fresh and fresh[k].shape != kept[k].shape]
    if missing or unexpected or mismatched:
        raise StateDictError(config.model, missing, unexpected, mismatched)
    return {**fresh, **kept}


def class_dependent_keys(name, framework, input_size, num_classes) -> set:
    from .adapters import adapter
    a = adapter(framework)
    shapes = [{k: s.shape for k, s in a.slots(a.build(name, input_size=input_size, num_classes=n)).items()}
              for n in (num_classes, num_classes + 1)]
    return {k for k in shapes[0] if tuple(shapes[0][k]) != tuple(shapes[1][k])}
